//! Loading key material named by the configuration: PEM certificates, PKCS#8 keys, JWKS files.

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

/// Reads a file; returns a message naming the path when it is missing or unreadable.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads every certificate of a PEM file. Fails when the file is unreadable, is not PEM or holds
/// no certificate.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE block", path.display()));
    }
    for (i, cert) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(cert).map_err(|e| {
            format!(
                "certificate #{} of {} does not parse: {e}",
                i + 1,
                path.display()
            )
        })?;
    }
    Ok(certs)
}

/// Reads a PKCS#8 private key from a PEM file (`BEGIN PRIVATE KEY`). Fails when the file is
/// unreadable or holds no PKCS#8 key.
pub fn private_key(path: &Path) -> Result<SecretKey, String> {
    let pem = Zeroizing::new(read(path)?);
    let key = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{} holds no PKCS#8 `PRIVATE KEY` PEM block: {e}",
            path.display()
        )
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
pub fn jwt_bundle(path: &Path) -> Result<Vec<BundleJwk>, String> {
    let bytes = read(path)?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| format!("{} is not a JWKS: no `keys` array", path.display()))?;
    let mut out: Vec<BundleJwk> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if key.get("use").and_then(|u| u.as_str()) != Some("jwt-svid") {
            continue;
        }
        let jwk: Jwk = serde_json::from_value(key.clone())
            .map_err(|e| format!("key #{} of {} is not a JWK: {e}", i + 1, path.display()))?;
        let kid = jwk.common.key_id.clone().ok_or_else(|| {
            format!(
                "key #{} of {} has `use: jwt-svid` but no `kid`",
                i + 1,
                path.display()
            )
        })?;
        if out.iter().any(|k| k.kid == kid) {
            return Err(format!("kid `{kid}` appears twice in {}", path.display()));
        }
        out.push(BundleJwk { kid, jwk });
    }
    Ok(out)
}

/// Returns true when the JWK is marked for JWT-SVIDs.
pub fn is_jwt_svid_key(jwk: &Jwk) -> bool {
    matches!(&jwk.common.public_key_use, Some(PublicKeyUse::Other(u)) if u == "jwt-svid")
}

/// Resolves a configured path: absolute as is, relative against the working directory.
pub fn resolve(path: &str) -> PathBuf {
    PathBuf::from(path)
}
