//! Key material: the redacting [`SecretKey`], trust-bundle JWKs, and loading PEM certificates,
//! PKCS#8 keys and JWKS files. Errors name the file and what is wrong with it.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

/// A PKCS#8 private key, DER-encoded. Its `Debug` never prints the key.
#[derive(Clone)]
pub struct SecretKey {
    der: Zeroizing<Vec<u8>>,
}

impl SecretKey {
    /// Wraps PKCS#8 DER bytes.
    pub fn from_pkcs8_der(der: Vec<u8>) -> Self {
        Self {
            der: Zeroizing::new(der),
        }
    }

    /// Returns the PKCS#8 DER bytes.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.der
    }

    /// Returns the key in the form rustls takes.
    pub fn to_rustls(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.der.to_vec()))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(...)")
    }
}

/// Why key material could not be loaded. `Display` names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{} holds no CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("certificate #{index} of {} does not parse: {reason}", path.display())]
    BadCertificate {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{} holds no PKCS#8 `PRIVATE KEY` PEM block: {reason}", path.display())]
    NoPrivateKey { path: PathBuf, reason: String },
    #[error("{} is not a JWKS: {reason}", path.display())]
    NotJwks { path: PathBuf, reason: String },
    #[error("key #{index} of {}: {reason}", path.display())]
    BadJwk {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("kid `{kid}` appears twice in {}", path.display())]
    DuplicateKid { path: PathBuf, kid: String },
}

/// Reads a file. Fails with [`KeyError::Read`] when it is missing or unreadable.
pub fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Returns the certificates of PEM text, in order. Fails when it is not PEM, holds no
/// certificate, or a certificate does not parse (the error names `path`).
pub fn certificates_from_pem(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KeyError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(KeyError::NoCertificate {
            path: path.to_owned(),
        });
    }
    for (i, cert) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(cert).map_err(|e| KeyError::BadCertificate {
            path: path.to_owned(),
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// Reads every certificate of a PEM file. Fails when the file is unreadable, is not PEM or holds
/// no certificate.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    certificates_from_pem(&read(path)?, path)
}

/// Reads a PKCS#8 private key from a PEM file (`BEGIN PRIVATE KEY`). Fails when the file is
/// unreadable or holds no PKCS#8 key.
pub fn private_key(path: &Path) -> Result<SecretKey, KeyError> {
    let pem = Zeroizing::new(read(path)?);
    let key = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| KeyError::NoPrivateKey {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(SecretKey::from_pkcs8_der(key.secret_pkcs8_der().to_vec()))
}

/// A JWT-SVID signing key of a trust domain bundle.
#[derive(Debug, Clone)]
pub struct BundleJwk {
    pub kid: String,
    pub jwk: Jwk,
}

/// Reads a SPIFFE JWKS bundle and returns its `use: jwt-svid` keys (SPIFFE bundle §4.2: entries
/// with another or no `use` are ignored). Fails when the file is not a JWKS, a JWT-SVID key has no
/// `kid`, or a `kid` repeats.
pub fn jwt_bundle(path: &Path) -> Result<Vec<BundleJwk>, KeyError> {
    let bytes = read(path)?;
    let not_jwks = |reason: String| KeyError::NotJwks {
        path: path.to_owned(),
        reason,
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| not_jwks(format!("not JSON: {e}")))?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| not_jwks("no `keys` array".to_owned()))?;
    let mut out: Vec<BundleJwk> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if key.get("use").and_then(|u| u.as_str()) != Some("jwt-svid") {
            continue;
        }
        let bad = |reason: String| KeyError::BadJwk {
            path: path.to_owned(),
            index: i + 1,
            reason,
        };
        let jwk: Jwk =
            serde_json::from_value(key.clone()).map_err(|e| bad(format!("not a JWK: {e}")))?;
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| bad("`use: jwt-svid` but no `kid`".to_owned()))?;
        if out.iter().any(|k| k.kid == kid) {
            return Err(KeyError::DuplicateKid {
                path: path.to_owned(),
                kid,
            });
        }
        out.push(BundleJwk { kid, jwk });
    }
    Ok(out)
}

/// Returns true when the JWK is marked for JWT-SVIDs.
pub fn is_jwt_svid_key(jwk: &Jwk) -> bool {
    matches!(&jwk.common.public_key_use, Some(PublicKeyUse::Other(u)) if u == "jwt-svid")
}
