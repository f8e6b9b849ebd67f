//! JWKS of OIDC issuers: discovered (`/.well-known/openid-configuration` → `jwks_uri`) or
//! configured, cached in a moka cache, and refreshed when a token names an unknown `kid` or the
//! keys are older than [`MAX_AGE_SECS`] — one fetch at a time per issuer (single-flight), at most
//! one per [`MIN_REFRESH_SECS`] (rate limit), and keeping the cached keys when the issuer is down.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use crate::attest::jws::VerifyingKey;
use crate::clock::SharedClock;
use crate::http_client::{HttpError, HttpsClient};

/// Keys older than this are refreshed on the next use.
pub const MAX_AGE_SECS: i64 = 3600;
/// At most one refresh per issuer in this many seconds, however many unknown `kid`s arrive.
pub const MIN_REFRESH_SECS: i64 = 10;

/// One issuer's keys as last fetched.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Vec<VerifyingKey>,
    pub fetched_at: i64,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub struct KeySource {
    pub issuer: String,
    /// Configured `jwks_uri`; `None` means discovery.
    pub jwks_uri: Option<String>,
    pub http: HttpsClient,
}

/// Why an issuer's keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    #[error("issuer `{0}` is not configured")]
    NotConfigured(String),
    #[error("the issuer could not be reached recently; retry shortly")]
    RateLimited,
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url} is not OIDC discovery metadata: {reason}")]
    BadDiscovery { url: String, reason: String },
    #[error("{url} names issuer `{named}`, not `{expected}`")]
    WrongIssuer {
        url: String,
        named: String,
        expected: String,
    },
    #[error("{url} is not a JWKS: {reason}")]
    BadJwks { url: String, reason: String },
    /// A fetch shared by concurrent callers failed.
    #[error(transparent)]
    Shared(Arc<KeyFetchError>),
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl KeySource {
    /// Fetches the issuer's JWKS, discovering `jwks_uri` first when not configured. Fails with a
    /// message when the issuer cannot be reached or answers something unusable.
    async fn fetch(&self, now: i64) -> Result<KeySet, KeyFetchError> {
        let jwks_uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let body = self.http.get(&url).await?.body;
                let doc: Discovery =
                    serde_json::from_slice(&body).map_err(|e| KeyFetchError::BadDiscovery {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?;
                if doc.issuer != self.issuer {
                    return Err(KeyFetchError::WrongIssuer {
                        url,
                        named: doc.issuer,
                        expected: self.issuer.clone(),
                    });
                }
                doc.jwks_uri
            }
        };
        let body = self.http.get(&jwks_uri).await?.body;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| KeyFetchError::BadJwks {
            url: jwks_uri.clone(),
            reason: e.to_string(),
        })?;
        Ok(KeySet::from_jwks(&set, now))
    }
}

impl KeySet {
    /// Keeps the usable signature keys of `set`; unsupported types and encryption keys are
    /// skipped, not fatal.
    pub fn from_jwks(set: &JwkSet, fetched_at: i64) -> Self {
        let keys = set
            .keys
            .iter()
            .filter(|k| {
                !matches!(
                    &k.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                )
            })
            .filter_map(|k| VerifyingKey::from_jwk(k).ok())
            .collect();
        KeySet { keys, fetched_at }
    }
}

/// The key cache of every configured issuer.
pub struct KeyCache {
    sources: HashMap<String, KeySource>,
    cache: moka::future::Cache<String, Arc<KeySet>>,
    refresh_locks: HashMap<String, tokio::sync::Mutex<()>>,
    /// When each issuer was last asked for keys, successful or not: the rate limit.
    attempts: std::sync::Mutex<HashMap<String, i64>>,
    clock: SharedClock,
    fetches: AtomicU64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("issuers", &self.sources.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyCache {
    /// A cache for `sources`; nothing is fetched until a token needs it.
    pub fn new(sources: Vec<KeySource>, clock: SharedClock) -> Self {
        let refresh_locks = sources
            .iter()
            .map(|s| (s.issuer.clone(), tokio::sync::Mutex::new(())))
            .collect();
        KeyCache {
            sources: sources.into_iter().map(|s| (s.issuer.clone(), s)).collect(),
            cache: moka::future::Cache::builder().max_capacity(1024).build(),
            refresh_locks,
            attempts: std::sync::Mutex::new(HashMap::new()),
            clock,
            fetches: AtomicU64::new(0),
        }
    }

    /// Returns how many JWKS fetches (discovery included) have been started.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Returns true, and notes the attempt, when the issuer was not asked for keys in the last
    /// [`MIN_REFRESH_SECS`] — whether that attempt succeeded or failed.
    fn may_attempt(&self, issuer: &str) -> bool {
        let now = self.clock.unix_seconds();
        let Ok(mut attempts) = self.attempts.lock() else {
            return false;
        };
        match attempts.get(issuer) {
            Some(at) if now - at < MIN_REFRESH_SECS => false,
            _ => {
                attempts.insert(issuer.to_owned(), now);
                true
            }
        }
    }

    async fn fetch(&self, source: &KeySource) -> Result<KeySet, KeyFetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = source.fetch(self.clock.unix_seconds()).await;
        match &result {
            Ok(set) => {
                tracing::info!(issuer = %source.issuer, keys = set.keys.len(), "fetched issuer JWKS")
            }
            Err(e) => {
                tracing::warn!(issuer = %source.issuer, error = %e, "fetching issuer JWKS failed")
            }
        }
        result
    }

    /// Returns the issuer's cached keys, loading them on first use (concurrent first uses share
    /// one fetch; a failed load is not retried for [`MIN_REFRESH_SECS`]). Keys older than
    /// [`MAX_AGE_SECS`] are refreshed by one caller while the others keep using them. Fails only
    /// when no keys were ever fetched.
    pub async fn keys(&self, issuer: &str) -> Result<Arc<KeySet>, KeyFetchError> {
        let source = self
            .sources
            .get(issuer)
            .ok_or_else(|| KeyFetchError::NotConfigured(issuer.to_owned()))?;
        let Some(set) = self.cache.get(issuer).await else {
            // The rate limit is inside the shared fetch: callers that arrive while it runs
            // wait for it, instead of being refused as a second attempt.
            return self
                .cache
                .try_get_with(issuer.to_owned(), async {
                    if !self.may_attempt(issuer) {
                        return Err(KeyFetchError::RateLimited);
                    }
                    self.fetch(source).await.map(Arc::new)
                })
                .await
                .map_err(KeyFetchError::Shared);
        };
        let stale = self.clock.unix_seconds() - set.fetched_at > MAX_AGE_SECS;
        let Some(lock) = self.refresh_locks.get(issuer).filter(|_| stale) else {
            return Ok(set);
        };
        // Only one caller refreshes stale keys; the rest go on with the cached ones.
        let Ok(_single_flight) = lock.try_lock() else {
            return Ok(set);
        };
        if !self.may_attempt(issuer) {
            return Ok(set);
        }
        Ok(self.replace(issuer, source, set).await)
    }

    /// Fetches new keys and caches them; on failure (or an empty key set) keeps `current`.
    async fn replace(&self, issuer: &str, source: &KeySource, current: Arc<KeySet>) -> Arc<KeySet> {
        match self.fetch(source).await {
            Ok(set) if !set.keys.is_empty() => {
                let set = Arc::new(set);
                self.cache.insert(issuer.to_owned(), Arc::clone(&set)).await;
                set
            }
            _ => current,
        }
    }

    /// Installs keys without fetching (unit tests only); fails when the issuer is not
    /// configured.
    #[cfg(any(test, fuzzing))]
    pub(crate) async fn seed(
        &self,
        issuer: &str,
        jwks: &JwkSet,
        now: i64,
    ) -> Result<(), KeyFetchError> {
        if !self.sources.contains_key(issuer) {
            return Err(KeyFetchError::NotConfigured(issuer.to_owned()));
        }
        self.cache
            .insert(issuer.to_owned(), Arc::new(KeySet::from_jwks(jwks, now)))
            .await;
        Ok(())
    }

    /// Refreshes the issuer's keys after `seen` proved stale (an unknown `kid`), unless another
    /// caller refreshed them meanwhile or the issuer was asked under [`MIN_REFRESH_SECS`] ago.
    /// Returns the newest keys; on a failed fetch, the cached ones.
    pub async fn refresh(&self, issuer: &str, seen: &Arc<KeySet>) -> Arc<KeySet> {
        let (Some(source), Some(lock)) = (self.sources.get(issuer), self.refresh_locks.get(issuer))
        else {
            return Arc::clone(seen);
        };
        let _single_flight = lock.lock().await;
        let current = self
            .cache
            .get(issuer)
            .await
            .unwrap_or_else(|| Arc::clone(seen));
        if current.fetched_at > seen.fetched_at || !self.may_attempt(issuer) {
            return current;
        }
        self.replace(issuer, source, current).await
    }
}
