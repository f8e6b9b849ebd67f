//! The mint CA: the certificate chain and key that sign X.509-SVIDs and the CRL. The key is
//! parsed once and checked against the certificate at start-up.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::MintError;
use crate::der;
use crate::keys::SecretKey;

/// How the CA signs, by key type.
enum Signer {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    /// Parses a PKCS#8 key of any supported type.
    fn parse(pkcs8: &[u8]) -> Result<Self, MintError> {
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8) {
            return Ok(Signer::P256(k));
        }
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8) {
            return Ok(Signer::P384(k));
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8) {
            return Ok(Signer::Ed25519(k));
        }
        if let Ok(k) = RsaKeyPair::from_pkcs8(pkcs8) {
            return Ok(Signer::Rsa(k));
        }
        Err(MintError::Key(
            "the CA key must be a PKCS#8 P-256, P-384, Ed25519 or RSA key".into(),
        ))
    }

    fn public_key(&self) -> &[u8] {
        match self {
            Signer::P256(k) | Signer::P384(k) => k.public_key().as_ref(),
            Signer::Ed25519(k) => k.public_key().as_ref(),
            Signer::Rsa(k) => k.public_key().as_ref(),
        }
    }

    /// Returns the DER AlgorithmIdentifier of the signatures this key makes.
    fn algorithm(&self) -> Vec<u8> {
        match self {
            Signer::P256(_) => der::sequence(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 2])]),
            Signer::P384(_) => der::sequence(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 3])]),
            Signer::Ed25519(_) => der::sequence(&[&der::oid(&[1, 3, 101, 112])]),
            Signer::Rsa(_) => der::sequence(&[
                &der::oid(&[1, 2, 840, 113_549, 1, 1, 11]),
                &der::tlv(der::tag::NULL, &[]),
            ]),
        }
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, MintError> {
        match self {
            Signer::P256(k) | Signer::P384(k) => k
                .sign(rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| MintError::Sign),
            Signer::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            Signer::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, rng, message, &mut sig)
                    .map_err(|_| MintError::Sign)?;
                Ok(sig)
            }
        }
    }
}

/// A CA that signs X.509-SVIDs (`[signing] ca_cert` / `ca_key`, or an entry of `mint_cas`).
pub struct MintCa {
    chain: Vec<CertificateDer<'static>>,
    subject: Vec<u8>,
    key_id: Vec<u8>,
    not_before: i64,
    not_after: i64,
    signer: Signer,
    algorithm: Vec<u8>,
    rng: SystemRandom,
}

impl fmt::Debug for MintCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintCa")
            .field("chain_len", &self.chain.len())
            .field("not_after", &self.not_after)
            .field("key", &"...")
            .finish()
    }
}

/// Returns the RFC 7093 (method 1) key identifier: the leftmost 160 bits of SHA-256 of the
/// subjectPublicKey bits.
pub fn key_identifier(public_key_bits: &[u8]) -> Vec<u8> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public_key_bits);
    digest.as_ref()[..20].to_vec()
}

impl MintCa {
    /// Loads the CA from its chain (signing CA first) and key. Fails when the first certificate
    /// is not a CA allowed to sign certificates, or the key does not match it.
    pub fn new(chain: &[CertificateDer<'static>], key: &SecretKey) -> Result<Self, MintError> {
        let first = chain
            .first()
            .ok_or_else(|| MintError::Key("the CA chain holds no certificate".into()))?;
        let (_, cert) = X509Certificate::from_der(first)
            .map_err(|e| MintError::Key(format!("the CA certificate does not parse: {e}")))?;
        if !cert.is_ca() {
            return Err(MintError::Key(
                "the CA certificate is not a CA certificate (cA=false)".into(),
            ));
        }
        let ku = cert
            .key_usage()
            .map_err(|e| MintError::Key(format!("the CA certificate's keyUsage: {e}")))?;
        if let Some(ku) = ku
            && !(ku.value.key_cert_sign() && ku.value.crl_sign())
        {
            return Err(MintError::Key(
                "the CA certificate's keyUsage must include keyCertSign and cRLSign".into(),
            ));
        }
        let signer = Signer::parse(key.pkcs8_der())?;
        let public_bits: &[u8] = &cert.public_key().subject_public_key.data;
        if signer.public_key() != public_bits {
            return Err(MintError::Key(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
                _ => None,
            })
            .unwrap_or_else(|| key_identifier(public_bits));
        Ok(MintCa {
            chain: chain.to_vec(),
            subject: cert.subject().as_raw().to_vec(),
            key_id,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            algorithm: signer.algorithm(),
            signer,
            rng: SystemRandom::new(),
        })
    }

    /// Returns the CA chain, signing CA first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Returns the DER Name of the signing CA (the issuer of what it signs).
    pub fn subject(&self) -> &[u8] {
        &self.subject
    }

    /// Returns the signing CA's key identifier (for AuthorityKeyIdentifier).
    pub fn key_id(&self) -> &[u8] {
        &self.key_id
    }

    /// Returns the unix seconds at which the signing CA certificate expires.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Returns the unix seconds from which the signing CA certificate is valid.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// Returns the DER AlgorithmIdentifier of this CA's signatures.
    pub fn algorithm(&self) -> &[u8] {
        &self.algorithm
    }

    /// Signs a DER `tbs` (TBSCertificate or TBSCertList) and returns the signed structure
    /// `SEQUENCE { tbs, algorithm, BIT STRING signature }`. Fails only if the signer fails.
    pub fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, MintError> {
        let signature = self.signer.sign(&self.rng, tbs)?;
        Ok(der::sequence(&[
            tbs,
            &self.algorithm,
            &der::bit_string(&signature),
        ]))
    }
}
