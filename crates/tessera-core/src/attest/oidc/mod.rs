//! CI and Kubernetes OIDC ID tokens (`standards.md` §8): signature with the issuer's JWKS
//! ([`keys`]), `iss` exact, `aud` containing the issuer's configured audience, `exp`/`nbf`/`iat`
//! with a small leeway, a cap on the token's lifetime, and the platform profile's rules.

pub mod keys;
mod profile;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use self::keys::{KeyCache, KeySource};
pub use self::profile::Profile;
use super::jws::{self, Audience, SignatureError};
use super::{Attestation, OneTime, Principal, sha256_hex};
use crate::clock::SharedClock;
use crate::domain::{CiEvidence, EvidenceKind};

/// Tolerated clock skew for `exp`, `nbf` and `iat`, in seconds. Also part of every stored
/// replay guard (its expiry is `exp` + this): the embedded ledger finds a guard by its expiry,
/// so a change would leave the guards stored before it unfound until they expire.
pub const LEEWAY_SECS: i64 = 30;
/// `iss` of legacy (non-expiring) Kubernetes service account tokens.
pub const LEGACY_KUBERNETES_ISSUER: &str = "kubernetes/serviceaccount";

/// One configured `[[oidc_issuer]]`.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub profile: Profile,
    pub audience: String,
    pub max_token_lifetime: Duration,
}

/// A CI job or pod, as its verified token describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiIdentity {
    pub issuer: String,
    pub subject: String,
    /// Every claim of the token, for grant matching.
    pub claims: Map<String, Value>,
    pub run_id: Option<String>,
    pub jti: Option<String>,
}

impl CiIdentity {
    /// Returns the claim at `path` as a string, the way platforms mean it: strings as they are,
    /// booleans as `true`/`false`, numbers in decimal. A dotted path walks nested objects
    /// (`kubernetes.io.namespace`), preferring the longest top-level key that matches.
    pub fn claim(&self, path: &str) -> Option<String> {
        lookup(&self.claims, path).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    /// Returns what the ledger keeps of this identity.
    pub fn evidence(&self) -> CiEvidence {
        CiEvidence {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            run_id: self.run_id.clone(),
            jti: self.jti.clone(),
        }
    }
}

fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.char_indices()
        .rev()
        .filter(|(_, c)| *c == '.')
        .find_map(|(i, _)| {
            let inner = claims.get(&path[..i])?.as_object()?;
            lookup(inner, &path[i + 1..])
        })
}

/// Why a CI token was refused. Every variant means "unauthenticated".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("not a JWS compact serialization (expected three base64url parts)")]
    NotCompact,
    #[error("{0} is not base64url-encoded JSON")]
    BadEncoding(&'static str),
    #[error("alg `{0}` is not allowed: only asymmetric RS, ES, PS 256/384/512 and EdDSA")]
    AlgNotAllowed(String),
    #[error("issuer `{0}` is not a configured OIDC issuer")]
    UnknownIssuer(String),
    #[error(
        "legacy Kubernetes service account tokens (iss `kubernetes/serviceaccount`, no exp) are refused: use a projected token with an audience"
    )]
    LegacyKubernetes,
    #[error("the keys of issuer `{issuer}` cannot be fetched: {reason}")]
    KeysUnavailable { issuer: String, reason: String },
    #[error("kid `{0}` is not in the issuer's JWKS")]
    UnknownKid(String),
    #[error("key `{kid}` cannot verify alg `{alg}`")]
    AlgKeyMismatch { kid: String, alg: String },
    #[error("signature does not verify")]
    BadSignature,
    #[error("claim `{0}` is missing or not of the expected type")]
    MissingClaim(&'static str),
    #[error("aud does not contain `{0}`")]
    Audience(String),
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    #[error("token was issued in the future ({iat}, now {now})")]
    IssuedInFuture { iat: i64, now: i64 },
    #[error("token lifetime {lifetime}s exceeds the {max}s this issuer is trusted for")]
    TooLongLived { lifetime: i64, max: i64 },
    #[error("token does not look like a {profile} token: {reason}")]
    Profile { profile: Profile, reason: String },
}

/// The registered claims every CI token must have, read before the profile looks at the rest.
#[derive(Deserialize)]
struct Registered {
    iss: String,
    sub: String,
    aud: Audience,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    jti: Option<String>,
}

/// Verifies CI tokens of the configured issuers.
pub struct OidcVerifier {
    issuers: HashMap<String, IssuerConfig>,
    keys: KeyCache,
    clock: SharedClock,
}

impl fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl OidcVerifier {
    /// A verifier for `issuers`, fetching keys from `sources`.
    pub fn new(issuers: Vec<IssuerConfig>, sources: Vec<KeySource>, clock: SharedClock) -> Self {
        OidcVerifier {
            issuers: issuers.into_iter().map(|i| (i.issuer.clone(), i)).collect(),
            keys: KeyCache::new(sources, SharedClock::clone(&clock)),
            clock,
        }
    }

    /// Returns true when `issuer` is configured.
    pub fn knows(&self, issuer: &str) -> bool {
        self.issuers.contains_key(issuer)
    }

    /// Installs `jwks` as the issuer's current keys without fetching (unit tests and fuzz
    /// targets only). Fails when the issuer is not configured.
    #[cfg(any(test, fuzzing))]
    pub async fn seed_keys(
        &self,
        issuer: &str,
        jwks: &jsonwebtoken::jwk::JwkSet,
    ) -> Result<(), keys::KeyFetchError> {
        self.keys
            .seed(issuer, jwks, self.clock.unix_seconds())
            .await
    }

    /// Returns how many JWKS fetches have been started (for tests and metrics).
    pub fn jwks_fetches(&self) -> u64 {
        self.keys.fetches()
    }

    /// Verifies a CI token; returns the attestation of its CI identity. Fails with the first
    /// rule the token breaks.
    pub async fn verify(&self, token: &str) -> Result<Attestation, OidcError> {
        let parts = jws::split(token).ok_or(OidcError::NotCompact)?;
        let claims: Value =
            jws::decode_json(parts.claims).ok_or(OidcError::BadEncoding("claims"))?;
        self.verify_parsed(token, &parts, claims).await
    }

    /// Like [`OidcVerifier::verify`], with the token already split and its claims decoded.
    pub async fn verify_parsed(
        &self,
        token: &str,
        parts: &jws::JwsParts<'_>,
        claims: Value,
    ) -> Result<Attestation, OidcError> {
        let header: Map<String, Value> =
            jws::decode_json(parts.header).ok_or(OidcError::BadEncoding("header"))?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let alg = jws::parse_alg(alg_name, true)
            .ok_or_else(|| OidcError::AlgNotAllowed(alg_name.to_owned()))?;
        let kid = header.get("kid").and_then(Value::as_str);
        if claims.get("iss").and_then(Value::as_str) == Some(LEGACY_KUBERNETES_ISSUER) {
            return Err(OidcError::LegacyKubernetes);
        }
        let registered = Registered::deserialize(&claims)
            .map_err(|_| OidcError::MissingClaim("iss, sub and aud"))?;
        let Value::Object(claims) = claims else {
            return Err(OidcError::BadEncoding("claims"));
        };
        if registered.iss == LEGACY_KUBERNETES_ISSUER {
            return Err(OidcError::LegacyKubernetes);
        }
        let issuer = self
            .issuers
            .get(&registered.iss)
            .ok_or_else(|| OidcError::UnknownIssuer(registered.iss.clone()))?;
        self.check_signature(&issuer.issuer, kid, alg, parts)
            .await?;
        let now = self.clock.unix_seconds();
        let exp = check_claims(issuer, &registered, now)?;
        let run_id = issuer.profile.check(&registered.sub, &claims)?;
        let identity = CiIdentity {
            issuer: registered.iss,
            subject: registered.sub,
            claims,
            run_id,
            jti: registered.jti,
        };
        Ok(Attestation {
            principal: Principal::Ci(Box::new(identity)),
            evidence_kind: EvidenceKind::Oidc,
            evidence_hash: sha256_hex(token.as_bytes()),
            cnf_x5t_s256: None,
            one_time: Some(OneTime {
                key: sha256_hex(parts.signing_input.as_bytes()),
                until: exp,
            }),
        })
    }

    async fn check_signature(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: jsonwebtoken::Algorithm,
        parts: &jws::JwsParts<'_>,
    ) -> Result<(), OidcError> {
        let unavailable = |e: keys::KeyFetchError| OidcError::KeysUnavailable {
            issuer: issuer.to_owned(),
            reason: e.to_string(),
        };
        let keys = self.keys.keys(issuer).await.map_err(unavailable)?;
        let result = match jws::verify(&keys.keys, kid, alg, parts) {
            Err(SignatureError::UnknownKid(_)) => {
                let refreshed = self.keys.refresh(issuer, &keys).await;
                jws::verify(&refreshed.keys, kid, alg, parts)
            }
            other => other,
        };
        result.map_err(|e| match e {
            SignatureError::UnknownKid(kid) => OidcError::UnknownKid(kid),
            SignatureError::AlgKeyMismatch { kid, alg } => OidcError::AlgKeyMismatch {
                kid,
                alg: format!("{alg:?}"),
            },
            SignatureError::BadSignature => OidcError::BadSignature,
        })
    }
}

/// Checks audience, times and lifetime; returns `exp`, which every token accepted has (so a
/// replay guard's expiry is the token's own, the same at every use).
fn check_claims(issuer: &IssuerConfig, c: &Registered, now: i64) -> Result<i64, OidcError> {
    if !c.aud.contains(&issuer.audience) {
        return Err(OidcError::Audience(issuer.audience.clone()));
    }
    let exp = c.exp.ok_or(if issuer.profile == Profile::Kubernetes {
        OidcError::LegacyKubernetes
    } else {
        OidcError::MissingClaim("exp")
    })? as i64;
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(OidcError::Expired { exp, now });
    }
    if let Some(nbf) = c.nbf.map(|n| n as i64)
        && now.saturating_add(LEEWAY_SECS) < nbf
    {
        return Err(OidcError::NotYetValid { nbf, now });
    }
    // Without iat the lifetime cannot be bounded: nbf stands in, else the token is refused.
    let iat = c.iat.or(c.nbf).ok_or(OidcError::MissingClaim("iat"))? as i64;
    if now.saturating_add(LEEWAY_SECS) < iat {
        return Err(OidcError::IssuedInFuture { iat, now });
    }
    let lifetime = exp.saturating_sub(iat);
    let max = i64::try_from(issuer.max_token_lifetime.as_secs()).unwrap_or(i64::MAX);
    if lifetime > max {
        return Err(OidcError::TooLongLived { lifetime, max });
    }
    Ok(exp)
}

#[cfg(test)]
mod tests;
