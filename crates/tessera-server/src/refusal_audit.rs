//! Refusals of unauthenticated callers are audited in aggregate. Per interval
//! ([`REPEAT_WINDOW_SECS`]) the first refusal of each reason is written in full and later ones
//! are only counted; when the interval ends (at the next such refusal, or when the log is
//! flushed at shutdown) each reason refused more than once gets one `refused_repeated` line with
//! its count. A flood of bad tokens then writes a bounded number of lines per interval, not one
//! per request.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

/// Seconds of one aggregation interval.
pub const REPEAT_WINDOW_SECS: i64 = 60;
/// Distinct reasons written in full per interval; refusals for further reasons are counted
/// together under [`OTHER_REASONS`].
pub const MAX_REASONS: usize = 256;
/// The reason of the count of refusals past [`MAX_REASONS`] distinct ones.
pub const OTHER_REASONS: &str = "(reasons beyond the distinct ones written in full this interval)";

/// Refusals counted in the current interval.
#[derive(Debug, Default)]
pub struct Repeats {
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: i64,
    /// (event, reason) → refusals not written in full this interval.
    seen: BTreeMap<(String, String), u64>,
}

impl Window {
    /// Ends the interval at `now`; returns the `refused_repeated` fields of each reason counted.
    fn close(&mut self, now: i64) -> Vec<Value> {
        let started = std::mem::replace(&mut self.started, now);
        std::mem::take(&mut self.seen)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((event, reason), n)| {
                json!({"refused_event": event, "reason": reason, "count": n, "from": started, "until": now})
            })
            .collect()
    }
}

impl Repeats {
    /// Notes a refusal `event` for `reason` at unix time `now`. Returns whether to write it in
    /// full (the first of its reason this interval), and the `refused_repeated` fields of the
    /// interval that `now` ended, if it did.
    pub fn note(&self, event: &str, reason: &str, now: i64) -> (bool, Vec<Value>) {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let ended = if now >= w.started.saturating_add(REPEAT_WINDOW_SECS) {
            w.close(now)
        } else {
            Vec::new()
        };
        let mut key = (event.to_owned(), reason.to_owned());
        if w.seen.len() >= MAX_REASONS && !w.seen.contains_key(&key) {
            key.1 = OTHER_REASONS.to_owned();
        }
        let full = key.1 != OTHER_REASONS && !w.seen.contains_key(&key);
        let counted = w.seen.entry(key).or_insert(0);
        if !full {
            *counted += 1;
        }
        (full, ended)
    }

    /// Ends the interval at `now` (at shutdown); returns the `refused_repeated` fields.
    pub fn close(&self, now: i64) -> Vec<Value> {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        w.close(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_per_reason_is_written_and_repeats_are_counted_until_the_interval_ends() {
        let repeats = Repeats::default();
        assert_eq!(repeats.note("refused", "bad iss", 1000), (true, vec![]));
        assert_eq!(repeats.note("refused", "bad iss", 1001), (false, vec![]));
        assert_eq!(repeats.note("refused", "bad iss", 1002), (false, vec![]));
        assert_eq!(repeats.note("refused", "expired", 1003), (true, vec![]));
        let (full, ended) = repeats.note("refused", "bad iss", 1060);
        assert!(full, "a new interval writes the first in full again");
        assert_eq!(
            ended,
            vec![
                json!({"refused_event": "refused", "reason": "bad iss", "count": 2, "from": 1000, "until": 1060})
            ]
        );
        assert_eq!(repeats.close(1070), Vec::<Value>::new());
    }

    #[test]
    fn reasons_past_the_distinct_limit_are_counted_together() {
        let repeats = Repeats::default();
        for i in 0..MAX_REASONS + 3 {
            let (full, _) = repeats.note("refused", &format!("iss {i}"), 1000);
            assert_eq!(full, i < MAX_REASONS, "{i}");
        }
        let ended = repeats.close(1010);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0]["reason"], OTHER_REASONS);
        assert_eq!(ended[0]["count"], 3);
    }
}
