//! JWT-SVID verification (`standards.md` §3): JWS compact only, header `alg`/`kid`/`typ` only,
//! RS/ES/PS 256–512 only, key by `kid` from the bundle of the `sub`'s trust domain, `aud` must hold
//! our audience, `exp` required and in the future, and no further ahead than the trust domain's
//! `max_jwt_svid_lifetime` (JWT-SVIDs carry no replay guard: the cap bounds how long a stolen
//! one is worth anything).

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;

use super::TrustDomainBundle;
use super::jws::{self, Audience, SignatureError, VerifyingKey};
use super::svid_cache::SvidCache;
use super::x509_svid::BundleError;
use super::{Attestation, Principal, sha256};
use crate::domain::EvidenceKind;
use crate::domain::id::hex;
use crate::spiffe_id::SpiffeId;

/// Tolerated clock skew when checking `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 30;
/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// `[[trust_domain]] max_jwt_svid_lifetime` when not set: the furthest `exp` may lie ahead.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Why a JWT-SVID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSvidError {
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("not a JWS compact serialization (expected three base64url parts)")]
    NotCompact,
    #[error("{part} is not base64url-encoded JSON")]
    BadEncoding { part: &'static str },
    #[error("alg `{0}` is not allowed: JWT-SVIDs must be signed with RS, ES or PS 256/384/512")]
    AlgNotAllowed(String),
    #[error("header member `{0}` is not allowed (only alg, kid and typ)")]
    HeaderMember(String),
    #[error("typ `{0}` is not allowed (only JWT or JOSE)")]
    Typ(String),
    #[error("sub is not a SPIFFE ID: {0}")]
    Subject(String),
    #[error("sub `{0}` is a trust domain, not a workload")]
    SubjectWithoutPath(String),
    #[error("trust domain `{0}` is not trusted for JWT-SVIDs")]
    UntrustedDomain(String),
    #[error("kid `{kid}` is not in the JWT bundle of trust domain `{domain}`")]
    UnknownKid { kid: String, domain: String },
    #[error("key `{kid}` cannot verify alg `{alg}`")]
    AlgKeyMismatch { kid: String, alg: String },
    #[error("signature does not verify")]
    BadSignature,
    #[error("exp is missing")]
    MissingExp,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error(
        "JWT-SVID lives longer than the {} this trust domain allows: exp is {exp}, {}s after now \
         ({now}); ask for a shorter-lived JWT-SVID",
        human_secs(*.max_secs),
        .exp.saturating_sub(*.now)
    )]
    LivesTooLong { exp: i64, now: i64, max_secs: i64 },
    #[error("token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    #[error("aud does not contain `{0}`")]
    Audience(String),
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    nbf: Option<f64>,
}

/// Returns `secs` as the config writes it: `1h`, `15m` or `90s`.
fn human_secs(secs: i64) -> String {
    match secs {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A bearer token and its SHA-256 (the cache key, and the evidence hash in hex).
#[derive(Debug, Clone, Copy)]
pub struct Token<'a> {
    pub text: &'a str,
    pub digest: [u8; 32],
}

/// What a verified JWT-SVID left that later presentations still check or return.
#[derive(Debug)]
struct Verified {
    identity: SpiffeId,
    exp: i64,
    nbf: Option<i64>,
    /// The trust domain's lifetime cap when it was verified (fixed for one verifier).
    max_lifetime: i64,
}

/// Checks `exp` (not past, at most `max_lifetime` seconds ahead) and `nbf` at `now`, both
/// with [`LEEWAY_SECS`]. Fails with the rule broken.
fn check_times(
    exp: i64,
    nbf: Option<i64>,
    now: i64,
    max_lifetime: i64,
) -> Result<(), JwtSvidError> {
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(JwtSvidError::Expired { exp, now });
    }
    if exp.saturating_sub(now) > max_lifetime {
        return Err(JwtSvidError::LivesTooLong {
            exp,
            now,
            max_secs: max_lifetime,
        });
    }
    if let Some(nbf) = nbf
        && now.saturating_add(LEEWAY_SECS) < nbf
    {
        return Err(JwtSvidError::NotYetValid { nbf, now });
    }
    Ok(())
}

/// One trust domain's JWT-SVID keys and lifetime cap.
struct DomainKeys {
    keys: Vec<VerifyingKey>,
    /// Longest `exp − now` accepted, in seconds.
    max_lifetime: i64,
}

/// Verifies JWT-SVIDs against the configured trust domains' JWT bundles, remembering the
/// tokens that verified until they expire ([`svid_cache`]).
pub struct JwtSvidVerifier {
    audience: String,
    domains: HashMap<String, DomainKeys>,
    cache: SvidCache<Verified>,
}

impl std::fmt::Debug for JwtSvidVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<(&String, Vec<&str>)> = self
            .domains
            .iter()
            .map(|(d, dk)| (d, dk.keys.iter().filter_map(|k| k.kid.as_deref()).collect()))
            .collect();
        f.debug_struct("JwtSvidVerifier")
            .field("audience", &self.audience)
            .field("keys", &kids)
            .finish()
    }
}

/// Checks the header: only `alg`, `kid`, `typ`; `typ` JWT or JOSE; `alg` allowed. Returns the
/// alg and kid.
fn check_header(part: &str) -> Result<(Algorithm, Option<String>), JwtSvidError> {
    let bad = JwtSvidError::BadEncoding { part: "header" };
    let map: serde_json::Map<String, serde_json::Value> =
        jws::decode_json(part).ok_or(bad.clone())?;
    let header: Header =
        serde_json::from_value(serde_json::Value::Object(map.clone())).map_err(|_| bad.clone())?;
    let alg = jws::parse_alg(&header.alg, false)
        .ok_or_else(|| JwtSvidError::AlgNotAllowed(header.alg.clone()))?;
    if let Some(member) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "alg" | "kid" | "typ"))
    {
        return Err(JwtSvidError::HeaderMember(member.clone()));
    }
    if let Some(typ) = map.get("typ") {
        let typ = typ.as_str().unwrap_or_default();
        if typ != "JWT" && typ != "JOSE" {
            return Err(JwtSvidError::Typ(typ.to_owned()));
        }
    }
    let kid = match map.get("kid") {
        Some(serde_json::Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(bad),
        None => None,
    };
    Ok((alg, kid))
}

impl JwtSvidVerifier {
    /// Builds the verifier, with an empty cache whose hits are counted in `cache_hits`; fails
    /// when a bundle key cannot be used for verification.
    pub fn new(
        domains: &[TrustDomainBundle],
        audience: &str,
        cache_hits: Counter,
    ) -> Result<Self, BundleError> {
        let mut out = HashMap::new();
        for domain in domains.iter().filter(|d| !d.jwt_keys.is_empty()) {
            let keys = domain
                .jwt_keys
                .iter()
                .map(|k| {
                    VerifyingKey::from_jwk(&k.jwk).map_err(|e| BundleError::JwtKey {
                        domain: domain.name.to_string(),
                        kid: k.kid.clone(),
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let max_lifetime =
                i64::try_from(domain.max_jwt_svid_lifetime.as_secs()).unwrap_or(i64::MAX);
            let keys = DomainKeys { keys, max_lifetime };
            out.insert(domain.name.as_str().to_owned(), keys);
        }
        let longest = out.values().map(|d| d.max_lifetime).max().unwrap_or(0);
        let ttl = u64::try_from(longest.saturating_add(LEEWAY_SECS)).unwrap_or(0);
        Ok(JwtSvidVerifier {
            audience: audience.to_owned(),
            domains: out,
            cache: SvidCache::new(Duration::from_secs(ttl), cache_hits),
        })
    }

    /// Returns the outcome for a token that verified before (its SHA-256 is `digest`): its
    /// attestation, or the time rule it now breaks. `None` when it is not remembered.
    pub fn cached(&self, digest: &[u8; 32], now: i64) -> Option<Result<Attestation, JwtSvidError>> {
        let verified = self.cache.get(digest)?;
        let times = check_times(verified.exp, verified.nbf, now, verified.max_lifetime);
        Some(times.map(|()| Attestation {
            principal: Principal::Spiffe(verified.identity.clone()),
            evidence_kind: EvidenceKind::JwtSvid,
            evidence_hash: hex(digest),
            cnf_x5t_s256: None,
            one_time: None,
        }))
    }

    /// Verifies `token` at unix time `now`; returns the attested workload. Fails with the first
    /// rule the token breaks.
    pub fn verify(&self, token: &str, now: i64) -> Result<Attestation, JwtSvidError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtSvidError::TooLong);
        }
        let digest = sha256(token.as_bytes());
        if let Some(outcome) = self.cached(&digest, now) {
            return outcome;
        }
        let parts = jws::split(token).ok_or(JwtSvidError::NotCompact)?;
        let claims: serde_json::Value =
            jws::decode_json(parts.claims).ok_or(JwtSvidError::BadEncoding { part: "claims" })?;
        self.verify_parsed(
            Token {
                text: token,
                digest,
            },
            &parts,
            &claims,
            now,
        )
    }

    /// Like [`JwtSvidVerifier::verify`] for a token not in the cache, already split and its
    /// claims decoded; remembers it when it verifies.
    pub fn verify_parsed(
        &self,
        token: Token<'_>,
        parts: &jws::JwsParts<'_>,
        claims: &serde_json::Value,
        now: i64,
    ) -> Result<Attestation, JwtSvidError> {
        if token.text.len() > MAX_TOKEN_LEN {
            return Err(JwtSvidError::TooLong);
        }
        let (alg, kid) = check_header(parts.header)?;
        let claims = Claims::deserialize(claims)
            .map_err(|_| JwtSvidError::BadEncoding { part: "claims" })?;
        let sub = claims
            .sub
            .as_deref()
            .ok_or_else(|| JwtSvidError::Subject("missing".into()))?;
        let identity: SpiffeId = sub
            .parse()
            .map_err(|e| JwtSvidError::Subject(format!("`{sub}`: {e}")))?;
        if !identity.has_path() {
            return Err(JwtSvidError::SubjectWithoutPath(sub.to_owned()));
        }
        let domain = identity.trust_domain_name();
        let domain_keys = self
            .domains
            .get(domain)
            .ok_or_else(|| JwtSvidError::UntrustedDomain(domain.to_owned()))?;
        jws::verify(&domain_keys.keys, kid.as_deref(), alg, parts).map_err(|e| match e {
            SignatureError::UnknownKid(kid) => JwtSvidError::UnknownKid {
                kid,
                domain: domain.to_owned(),
            },
            SignatureError::AlgKeyMismatch { kid, alg } => JwtSvidError::AlgKeyMismatch {
                kid,
                alg: format!("{alg:?}"),
            },
            SignatureError::BadSignature => JwtSvidError::BadSignature,
        })?;
        self.check_claims(&claims, now, domain_keys.max_lifetime)?;
        let verified = Verified {
            identity: identity.clone(),
            exp: claims.exp.map_or(0, |e| e as i64),
            nbf: claims.nbf.map(|n| n as i64),
            max_lifetime: domain_keys.max_lifetime,
        };
        self.cache.insert(token.digest, verified);
        Ok(Attestation {
            principal: Principal::Spiffe(identity),
            evidence_kind: EvidenceKind::JwtSvid,
            evidence_hash: hex(&token.digest),
            cnf_x5t_s256: None,
            one_time: None,
        })
    }

    /// Checks `exp` (present, not past, at most `max_lifetime` seconds ahead), `nbf` and `aud`.
    fn check_claims(
        &self,
        claims: &Claims,
        now: i64,
        max_lifetime: i64,
    ) -> Result<(), JwtSvidError> {
        // Times may be written as floats by some issuers; whole seconds are what count (the
        // cast saturates, so 1e30 is i64::MAX).
        let exp = claims.exp.ok_or(JwtSvidError::MissingExp)? as i64;
        check_times(exp, claims.nbf.map(|n| n as i64), now, max_lifetime)?;
        match &claims.aud {
            Some(aud) if aud.contains(&self.audience) => Ok(()),
            _ => Err(JwtSvidError::Audience(self.audience.clone())),
        }
    }
}

#[cfg(test)]
#[path = "jwt_svid_tests.rs"]
mod tests;
