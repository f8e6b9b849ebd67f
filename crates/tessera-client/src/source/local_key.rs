//! The key pair of an X.509-SVID, made in this process: an EC P-256 key whose private half never
//! leaves it, and the PKCS#10 request that carries only the public half to the broker (no
//! subject, no extensions: the broker takes nothing else from a CSR). Written with the core's
//! DER writer, so the SDK needs no certificate generator.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use tessera_core::der;
use tessera_core::keys::SecretKey;

use super::error::SourceError;

/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: [u128; 6] = [1, 2, 840, 10045, 2, 1];
/// prime256v1 / secp256r1.
const P256: [u128; 7] = [1, 2, 840, 10045, 3, 1, 7];
/// ecdsa-with-SHA256 (RFC 5758).
const ECDSA_SHA256: [u128; 7] = [1, 2, 840, 10045, 4, 3, 2];

/// A P-256 key pair made here.
#[derive(Debug)]
pub(crate) struct LocalKey {
    pkcs8: SecretKey,
    /// The uncompressed public point (65 bytes).
    public: Vec<u8>,
}

impl LocalKey {
    /// Returns a fresh key pair. Fails when the system's random generator or the crypto
    /// library fails.
    pub(crate) fn generate() -> Result<Self, SourceError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|e| SourceError::Key(format!("generating a P-256 key: {e}")))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .map_err(|e| SourceError::Key(format!("reading the generated key: {e}")))?;
        Ok(LocalKey {
            public: pair.public_key().as_ref().to_vec(),
            pkcs8: SecretKey::from_pkcs8_der(pkcs8.as_ref().to_vec()),
        })
    }

    /// Returns the uncompressed public point.
    pub(crate) fn public_point(&self) -> &[u8] {
        &self.public
    }

    /// Returns the private key, for the credential that holds it.
    pub(crate) fn into_secret(self) -> SecretKey {
        self.pkcs8
    }

    /// Returns a DER PKCS#10 request for this key, signed by it: empty subject, the public key,
    /// no attributes. Fails when signing fails.
    pub(crate) fn csr_der(&self) -> Result<Vec<u8>, SourceError> {
        let algorithm = der::sequence(&[&der::oid(&EC_PUBLIC_KEY), &der::oid(&P256)]);
        let spki = der::sequence(&[&algorithm, &der::bit_string(&self.public)]);
        let empty_name = der::sequence(&[]);
        let no_attributes = der::constructed(0xa0, &[]);
        let info = der::sequence(&[&der::small_integer(0), &empty_name, &spki, &no_attributes]);
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, self.pkcs8.pkcs8_der())
                .map_err(|e| SourceError::Key(format!("reading the key: {e}")))?;
        let signature = pair
            .sign(&SystemRandom::new(), &info)
            .map_err(|e| SourceError::Key(format!("signing the CSR: {e}")))?;
        let signature_algorithm = der::sequence(&[&der::oid(&ECDSA_SHA256)]);
        Ok(der::sequence(&[
            &info,
            &signature_algorithm,
            &der::bit_string(signature.as_ref()),
        ]))
    }
}

/// Returns the private scalar of a P-256 PKCS#8 key (the 32 bytes after `02 01 01 04 20`,
/// version 1 and the OCTET STRING of its ECPrivateKey), for tests that look for it where it
/// must not be.
#[cfg(test)]
pub(crate) fn private_scalar(pkcs8: &[u8]) -> Vec<u8> {
    let at = pkcs8
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .unwrap_or_default();
    pkcs8[at + 5..at + 37].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::csr::{KeyType, VerifiedCsr};

    #[test]
    fn the_csr_verifies_and_carries_the_public_key_and_nothing_of_the_private_one() {
        let key = LocalKey::generate().unwrap();
        let csr = key.csr_der().unwrap();
        let verified = VerifiedCsr::from_der(&csr).unwrap();
        assert_eq!(verified.key_type(), KeyType::P256);
        assert!(
            verified.spki_der().ends_with(key.public_point()),
            "the CSR's key is ours"
        );
        let scalar = private_scalar(key.pkcs8.pkcs8_der());
        assert_eq!(scalar.len(), 32);
        assert!(!csr.windows(32).any(|w| w == scalar.as_slice()));
        assert!(!csr.windows(16).any(|w| w == &scalar[..16]));
    }

    #[test]
    fn every_key_is_new() {
        let (a, b) = (LocalKey::generate().unwrap(), LocalKey::generate().unwrap());
        assert_ne!(a.public_point(), b.public_point());
    }
}
