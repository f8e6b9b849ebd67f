//! Verified JWT-SVIDs, remembered until they expire: a workload presents the same JWT-SVID for
//! minutes, and the signature verify (the costliest step of a JWT mint, ~45 µs of ES256) need
//! not run again for bytes already verified against the same bundles. Keyed by the SHA-256 of
//! the whole token, so a token that differs in any byte (signature included) is verified anew.
//!
//! What a hit skips: the header and claims checks, the SPIFFE ID parse and the signature — all
//! functions of the token bytes and of the verifier's bundles and audience, which never change
//! for one cache (a reload or bundle rotation builds a new verifier, with an empty cache). What
//! still runs on every request: `exp`, `nbf` and the lifetime cap against the current time
//! (`JwtSvidVerifier::cached`), and everything after attestation (revocation, policy, rate
//! limits) in the caller. Only tokens that verified are kept, never refusals. Entries live at
//! most the longest JWT-SVID lifetime a trust domain accepts; past its `exp` an entry can only
//! answer `Expired`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

/// Most JWT-SVIDs remembered (about 300 bytes each): one per workload presenting one.
pub const CAPACITY: u64 = 65_536;

/// The cache of one verifier: what each verified token (by its SHA-256) left to check later.
/// [`SvidCache::get`] counts its hits in the shared counter.
pub(super) struct SvidCache<V> {
    entries: moka::sync::Cache<[u8; 32], Arc<V>>,
    hits: Counter,
}

impl<V: Send + Sync + 'static> SvidCache<V> {
    /// Returns an empty cache whose entries live at most `ttl` (the longest lifetime a trust
    /// domain accepts, plus the leeway: no entry can be of use longer), counting hits in `hits`.
    pub fn new(ttl: Duration, hits: Counter) -> Self {
        SvidCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
            hits,
        }
    }

    /// Returns what the token hashing to `key` verified to, if it did before.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<V>> {
        let found = self.entries.get(key);
        if found.is_some() {
            self.hits.inc();
        }
        found
    }

    /// Remembers that the token hashing to `key` verified to `verified`.
    pub fn insert(&self, key: [u8; 32], verified: V) {
        self.entries.insert(key, Arc::new(verified));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_is_counted_and_a_miss_is_not() {
        let hits = Counter::default();
        let cache = SvidCache::new(Duration::from_secs(60), hits.clone());
        assert!(cache.get(&[1; 32]).is_none());
        cache.insert([1; 32], "verified");
        assert_eq!(cache.get(&[1; 32]).as_deref(), Some(&"verified"));
        assert!(cache.get(&[2; 32]).is_none());
        assert_eq!(hits.get(), 1);
    }
}
