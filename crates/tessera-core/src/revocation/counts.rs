//! Live credentials per selector value, bucketed by expiry minute: what the revocation index
//! needs to answer "how many live credentials does this rule cover?". The ledger persists the
//! same counts (so a restart loads them instead of reading every record) and hands them over
//! as one [`LiveCounts`].
//!
//! A bucket is the end of the minute a credential expires in, so a count may include
//! credentials that expired less than [`BUCKET_SECS`] ago; it never misses a live one. Minute
//! buckets keep what is held and reloaded at restart to distinct values × 60 per hour of TTL
//! instead of × 3,600.

use std::collections::{BTreeMap, HashMap};

use crate::domain::{CredentialRecord, Selector};

/// The selectors counted per value (a credential id is unique; it is looked up instead), in
/// the order of their [`Selector::code`].
pub const COUNTED: [Selector; 5] = [
    Selector::Workload,
    Selector::Destination,
    Selector::Purpose,
    Selector::Owner,
    Selector::Grant,
];

/// Width of a count bucket, in seconds.
pub const BUCKET_SECS: i64 = 60;

/// Returns the bucket of a credential expiring at `expires_at`: the end of its minute (the
/// smallest multiple of [`BUCKET_SECS`] not before it).
pub fn bucket(expires_at: i64) -> i64 {
    expires_at
        .div_euclid(BUCKET_SECS)
        .saturating_add(i64::from(expires_at.rem_euclid(BUCKET_SECS) != 0))
        .saturating_mul(BUCKET_SECS)
}

/// Credentials per `(selector, value)` and expiry minute. Memory grows with distinct values
/// times distinct expiry seconds, not with the number of credentials.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LiveCounts {
    /// One map per counted selector, indexed like [`COUNTED`].
    by_selector: [HashMap<Box<str>, BTreeMap<i64, u64>>; COUNTED.len()],
}

/// Returns the slot of `selector` in [`COUNTED`], or `None` for `credential_id`.
fn slot(selector: Selector) -> Option<usize> {
    COUNTED.iter().position(|s| *s == selector)
}

impl LiveCounts {
    /// Empty counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` credentials with `value` for `selector` expiring at `expires_at` (in its
    /// [`bucket`]). Ignores `credential_id`, which is not counted.
    pub fn add(&mut self, selector: Selector, value: &str, expires_at: i64, n: u64) {
        let Some(slot) = slot(selector) else { return };
        let map = &mut self.by_selector[slot];
        let buckets = match map.get_mut(value) {
            Some(buckets) => buckets,
            None => map.entry(value.into()).or_default(),
        };
        *buckets.entry(bucket(expires_at)).or_default() += n;
    }

    /// Counts one credential under each counted selector.
    pub fn add_record(&mut self, record: &CredentialRecord) {
        for selector in COUNTED {
            self.add(selector, selector.value_of(record), record.expires_at, 1);
        }
    }

    /// Takes back one credential counted by [`LiveCounts::add_record`] (it was never
    /// recorded after all).
    pub fn remove_record(&mut self, record: &CredentialRecord) {
        let at = bucket(record.expires_at);
        for (slot, selector) in COUNTED.iter().enumerate() {
            let map = &mut self.by_selector[slot];
            let value = selector.value_of(record);
            let Some(buckets) = map.get_mut(value) else {
                continue;
            };
            if let Some(n) = buckets.get_mut(&at) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    buckets.remove(&at);
                }
            }
            if buckets.is_empty() {
                map.remove(value);
            }
        }
    }

    /// Returns how many counted credentials with `value` for `selector` expire in a bucket
    /// that ends after `now` (0 for `credential_id`).
    pub fn count(&self, selector: Selector, value: &str, now: i64) -> u64 {
        let Some(slot) = slot(selector) else { return 0 };
        self.by_selector[slot].get(value).map_or(0, |buckets| {
            buckets.range(now.saturating_add(1)..).map(|(_, n)| n).sum()
        })
    }

    /// Returns the end of the last expiry minute of a counted credential with `value` for
    /// `selector` that is live at `now`: none of them outlives it. `None` when none is live
    /// (and always for `credential_id`).
    pub fn latest_expiry(&self, selector: Selector, value: &str, now: i64) -> Option<i64> {
        let slot = slot(selector)?;
        let buckets = self.by_selector[slot].get(value)?;
        buckets
            .range(now.saturating_add(1)..)
            .next_back()
            .map(|(at, _)| *at)
    }

    /// Returns how many credentials expire after `now` (each is counted once per selector;
    /// this sums one of them).
    pub fn total(&self, now: i64) -> u64 {
        self.by_selector[0]
            .values()
            .flat_map(|buckets| buckets.range(now.saturating_add(1)..))
            .map(|(_, n)| n)
            .sum()
    }

    /// Forgets every bucket that ended at or before `now`, and values left with none.
    pub fn prune(&mut self, now: i64) {
        for map in &mut self.by_selector {
            map.retain(|_, buckets| {
                // In place, front first: a sweep removes only what expired since the last one
                // (split_off would copy what is kept).
                while buckets.first_key_value().is_some_and(|(at, _)| *at <= now) {
                    buckets.pop_first();
                }
                !buckets.is_empty()
            });
        }
    }

    /// Returns how many `(selector, value, expiry minute)` buckets are held.
    pub fn buckets(&self) -> usize {
        self.by_selector
            .iter()
            .flat_map(|map| map.values())
            .map(BTreeMap::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_expires_after_now_and_prunes_the_rest() {
        let mut counts = LiveCounts::new();
        counts.add(Selector::Workload, "w", 100, 2); // bucket 120
        counts.add(Selector::Workload, "w", 200, 3); // bucket 240
        counts.add(Selector::Workload, "w", 230, 1); // bucket 240
        counts.add(Selector::Owner, "team", 200, 5);
        counts.add(Selector::CredentialId, "id", 200, 1);
        assert_eq!(counts.count(Selector::Workload, "w", 50), 6);
        assert_eq!(counts.count(Selector::Workload, "w", 119), 6);
        assert_eq!(counts.count(Selector::Workload, "w", 120), 4);
        assert_eq!(counts.count(Selector::CredentialId, "id", 0), 0);
        assert_eq!(counts.total(0), 6);
        counts.prune(120);
        assert_eq!(counts.buckets(), 2);
        counts.prune(240);
        assert_eq!(counts, LiveCounts::new());
    }

    #[test]
    fn a_bucket_is_the_end_of_the_expiry_minute() {
        assert_eq!(bucket(120), 120);
        assert_eq!(bucket(121), 180);
        assert_eq!(bucket(179), 180);
        assert_eq!(bucket(-30), 0);
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(i64::MAX), i64::MAX, "saturates, never overflows");
    }
}
