//! Offline revocation checks from Token Status Lists (draft-ietf-oauth-status-list): a token
//! the broker minted names its entry (`status.status_list` = `{idx, uri}`); the relying party
//! fetches the list at `uri` (only under the broker's own `<issuer>/statuslists/`, never
//! following a redirect), verifies it against the broker's JWKS — signature, `typ:
//! statuslist+jwt`, `sub` equal to `uri`, `iss`, `exp` — caches it for its `ttl`, and reads the
//! token's bit. Revocation then shows here at most `ttl` (plus the broker's `max_lag`) late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Validation, decode_header};
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tessera_core::clock::SharedClock;
use tessera_core::http_client::{HttpError, HttpsClient};
use tessera_core::status_list::{
    DecodedList, MEDIA_TYPE, PATH, StatusListClaims, StatusListError, TYP,
};

use super::JwksError;
use super::verify::{Keys, LEEWAY_SECS, keys};

/// Longest a list is cached, whatever its `ttl` says (a list cannot make us stop fetching).
pub const MAX_CACHE_SECS: u64 = 3600;

/// Why a token's status could not be read from its list. Any of these means no statement can
/// be made: the token should be refused (or sent to introspection).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the token has no status.status_list {{idx, uri}} claim")]
    NoStatus,
    #[error("the status list `{0}` is not one of this broker's")]
    ForeignList(String),
    #[error(transparent)]
    Fetch(#[from] HttpError),
    #[error("the status list is not a valid JWT: {0}")]
    Invalid(String),
    #[error("the status list's typ is not statuslist+jwt")]
    WrongType,
    #[error("the status list is signed by an unknown key")]
    UnknownKey,
    #[error("the status list's sub is not the URI it was fetched from")]
    WrongSubject,
    #[error("the status list's iss is not the broker")]
    WrongIssuer,
    #[error("the status list expired")]
    Expired,
    #[error(transparent)]
    Format(#[from] StatusListError),
}

/// What a list says about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// 0: not revoked.
    Valid,
    /// 1: revoked.
    Invalid,
    /// Another status value (the broker sets none, but lists may define more).
    Other(u8),
}

impl From<u8> for TokenStatus {
    fn from(value: u8) -> Self {
        match value {
            0 => TokenStatus::Valid,
            1 => TokenStatus::Invalid,
            other => TokenStatus::Other(other),
        }
    }
}

/// A verified list.
#[derive(Debug, Clone)]
pub struct VerifiedList {
    pub iat: i64,
    pub exp: Option<i64>,
    pub ttl: Option<u64>,
    list: DecodedList,
}

impl VerifiedList {
    /// Returns the status at `idx`. Fails with `Format` past the end of the list.
    pub fn status(&self, idx: u64) -> Result<TokenStatus, StatusError> {
        Ok(self.list.status(idx)?.into())
    }
}

/// Verifies Status List Tokens of one broker, offline.
pub struct ListVerifier {
    issuer: String,
    keys: Keys,
}

impl std::fmt::Debug for ListVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl ListVerifier {
    /// Verifies lists of `issuer` signed by a key of `jwks` (the broker's). Fails like
    /// [`super::RelyingParty::new`] on an unusable JWKS.
    pub fn new(issuer: &str, jwks: &JwkSet) -> Result<Self, JwksError> {
        Ok(ListVerifier {
            issuer: issuer.to_owned(),
            keys: keys(jwks)?,
        })
    }

    /// Returns the list in `jwt`, fetched from `uri`, if it verifies at `now` (unix seconds):
    /// signature by a key of the JWKS, `typ`, `sub` = `uri`, `iss` (when present) = the broker,
    /// `exp` not passed (with the clock leeway tokens get). Fails naming the first check that
    /// does not hold, or when the list does not decode.
    pub fn verify(&self, jwt: &str, uri: &str, now: i64) -> Result<VerifiedList, StatusError> {
        let header = decode_header(jwt).map_err(|e| StatusError::Invalid(e.to_string()))?;
        if header.typ.as_deref() != Some(TYP) {
            return Err(StatusError::WrongType);
        }
        let Some((key, alg)) = header.kid.as_deref().and_then(|kid| self.keys.get(kid)) else {
            return Err(StatusError::UnknownKey);
        };
        let mut validation = Validation::new(*alg);
        validation.set_required_spec_claims(&["sub", "iat"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<StatusListClaims>(jwt, key, &validation)
            .map_err(|e| StatusError::Invalid(e.to_string()))?
            .claims;
        if claims.sub != uri {
            return Err(StatusError::WrongSubject);
        }
        if claims.iss.as_deref().is_some_and(|iss| iss != self.issuer) {
            return Err(StatusError::WrongIssuer);
        }
        if claims
            .exp
            .is_some_and(|exp| now >= exp.saturating_add(LEEWAY_SECS))
        {
            return Err(StatusError::Expired);
        }
        Ok(VerifiedList {
            iat: claims.iat,
            exp: claims.exp,
            ttl: claims.ttl,
            list: claims.status_list.decompress()?,
        })
    }
}

/// A list in the cache and until when (unix seconds) it may be used.
#[derive(Debug, Clone)]
struct Cached {
    until: i64,
    list: Arc<VerifiedList>,
}

/// Parameters of [`StatusLists::new`].
#[derive(Debug, Clone, Copy)]
pub struct StatusListsParams<'a> {
    /// The broker's `iss`: lists are fetched only under `<issuer>/statuslists/`.
    pub issuer: &'a str,
    /// The broker's JWKS (as for [`super::RelyingParty::new`]).
    pub jwks: &'a JwkSet,
    /// Extra roots to trust for the broker's HTTPS certificate (the Mozilla roots always are).
    pub roots: &'a [CertificateDer<'static>],
    pub clock: &'a SharedClock,
}

/// Reads tokens' statuses from the broker's lists, fetching each list at most once per `ttl`.
#[derive(Debug)]
pub struct StatusLists {
    verifier: ListVerifier,
    prefix: String,
    http: HttpsClient,
    clock: SharedClock,
    cache: Mutex<HashMap<String, Cached>>,
}

impl StatusLists {
    /// Fails when the JWKS is unusable or a root cannot be used.
    pub fn new(p: StatusListsParams<'_>) -> Result<Self, StatusListsSetupError> {
        Ok(StatusLists {
            verifier: ListVerifier::new(p.issuer, p.jwks)?,
            prefix: format!("{}{PATH}", p.issuer),
            http: HttpsClient::new(p.roots)?,
            clock: std::sync::Arc::clone(p.clock),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the status of the token whose (already verified) `claims` are given, from its
    /// list: cached while its `ttl` lasts (at most [`MAX_CACHE_SECS`]), else fetched and
    /// verified. Fails when the token names no entry or a foreign list, or the list cannot be
    /// fetched, does not verify, or does not hold the index.
    pub async fn status(&self, claims: &Value) -> Result<TokenStatus, StatusError> {
        let entry = &claims["status"]["status_list"];
        let (Some(idx), Some(uri)) = (entry["idx"].as_u64(), entry["uri"].as_str()) else {
            return Err(StatusError::NoStatus);
        };
        let name = uri
            .strip_prefix(&self.prefix)
            .ok_or_else(|| StatusError::ForeignList(uri.to_owned()))?;
        name.parse::<tessera_core::status_list::ListName>()
            .map_err(|_| StatusError::ForeignList(uri.to_owned()))?;
        self.list(uri).await?.status(idx)
    }

    /// Returns the verified list at `uri`, from the cache or fetched now.
    async fn list(&self, uri: &str) -> Result<Arc<VerifiedList>, StatusError> {
        let now = self.clock.unix_seconds();
        if let Some(cached) = self.cache.lock().ok().and_then(|c| c.get(uri).cloned())
            && now < cached.until
        {
            return Ok(cached.list);
        }
        let body = self.http.get_accept(uri, MEDIA_TYPE).await?.body;
        let jwt = std::str::from_utf8(&body).map_err(|e| StatusError::Invalid(e.to_string()))?;
        let list = Arc::new(self.verifier.verify(jwt.trim(), uri, now)?);
        let ttl = i64::try_from(list.ttl.unwrap_or(0).clamp(1, MAX_CACHE_SECS)).unwrap_or(1);
        let until = list.exp.map_or(now + ttl, |exp| (now + ttl).min(exp));
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, c| c.until > now);
            cache.insert(
                uri.to_owned(),
                Cached {
                    until,
                    list: Arc::clone(&list),
                },
            );
        }
        Ok(list)
    }
}

/// Why [`StatusLists`] cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum StatusListsSetupError {
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

#[cfg(test)]
#[path = "status_list_tests.rs"]
mod tests;
