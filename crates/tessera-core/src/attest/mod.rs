//! Attestation: turns transport evidence into an [`Attestation`] (who the caller is, how it
//! proved it). It never decides access.
//!
//! Evidence, in order of precedence: an `authorization: Bearer` JWT-SVID, else the X509-SVID the
//! caller presented as TLS client certificate (verified once per connection, see [`x509_svid`]).

pub mod jws;
pub mod jwt_svid;
pub mod oidc;
mod svid_cache;
pub mod x509_svid;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prometheus_client::metrics::counter::Counter;

use crate::domain::EvidenceKind;
use crate::keys::BundleJwk;
use crate::spiffe_id::{SpiffeId, TrustDomain};

pub use self::jwt_svid::{JwtSvidError, JwtSvidVerifier};
pub use self::oidc::{CiIdentity, OidcError, OidcVerifier};
pub use self::x509_svid::{
    BundleError, PeerCert, Usage, X509Peer, X509SvidError, X509SvidVerifier,
};

/// One trust domain as the attestor trusts it: its X.509 roots and its JWT-SVID keys.
#[derive(Debug, Clone)]
pub struct TrustDomainBundle {
    pub name: TrustDomain,
    pub x509_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub jwt_keys: Vec<BundleJwk>,
    /// The furthest ahead a JWT-SVID's `exp` may lie (`max_jwt_svid_lifetime`, default
    /// [`jwt_svid::DEFAULT_MAX_LIFETIME`]).
    pub max_jwt_svid_lifetime: std::time::Duration,
}

/// Who a caller proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A SPIFFE workload (X509-SVID or JWT-SVID).
    Spiffe(SpiffeId),
    /// A CI job or Kubernetes pod, by its OIDC token.
    Ci(Box<CiIdentity>),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Spiffe(id) => write!(f, "{id}"),
            Principal::Ci(ci) => write!(f, "{} (issuer {})", ci.subject, ci.issuer),
        }
    }
}

/// Who the caller is, as proven by its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub principal: Principal,
    pub evidence_kind: EvidenceKind,
    /// Lowercase hex SHA-256 of the evidence (token bytes or leaf certificate DER).
    pub evidence_hash: String,
    /// `x5t#S256` of the client certificate when attested over mTLS (RFC 8705).
    pub cnf_x5t_s256: Option<String>,
    /// For evidence that may be used only once per destination and purpose (CI tokens).
    pub one_time: Option<OneTime>,
}

/// Why attestation failed. Every variant means "unauthenticated"; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    #[error(
        "no credentials: present an X509-SVID as TLS client certificate or a JWT-SVID as \
         `authorization: Bearer <token>`"
    )]
    NoCredentials,
    #[error("malformed authorization header: expected `Bearer <token>`")]
    MalformedAuthorization,
    #[error("JWT-SVID refused: {0}")]
    JwtSvid(#[from] JwtSvidError),
    #[error("X509-SVID refused: {0}")]
    X509Svid(#[from] X509SvidError),
    #[error("OIDC token refused: {0}")]
    Oidc(#[from] OidcError),
}

/// The evidence one call carries. Its `Debug` shows the authorization scheme and length, never
/// the token.
#[derive(Clone, Copy, Default)]
pub struct Evidence<'a> {
    /// The raw `authorization` header value, if any.
    pub authorization: Option<&'a str>,
    /// The connection's client certificate and the outcome of verifying it, if one was
    /// presented.
    pub peer: Option<&'a PeerCert>,
}

impl fmt::Debug for Evidence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authorization = self.authorization.map(|header| {
            let scheme = header.split_once(' ').map_or("", |(scheme, _)| scheme);
            // The scheme is attacker-chosen too: only a known one is echoed.
            let scheme = if scheme.eq_ignore_ascii_case("bearer") {
                "Bearer"
            } else {
                "?"
            };
            format!("{scheme} <redacted, {} bytes>", header.len())
        });
        f.debug_struct("Evidence")
            .field("authorization", &authorization)
            .field("peer", &self.peer)
            .finish()
    }
}

/// Verifies evidence against the configured trust domains and OIDC issuers.
pub struct Attestor {
    jwt: JwtSvidVerifier,
    x509: std::sync::Arc<X509SvidVerifier>,
    /// Shared with the attestors [`Attestor::rebundle`] makes (its JWKS cache survives).
    oidc: std::sync::Arc<OidcVerifier>,
    audience: String,
    /// Counts JWT-SVID verifies saved by the cache; shared with rebundled attestors.
    jwt_svid_cache_hits: Counter,
}

impl fmt::Debug for Attestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attestor").finish_non_exhaustive()
    }
}

impl Attestor {
    /// Builds an attestor for `p.domains`, accepting JWT-SVIDs whose `aud` holds `p.audience`
    /// and CI tokens of `p.oidc`'s issuers. Fails when a bundle certificate or key cannot be used.
    pub fn new(p: AttestorParams<'_>) -> Result<Self, BundleError> {
        Ok(Attestor {
            jwt: JwtSvidVerifier::new(p.domains, p.audience, p.jwt_svid_cache_hits.clone())?,
            x509: std::sync::Arc::new(X509SvidVerifier::new(p.domains, p.client_ca)?),
            oidc: std::sync::Arc::new(p.oidc),
            audience: p.audience.to_owned(),
            jwt_svid_cache_hits: p.jwt_svid_cache_hits,
        })
    }

    /// Returns an attestor like this one (same audience, same OIDC issuers and key cache) that
    /// trusts the bundles of `domains` instead (trust bundles that rotated). Fails when a
    /// bundle certificate or key cannot be used.
    pub fn rebundle(
        &self,
        domains: &[TrustDomainBundle],
        client_ca: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    ) -> Result<Self, BundleError> {
        Ok(Attestor {
            jwt: JwtSvidVerifier::new(domains, &self.audience, self.jwt_svid_cache_hits.clone())?,
            x509: std::sync::Arc::new(X509SvidVerifier::new(domains, client_ca)?),
            oidc: std::sync::Arc::clone(&self.oidc),
            audience: self.audience.clone(),
            jwt_svid_cache_hits: self.jwt_svid_cache_hits.clone(),
        })
    }

    /// Returns the X509-SVID verifier, shared with the TLS layer (once per connection).
    pub fn x509(&self) -> &std::sync::Arc<X509SvidVerifier> {
        &self.x509
    }

    /// Returns the counter of JWT-SVID verifies saved by the cache, to hand to the attestor
    /// that replaces this one on reload.
    pub fn jwt_svid_cache_hits(&self) -> &Counter {
        &self.jwt_svid_cache_hits
    }

    /// Returns the JWT-SVID verifier.
    pub fn jwt(&self) -> &JwtSvidVerifier {
        &self.jwt
    }

    /// Returns the CI token verifier.
    pub fn oidc(&self) -> &OidcVerifier {
        &self.oidc
    }

    /// Verifies a bearer token: a CI token when its `iss` is a configured OIDC issuer, else a
    /// JWT-SVID. Fails with the reason the token is refused.
    pub async fn attest_token(&self, token: &str, now: i64) -> Result<Attestation, AttestError> {
        if token.len() > jwt_svid::MAX_TOKEN_LEN {
            return Err(JwtSvidError::TooLong.into());
        }
        // Only JWT-SVIDs that verified are remembered: a CI token never hits.
        let digest = sha256(token.as_bytes());
        if let Some(outcome) = self.jwt.cached(&digest, now) {
            return Ok(outcome?);
        }
        let parts = jws::split(token).ok_or(JwtSvidError::NotCompact)?;
        let claims: serde_json::Value =
            jws::decode_json(parts.claims).ok_or(JwtSvidError::BadEncoding { part: "claims" })?;
        let field = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
        match (field("iss"), field("sub")) {
            (Some(iss), _) if self.oidc.knows(iss) || iss == oidc::LEGACY_KUBERNETES_ISSUER => {
                Ok(self.oidc.verify_parsed(token, &parts, claims).await?)
            }
            (Some(iss), sub) if !sub.is_some_and(|s| s.starts_with("spiffe://")) => {
                Err(OidcError::UnknownIssuer(iss.to_owned()).into())
            }
            _ => {
                let token = jwt_svid::Token {
                    text: token,
                    digest,
                };
                Ok(self.jwt.verify_parsed(token, &parts, &claims, now)?)
            }
        }
    }

    /// Attests one call at unix time `now`. A bearer token (JWT-SVID or CI token), when
    /// present, is the evidence; otherwise the connection's client certificate. Fails when there
    /// is neither or the evidence does not verify.
    pub async fn attest(
        &self,
        evidence: Evidence<'_>,
        now: i64,
    ) -> Result<Attestation, AttestError> {
        if let Some(header) = evidence.authorization {
            return self.attest_token(bearer_token(header)?, now).await;
        }
        let Some(cert) = evidence.peer else {
            return Err(AttestError::NoCredentials);
        };
        match cert.outcome(&self.x509, now).as_ref() {
            Ok(peer) => Ok(peer.attestation(now)?),
            Err(e) => Err(AttestError::X509Svid(e.clone())),
        }
    }
}

/// How one-time evidence is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    /// Hex SHA-256 of the signed part of the token (`header.payload`): a re-encoded signature
    /// (e.g. ECDSA's `(r, n−s)`) does not make it a different token.
    pub key: String,
    /// Unix time until which it must be remembered (the token's `exp`).
    pub until: i64,
}

/// Parameters of [`Attestor::new`].
#[derive(Debug)]
pub struct AttestorParams<'a> {
    pub domains: &'a [TrustDomainBundle],
    pub audience: &'a str,
    /// Extra roots every X509-SVID must also chain to (`[server] tls_client_ca`).
    pub client_ca: Option<&'a [rustls::pki_types::CertificateDer<'static>]>,
    pub oidc: OidcVerifier,
    /// Where JWT-SVID verifies saved by the cache are counted (`tessera_jwt_svid_cache_hits`).
    pub jwt_svid_cache_hits: Counter,
}

/// Extracts the token of an `authorization: Bearer <token>` value (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Result<&str, AttestError> {
    let (scheme, token) = header
        .split_once(' ')
        .ok_or(AttestError::MalformedAuthorization)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AttestError::MalformedAuthorization);
    }
    Ok(token)
}

/// Returns lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::domain::id::hex(&sha256(bytes))
}

/// Returns the SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Returns base64url (no padding) SHA-256 of `bytes`: the RFC 8705 `x5t#S256` of a DER cert.
pub fn x5t_s256(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_needs_the_scheme_and_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Ok("abc"));
        assert_eq!(bearer_token("bearer abc"), Ok("abc"));
        assert_eq!(
            bearer_token("Basic abc"),
            Err(AttestError::MalformedAuthorization)
        );
        assert_eq!(
            bearer_token("Bearer "),
            Err(AttestError::MalformedAuthorization)
        );
        assert_eq!(
            bearer_token("abc"),
            Err(AttestError::MalformedAuthorization)
        );
    }

    #[test]
    fn the_debug_of_evidence_shows_the_scheme_and_length_but_never_the_token() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmUifQ.c2lnbmF0dXJl";
        let header = format!("Bearer {token}");
        let evidence = Evidence {
            authorization: Some(&header),
            peer: None,
        };
        let debug = format!("{evidence:?}");
        assert!(!debug.contains(token), "{debug}");
        assert!(!debug.contains("c2lnbmF0dXJl"), "{debug}");
        assert!(
            debug.contains(&format!("Bearer <redacted, {} bytes>", header.len())),
            "{debug}"
        );
        let odd = Evidence {
            authorization: Some("Secret-Scheme hunter2"),
            peer: None,
        };
        let debug = format!("{odd:#?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("Secret"),
            "{debug}"
        );
    }

    fn domain(roots: Vec<rustls::pki_types::CertificateDer<'static>>) -> TrustDomainBundle {
        TrustDomainBundle {
            name: crate::test_pki::TD.parse().expect("trust domain"),
            x509_roots: roots,
            jwt_keys: Vec::new(),
            max_jwt_svid_lifetime: jwt_svid::DEFAULT_MAX_LIFETIME,
        }
    }

    #[test]
    fn a_rebundled_attestor_trusts_the_new_roots_only_and_keeps_the_audience() {
        use crate::test_pki::{Ca, Leaf, NOW, WORKLOAD};
        let (old, new) = (Ca::root("old"), Ca::root("new"));
        let clock: crate::clock::SharedClock =
            std::sync::Arc::new(crate::clock::ManualClock::at(NOW));
        let attestor = Attestor::new(AttestorParams {
            domains: &[domain(vec![old.cert.clone()])],
            audience: "tessera",
            client_ca: None,
            oidc: OidcVerifier::new(Vec::new(), Vec::new(), clock),
            jwt_svid_cache_hits: Counter::default(),
        })
        .expect("attestor");
        let rebundled = attestor
            .rebundle(&[domain(vec![new.cert.clone()])], None)
            .expect("rebundled");
        let of_old = [old.issue(&Leaf::svid(WORKLOAD))];
        let of_new = [new.issue(&Leaf::svid(WORKLOAD))];
        assert!(attestor.x509().verify(&of_old, NOW).is_ok());
        assert!(rebundled.x509().verify(&of_old, NOW).is_err());
        assert!(rebundled.x509().verify(&of_new, NOW).is_ok());
        assert_eq!(rebundled.audience, "tessera");
        assert!(std::sync::Arc::ptr_eq(&attestor.oidc, &rebundled.oidc));
    }

    #[test]
    fn hashes_are_hex_and_base64url() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            x5t_s256(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
