//! Certificate signing requests, parsed and verified once at the API edge: a [`VerifiedCsr`]
//! holds only the public key, proven by the CSR's signature, re-encoded from the parsed key:
//! nothing of the CSR's own bytes (e.g. algorithm parameters an attacker filled with a payload)
//! reaches the certificate the CA signs. Its subject, SANs, extensions and CA flags are read by
//! nobody.

use std::fmt;

use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::der;

/// Largest CSR accepted, in bytes.
pub const MAX_CSR_LEN: usize = 16 * 1024;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";
const OID_DSA: &str = "1.2.840.10040.4.1";
/// Length of an Ed25519 public key, in bytes.
const ED25519_KEY_LEN: usize = 32;

/// The key types Tessera certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    P256,
    P384,
    Ed25519,
    Rsa { bits: usize },
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::P256 => f.write_str("EC P-256"),
            KeyType::P384 => f.write_str("EC P-384"),
            KeyType::Ed25519 => f.write_str("Ed25519"),
            KeyType::Rsa { bits } => write!(f, "RSA {bits}-bit"),
        }
    }
}

/// Why a CSR was refused; each is the caller's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("csr is required (DER-encoded PKCS#10)")]
    Empty,
    #[error("csr is {0} bytes; the limit is {MAX_CSR_LEN}")]
    TooLarge(usize),
    #[error("csr is not a DER-encoded PKCS#10 request: {0}")]
    Malformed(String),
    #[error("csr key type {0} is not supported: use EC P-256, EC P-384, Ed25519 or RSA >= 2048")]
    UnsupportedKey(String),
    #[error("csr key is RSA {0}-bit; at least {MIN_RSA_BITS} bits are required")]
    WeakRsa(usize),
    #[error("csr signature does not verify: it must be signed by the key it carries")]
    BadSignature,
}

/// A CSR whose signature proved possession of its key. Only the key is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    spki_der: Vec<u8>,
    key_type: KeyType,
}

impl fmt::Debug for VerifiedCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCsr")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

fn rsa_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => &modulus[i..],
        None => &[],
    };
    match trimmed.first() {
        Some(first) => trimmed.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// Classifies a public key; fails naming a key type that is not accepted.
fn key_type(csr: &X509CertificationRequest<'_>) -> Result<KeyType, CsrError> {
    let spki = &csr.certification_request_info.subject_pki;
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_RSA => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => match rsa_bits(rsa.modulus) {
                bits if bits >= MIN_RSA_BITS => Ok(KeyType::Rsa { bits }),
                bits => Err(CsrError::WeakRsa(bits)),
            },
            _ => Err(CsrError::Malformed("RSA public key does not parse".into())),
        },
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => Ok(KeyType::P256),
                Some(OID_P384) => Ok(KeyType::P384),
                Some(OID_P521) => Err(CsrError::UnsupportedKey("EC P-521".into())),
                Some(other) => Err(CsrError::UnsupportedKey(format!("EC curve {other}"))),
                None => Err(CsrError::Malformed("EC key without a named curve".into())),
            }
        }
        OID_ED25519 => Ok(KeyType::Ed25519),
        OID_ED448 => Err(CsrError::UnsupportedKey("Ed448".into())),
        OID_DSA => Err(CsrError::UnsupportedKey("DSA".into())),
        other => Err(CsrError::UnsupportedKey(format!(
            "with algorithm OID {other}"
        ))),
    }
}

/// Returns the DER SubjectPublicKeyInfo of the key in `spki`, written anew: rsaEncryption with
/// NULL parameters around `RSAPublicKey { n, e }`; id-ecPublicKey with the named curve around the
/// point; Ed25519 without parameters around the 32 key bytes. Fails when the key's bits do not
/// have the form `key_type` needs.
fn canonical_spki(spki: &SubjectPublicKeyInfo<'_>, key_type: KeyType) -> Result<Vec<u8>, CsrError> {
    let bits: &[u8] = &spki.subject_public_key.data;
    if spki.subject_public_key.unused_bits != 0 {
        return Err(CsrError::Malformed(
            "public key BIT STRING has unused bits".into(),
        ));
    }
    let (algorithm, key) = match key_type {
        KeyType::Rsa { .. } => {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err(CsrError::Malformed("RSA public key does not parse".into()));
            };
            let key = der::sequence(&[
                &der::unsigned_integer(rsa.modulus),
                &der::unsigned_integer(rsa.exponent),
            ]);
            let null = der::tlv(der::tag::NULL, &[]);
            (
                der::sequence(&[&der::oid(&[1, 2, 840, 113_549, 1, 1, 1]), &null]),
                key,
            )
        }
        KeyType::P256 | KeyType::P384 => {
            let (curve, len): (&[u128], usize) = match key_type {
                KeyType::P256 => (&[1, 2, 840, 10_045, 3, 1, 7], 32),
                _ => (&[1, 3, 132, 0, 34], 48),
            };
            let point_ok = match bits.first() {
                Some(0x04) => bits.len() == 1 + 2 * len,
                Some(0x02 | 0x03) => bits.len() == 1 + len,
                _ => false,
            };
            if !point_ok {
                return Err(CsrError::Malformed(format!(
                    "{key_type} point is malformed"
                )));
            }
            let ec = der::oid(&[1, 2, 840, 10_045, 2, 1]);
            (der::sequence(&[&ec, &der::oid(curve)]), bits.to_vec())
        }
        KeyType::Ed25519 => {
            if bits.len() != ED25519_KEY_LEN {
                return Err(CsrError::Malformed(format!(
                    "Ed25519 key is {} bytes, not {ED25519_KEY_LEN}",
                    bits.len()
                )));
            }
            (
                der::sequence(&[&der::oid(&[1, 3, 101, 112])]),
                bits.to_vec(),
            )
        }
    };
    Ok(der::sequence(&[&algorithm, &der::bit_string(&key)]))
}

impl VerifiedCsr {
    /// Parses a DER CSR, checks its key type and verifies its signature with its own key.
    /// Fails when the CSR is empty, over [`MAX_CSR_LEN`], malformed, has trailing bytes, carries
    /// an unsupported or weak key, or its signature does not verify.
    pub fn from_der(der: &[u8]) -> Result<Self, CsrError> {
        if der.is_empty() {
            return Err(CsrError::Empty);
        }
        if der.len() > MAX_CSR_LEN {
            return Err(CsrError::TooLarge(der.len()));
        }
        let (rest, csr) = X509CertificationRequest::from_der(der)
            .map_err(|e| CsrError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CsrError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        let key_type = key_type(&csr)?;
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
        Ok(VerifiedCsr {
            spki_der: canonical_spki(&csr.certification_request_info.subject_pki, key_type)?,
            key_type,
        })
    }

    /// Returns the DER SubjectPublicKeyInfo of the CSR's key, re-encoded (never the CSR's bytes).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Returns the key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["ignored.example".to_owned()]).unwrap();
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn accepts_p256_p384_ed25519_and_rsa_2048() {
        assert_eq!(
            VerifiedCsr::from_der(&csr_for(&rcgen::PKCS_ECDSA_P256_SHA256))
                .unwrap()
                .key_type(),
            KeyType::P256
        );
        assert_eq!(
            VerifiedCsr::from_der(&csr_for(&rcgen::PKCS_ECDSA_P384_SHA384))
                .unwrap()
                .key_type(),
            KeyType::P384
        );
        assert_eq!(
            VerifiedCsr::from_der(&csr_for(&rcgen::PKCS_ED25519))
                .unwrap()
                .key_type(),
            KeyType::Ed25519
        );
        let rsa =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let der = params.serialize_request(&rsa).unwrap().der().to_vec();
        assert_eq!(
            VerifiedCsr::from_der(&der).unwrap().key_type(),
            KeyType::Rsa { bits: 2048 }
        );
    }

    #[test]
    fn refuses_p521_naming_the_key_type() {
        let err = VerifiedCsr::from_der(&csr_for(&rcgen::PKCS_ECDSA_P521_SHA512)).unwrap_err();
        assert_eq!(err, CsrError::UnsupportedKey("EC P-521".into()));
        assert!(err.to_string().contains("EC P-521"));
    }

    #[test]
    fn refuses_a_tampered_signature_garbage_and_oversize() {
        let mut der = csr_for(&rcgen::PKCS_ECDSA_P256_SHA256);
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert_eq!(VerifiedCsr::from_der(&der), Err(CsrError::BadSignature));
        assert!(matches!(
            VerifiedCsr::from_der(b"garbage"),
            Err(CsrError::Malformed(_))
        ));
        assert_eq!(
            VerifiedCsr::from_der(&vec![0x30; MAX_CSR_LEN + 1]),
            Err(CsrError::TooLarge(MAX_CSR_LEN + 1))
        );
        assert_eq!(VerifiedCsr::from_der(&[]), Err(CsrError::Empty));
    }

    #[test]
    fn counts_rsa_bits_without_leading_zeros() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(rsa_bits(&[0x01, 0x00]), 9);
        assert_eq!(rsa_bits(&[]), 0);
    }
}
