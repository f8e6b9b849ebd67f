//! Every revocation rule in force, by event sequence, so a watcher that resumes can be sent the
//! rules after its sequence without reading every event since (the index keeps only the
//! strongest rule per value, and no sequence). The log also knows how far it is complete: it
//! has seen every event up to [`RuleSnapshot::through`], so a replay reads only the events
//! after that from the ledger.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::domain::RevocationRule;

/// Rules with their sequences, and the last sequence up to which none is missing.
#[derive(Debug, Default)]
pub struct RuleLog {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: BTreeMap<u64, Arc<RevocationRule>>,
    /// Every event with a sequence up to this one was noted (or restored).
    through: u64,
}

/// What a replay can take from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSnapshot {
    /// The rules asked for, in sequence order.
    pub rules: Vec<Arc<RevocationRule>>,
    /// The rules are complete up to this sequence; later ones must be read elsewhere.
    pub through: u64,
}

impl RuleLog {
    /// An empty log, complete up to sequence 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `rules` (as read from the ledger) and marks the log complete up to `through`: the
    /// last sequence read *before* the rules were, so no rule up to it can be missing.
    pub fn restore(&self, rules: impl IntoIterator<Item = RevocationRule>, through: u64) {
        let mut inner = self.write();
        for rule in rules {
            inner.rules.insert(rule.sequence, Arc::new(rule));
        }
        inner.through = inner.through.max(through);
    }

    /// Notes one committed event (`rule` when it is a revocation), as the ledger publishes
    /// them, in sequence order. Returns false when `sequence` does not follow the last one
    /// noted: events were missed, and the log stays complete only up to the last one until
    /// it is [restored](RuleLog::restore).
    pub fn note(&self, sequence: u64, rule: Option<&RevocationRule>) -> bool {
        let mut inner = self.write();
        if sequence <= inner.through {
            return true; // already restored, or swept since
        }
        if let Some(rule) = rule {
            inner.rules.insert(sequence, Arc::new(rule.clone()));
        }
        if sequence == inner.through + 1 {
            inner.through = sequence;
            true
        } else {
            false
        }
    }

    /// Returns the rules with a sequence after `since` and up to `until`, in order, with how
    /// far they are complete: `until`, or less when the log has not seen that far yet.
    pub fn after(&self, since: u64, until: u64) -> RuleSnapshot {
        let inner = self.read();
        let through = inner.through.min(until);
        let rules = if since >= through {
            Vec::new()
        } else {
            inner
                .rules
                .range(since + 1..=through)
                .map(|(_, rule)| Arc::clone(rule))
                .collect()
        };
        RuleSnapshot { rules, through }
    }

    /// Drops the rules whose cut-off is before `rules_before` (everything they could cover has
    /// expired; the ledger forgets them too).
    pub fn prune(&self, rules_before: i64) {
        self.write()
            .rules
            .retain(|_, rule| rule.rule.effective_at >= rules_before);
    }

    /// Returns how many rules the log holds.
    pub fn len(&self) -> usize {
        self.read().rules.len()
    }

    /// Returns true when the log holds no rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NewRule, Selector};

    fn rule(sequence: u64, effective_at: i64) -> RevocationRule {
        RevocationRule {
            rule: NewRule {
                revocation_id: format!("r{sequence}"),
                selector: Selector::Purpose,
                value: format!("p{sequence}"),
                effective_at,
                reason: "test".into(),
                revoked_by: "admin".into(),
                effective_at_ms: None,
                scope: None,
            },
            sequence,
        }
    }

    fn sequences(snapshot: &RuleSnapshot) -> Vec<u64> {
        snapshot.rules.iter().map(|r| r.sequence).collect()
    }

    #[test]
    fn returns_the_rules_after_a_sequence_in_order_up_to_the_bound() {
        let log = RuleLog::new();
        log.restore([rule(7, 100), rule(2, 100), rule(4, 100)], 9);
        let all = log.after(0, 9);
        assert_eq!((sequences(&all), all.through), (vec![2, 4, 7], 9));
        assert_eq!(sequences(&log.after(2, 9)), vec![4, 7]);
        assert_eq!(sequences(&log.after(4, 6)), Vec::<u64>::new());
        assert_eq!(log.after(4, 6).through, 6);
        assert!(log.after(9, 9).rules.is_empty());
    }

    #[test]
    fn notes_events_in_order_and_says_when_some_were_missed() {
        let log = RuleLog::new();
        log.restore([rule(1, 100)], 1);
        assert!(log.note(2, None));
        assert!(log.note(3, Some(&rule(3, 100))));
        assert!(log.note(3, Some(&rule(3, 100))), "a repeat is harmless");
        assert!(!log.note(6, Some(&rule(6, 100))), "4 and 5 were missed");
        let snapshot = log.after(0, 10);
        assert_eq!(
            (sequences(&snapshot), snapshot.through),
            (vec![1, 3], 3),
            "complete only up to the gap"
        );
        log.restore([rule(1, 100), rule(3, 100), rule(5, 100), rule(6, 100)], 6);
        let snapshot = log.after(0, 10);
        assert_eq!(
            (sequences(&snapshot), snapshot.through),
            (vec![1, 3, 5, 6], 6)
        );
        assert!(log.note(7, None));
    }

    #[test]
    fn drops_rules_whose_cut_off_is_past_and_keeps_the_rest() {
        let log = RuleLog::new();
        log.restore([rule(1, 100), rule(2, 200), rule(3, 300)], 3);
        log.prune(200);
        assert_eq!(sequences(&log.after(0, 3)), vec![2, 3]);
        assert_eq!(log.len(), 2);
    }
}
