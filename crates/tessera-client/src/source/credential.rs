//! What a credential source holds: a minted JWT, or an X.509-SVID with the key made here and
//! the trust bundle, each with what revocation rules are matched against (id, workload,
//! destination, purpose, issue time) and its lifetime. [`Mintable`] is how a source asks for a
//! new one of either kind.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::future::BoxFuture;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use tessera_core::clock::Clock;
use tessera_core::domain::{CredentialKind, id};
use tessera_core::keys::SecretKey;

use super::broker::Broker;
use super::error::SourceError;
use super::local_key::LocalKey;
use crate::mint::MintParams;

/// What every minted credential has, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub credential_id: String,
    /// The workload's SPIFFE ID (the JWT's `sub`, the certificate's URI SAN).
    pub workload: String,
    pub destination: String,
    pub purpose: String,
    /// When the broker issued it, unix milliseconds (from its time-ordered id).
    pub issued_ms: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it arrived here, unix milliseconds by the source's clock.
    pub received_ms: i64,
}

impl Issued {
    fn new(credential_id: String, expires_at: i64, p: MintParams<'_>, received_ms: i64) -> Self {
        Issued {
            issued_ms: id::embedded_ms(&credential_id).unwrap_or(received_ms),
            credential_id,
            workload: String::new(),
            destination: p.destination.to_owned(),
            purpose: p.purpose.to_owned(),
            expires_at,
            received_ms,
        }
    }

    /// Returns how long it lives from issue to expiry, in milliseconds (0 if it never did).
    pub fn lifetime_ms(&self) -> i64 {
        self.expires_at
            .saturating_mul(1000)
            .saturating_sub(self.issued_ms)
            .max(0)
    }

    /// Returns when it expires by the source's clock (its lifetime counted from its arrival,
    /// so that a skew between the broker's clock and ours does not move renewals), unix ms.
    pub fn local_expiry_ms(&self) -> i64 {
        self.received_ms.saturating_add(self.lifetime_ms())
    }
}

/// A credential a source can mint and renew.
pub trait Mintable: Send + Sync + fmt::Debug + Sized + 'static {
    /// The kind revocation rules scoped to a kind match.
    const KIND: CredentialKind;

    /// Mints one on `broker`, stamped with its arrival by `clock`. Fails when the broker
    /// refuses or cannot be reached, or its reply cannot be used.
    fn mint<'a>(
        broker: &'a dyn Broker,
        p: MintParams<'a>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Self, SourceError>>;

    /// Returns what rules are matched against and when it expires.
    fn issued(&self) -> &Issued;
}

/// A minted JWT. `Debug` shows its length, never the token.
#[derive(Clone)]
pub struct JwtCredential {
    issued: Issued,
    token: Zeroizing<String>,
}

impl JwtCredential {
    /// Returns its id, workload, destination, purpose, issue time and expiry.
    pub fn issued(&self) -> &Issued {
        &self.issued
    }

    /// Returns the token, to send as `authorization: Bearer`.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for JwtCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtCredential")
            .field("issued", &self.issued)
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .finish()
    }
}

impl Mintable for JwtCredential {
    const KIND: CredentialKind = CredentialKind::Jwt;

    fn mint<'a>(
        broker: &'a dyn Broker,
        p: MintParams<'a>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Self, SourceError>> {
        Box::pin(async move {
            let jwt = broker.mint_jwt(p).await?;
            let token = Zeroizing::new(jwt.token);
            let mut issued = Issued::new(jwt.credential_id, jwt.expires_at, p, clock.unix_millis());
            issued.workload = subject(&token)?;
            Ok(JwtCredential { issued, token })
        })
    }

    fn issued(&self) -> &Issued {
        &self.issued
    }
}

/// Returns the `sub` claim of a JWT, read without verification (the broker sent it over TLS;
/// it only serves to match workload rules). Fails when the token is not a JWT with a `sub`.
fn subject(token: &str) -> Result<String, SourceError> {
    let bad = |why: &str| SourceError::BadReply(format!("the minted token {why}"));
    let payload = token.split('.').nth(1).ok_or_else(|| bad("is not a JWT"))?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| bad("has a payload that is not base64url"))?;
    let claims: serde_json::Value =
        serde_json::from_slice(&json).map_err(|_| bad("has a payload that is not JSON"))?;
    claims["sub"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad("has no `sub`"))
}

/// A minted X.509-SVID, the private key made for it here, and the trust bundle to verify peers
/// with. `Debug` never shows the key.
#[derive(Clone)]
pub struct X509SvidCredential {
    issued: Issued,
    cert_chain: Vec<CertificateDer<'static>>,
    key: SecretKey,
    trust_bundle: Vec<CertificateDer<'static>>,
}

impl X509SvidCredential {
    /// Returns its id (the serial in hex), workload, destination, purpose, issue time and
    /// expiry.
    pub fn issued(&self) -> &Issued {
        &self.issued
    }

    /// Returns the certificate chain (DER), leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    /// Returns the trust bundle (DER roots) of the workload's trust domain.
    pub fn trust_bundle(&self) -> &[CertificateDer<'static>] {
        &self.trust_bundle
    }

    /// Returns the private key (PKCS#8), in the form rustls takes.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.to_rustls()
    }

    /// Returns the private key as PKCS#8 DER.
    pub fn key_pkcs8_der(&self) -> &[u8] {
        self.key.pkcs8_der()
    }

    /// Returns the certificate chain as PEM, leaf first.
    pub fn cert_chain_pem(&self) -> String {
        self.cert_chain
            .iter()
            .map(|c| pem("CERTIFICATE", c))
            .collect()
    }

    /// Returns the private key as a PKCS#8 PEM `PRIVATE KEY` block.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem("PRIVATE KEY", self.key.pkcs8_der()))
    }

    /// Returns the trust bundle as PEM.
    pub fn trust_bundle_pem(&self) -> String {
        self.trust_bundle
            .iter()
            .map(|c| pem("CERTIFICATE", c))
            .collect()
    }
}

impl fmt::Debug for X509SvidCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509SvidCredential")
            .field("issued", &self.issued)
            .field("cert_chain_len", &self.cert_chain.len())
            .field("key", &self.key)
            .field("trust_bundle_len", &self.trust_bundle.len())
            .finish()
    }
}

impl Mintable for X509SvidCredential {
    const KIND: CredentialKind = CredentialKind::X509;

    fn mint<'a>(
        broker: &'a dyn Broker,
        p: MintParams<'a>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Self, SourceError>> {
        Box::pin(async move {
            let key = LocalKey::generate()?;
            let svid = broker.mint_x509(key.csr_der()?, p).await?;
            let leaf = svid
                .cert_chain
                .first()
                .ok_or_else(|| SourceError::BadReply("the certificate chain is empty".into()))?;
            let workload = leaf_identity(leaf, key.public_point())?;
            let mut issued =
                Issued::new(svid.credential_id, svid.expires_at, p, clock.unix_millis());
            issued.workload = workload;
            Ok(X509SvidCredential {
                issued,
                cert_chain: svid.cert_chain.into_iter().map(Into::into).collect(),
                key: key.into_secret(),
                trust_bundle: svid.trust_bundle.into_iter().map(Into::into).collect(),
            })
        })
    }

    fn issued(&self) -> &Issued {
        &self.issued
    }
}

/// Returns the URI SAN of a leaf certified for `public_point`. Fails when the leaf does not
/// parse, certifies another key, or has no URI SAN.
fn leaf_identity(leaf: &[u8], public_point: &[u8]) -> Result<String, SourceError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| SourceError::BadReply(format!("the leaf does not parse: {e}")))?;
    if cert.public_key().subject_public_key.data.as_ref() != public_point {
        return Err(SourceError::BadReply(
            "the leaf certifies another key than the one sent".into(),
        ));
    }
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    names
        .iter()
        .find_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .ok_or_else(|| SourceError::BadReply("the leaf has no URI SAN".into()))
}

/// Returns `der` as a PEM block with `label`, 64 characters a line.
pub(super) fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_of_a_jwt_is_read_and_a_non_jwt_is_refused() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"spiffe://td/w"}"#);
        assert_eq!(subject(&format!("h.{payload}.s")).unwrap(), "spiffe://td/w");
        assert!(matches!(subject("opaque"), Err(SourceError::BadReply(_))));
        let no_sub = URL_SAFE_NO_PAD.encode(b"{}");
        assert!(subject(&format!("h.{no_sub}.s")).is_err());
    }

    #[test]
    fn pem_wraps_at_64_characters() {
        let text = pem("CERTIFICATE", &[0u8; 60]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
    }

    #[test]
    fn the_lifetime_counts_from_the_issue_millisecond_and_expiry_from_arrival() {
        let issued = Issued {
            credential_id: "c".into(),
            workload: "w".into(),
            destination: "d".into(),
            purpose: "p".into(),
            issued_ms: 1_000_250,
            expires_at: 1_300,
            received_ms: 5_000_000,
        };
        assert_eq!(issued.lifetime_ms(), 299_750);
        assert_eq!(issued.local_expiry_ms(), 5_299_750);
    }
}
