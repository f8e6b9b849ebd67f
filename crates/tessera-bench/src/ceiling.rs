//! The crypto ceiling: the signatures a request cannot avoid, run back to back on one thread
//! with the broker's library (aws-lc-rs, which jsonwebtoken and the mint CA use) and key types.
//! Achieved throughput divided by this rate is the figure `BENCHMARKS.md` reports.

use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};

/// Why the crypto ceiling could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum CeilingError {
    #[error("ceiling: generating a P-256 key failed: {0}")]
    KeyGeneration(aws_lc_rs::error::Unspecified),
    #[error("ceiling: a generated P-256 key was rejected: {0}")]
    KeyRejected(aws_lc_rs::error::KeyRejected),
    #[error("ceiling: signature did not verify")]
    Verify,
    #[error("ceiling: signing failed")]
    Sign,
}

/// Which unavoidable work a scenario does per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CryptoKind {
    /// Verify one ES256 JWT (the JWT-SVID or CI token) and sign one ES256 JWT.
    Es256VerifySign,
    /// Sign one ES256 JWT (mTLS: the peer's SVID is verified once per connection).
    Es256Sign,
    /// Verify a P-256 CSR's signature and sign a leaf with the P-256 mint CA.
    CsrVerifyCaSign,
}

impl CryptoKind {
    /// Returns a one-line description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            CryptoKind::Es256VerifySign => "ES256 verify + ES256 sign",
            CryptoKind::Es256Sign => "ES256 sign",
            CryptoKind::CsrVerifyCaSign => "P-256 CSR verify + P-256 CA sign",
        }
    }
}

/// Keys and messages for one [`CryptoKind`], built once.
pub struct CryptoWork {
    kind: CryptoKind,
    signer: EcdsaKeyPair,
    rng: SystemRandom,
    message: Vec<u8>,
    /// (public key, signed message, signature) to verify, if the kind verifies.
    verify: Option<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for CryptoWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoWork")
            .field("kind", &self.kind)
            .field("signer", &"...")
            .finish()
    }
}

impl CryptoWork {
    /// Builds fresh P-256 keys and a signed message of the sizes the broker handles (a
    /// 420-byte JWT signing input, a 560-byte leaf TBS).
    ///
    /// Fails with [`CeilingError::KeyGeneration`] or [`CeilingError::KeyRejected`] if key
    /// generation fails, and with [`CeilingError::Sign`] if signing the message to verify fails.
    pub fn new(kind: CryptoKind) -> Result<Self, CeilingError> {
        let rng = SystemRandom::new();
        let fixed = kind != CryptoKind::CsrVerifyCaSign;
        let sign_alg = if fixed {
            &ECDSA_P256_SHA256_FIXED_SIGNING
        } else {
            &ECDSA_P256_SHA256_ASN1_SIGNING
        };
        let key = |alg| -> Result<EcdsaKeyPair, CeilingError> {
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(CeilingError::KeyGeneration)?;
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).map_err(CeilingError::KeyRejected)
        };
        let signer = key(sign_alg)?;
        let message = vec![b'a'; if fixed { 420 } else { 560 }];
        let verify = match kind {
            CryptoKind::Es256Sign => None,
            CryptoKind::Es256VerifySign | CryptoKind::CsrVerifyCaSign => {
                let peer = key(sign_alg)?;
                let signed = vec![b'b'; 300];
                let signature = peer.sign(&rng, &signed).map_err(|_| CeilingError::Sign)?;
                Some((
                    peer.public_key().as_ref().to_vec(),
                    signed,
                    signature.as_ref().to_vec(),
                ))
            }
        };
        Ok(CryptoWork {
            kind,
            signer,
            rng,
            message,
            verify,
        })
    }

    /// Does the work once.
    ///
    /// Fails with [`CeilingError::Verify`] if a signature does not verify and with
    /// [`CeilingError::Sign`] if signing fails.
    pub fn once(&self) -> Result<(), CeilingError> {
        if let Some((public, signed, signature)) = &self.verify {
            let alg = match self.kind {
                CryptoKind::CsrVerifyCaSign => &ECDSA_P256_SHA256_ASN1,
                CryptoKind::Es256VerifySign | CryptoKind::Es256Sign => &ECDSA_P256_SHA256_FIXED,
            };
            UnparsedPublicKey::new(alg, public)
                .verify(signed, signature)
                .map_err(|_| CeilingError::Verify)?;
        }
        let signature = self
            .signer
            .sign(&self.rng, std::hint::black_box(&self.message))
            .map_err(|_| CeilingError::Sign)?;
        std::hint::black_box(signature);
        Ok(())
    }
}

/// The measured ceiling.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceiling {
    pub kind: CryptoKind,
    pub what: &'static str,
    /// Operations per second on one thread.
    pub ops_per_sec: f64,
    pub micros_per_op: f64,
}

/// Runs `kind`'s work back to back on the calling thread for at least `min_time` and returns
/// the rate.
///
/// Fails with the [`CeilingError`] of [`CryptoWork::new`] or [`CryptoWork::once`] if the work
/// cannot be built or fails.
pub fn measure(kind: CryptoKind, min_time: Duration) -> Result<Ceiling, CeilingError> {
    let work = CryptoWork::new(kind)?;
    for _ in 0..200 {
        work.once()?; // warm caches and the CPU frequency
    }
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < min_time {
        for _ in 0..100 {
            work.once()?;
        }
        ops += 100;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Ceiling {
        kind,
        what: kind.describe(),
        ops_per_sec: ops as f64 / secs,
        micros_per_op: secs * 1e6 / ops as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_verifies_and_signs() {
        for kind in [
            CryptoKind::Es256VerifySign,
            CryptoKind::Es256Sign,
            CryptoKind::CsrVerifyCaSign,
        ] {
            let ceiling = measure(kind, Duration::from_millis(20)).unwrap();
            assert_eq!(ceiling.kind, kind);
            assert!(ceiling.ops_per_sec > 0.0);
        }
    }

    #[test]
    fn a_tampered_signature_fails_the_work() {
        let mut work = CryptoWork::new(CryptoKind::Es256VerifySign).unwrap();
        if let Some((_, signed, _)) = work.verify.as_mut() {
            signed[0] ^= 1;
        }
        assert!(matches!(work.once(), Err(CeilingError::Verify)));
    }
}
