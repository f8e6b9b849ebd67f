//! The revocation rules the lists enforce, by (selector, value) with the latest cut-off in
//! unix milliseconds. A credential added to a list is checked against them as it is added, so a
//! rule applied to the lists just before cannot miss it.

use std::collections::HashMap;

use tessera_core::domain::{CredentialRecord, NewRule, Selector};

/// Returns the last issue time (unix ms) `rule` covers: its millisecond cut-off.
pub(super) fn cut_off_ms(rule: &NewRule) -> i64 {
    rule.cutoff_ms()
}

/// Returns when `record` was issued, unix ms (from its time-ordered id).
pub(super) fn issued_ms(record: &CredentialRecord) -> i64 {
    record.issued_at_ms()
}

/// Rules by (selector, value): the latest cut-off of each.
#[derive(Debug, Default)]
pub(super) struct RuleTable {
    cut_offs: HashMap<(Selector, String), i64>,
}

impl RuleTable {
    /// Adds `rule`; returns true when it widens what is covered (a new value or a later
    /// cut-off).
    pub(super) fn insert(&mut self, rule: &NewRule) -> bool {
        let cut_off = cut_off_ms(rule);
        let slot = self
            .cut_offs
            .entry((rule.selector, rule.value.clone()))
            .or_insert(i64::MIN);
        let widens = cut_off > *slot;
        *slot = (*slot).max(cut_off);
        widens
    }

    /// Returns true when a rule covers `record`.
    pub(super) fn covers(&self, record: &CredentialRecord) -> bool {
        let issued = issued_ms(record);
        Selector::ALL.iter().any(|selector| {
            self.cut_offs
                .get(&(*selector, selector.value_of(record).to_owned()))
                .is_some_and(|cut_off| issued <= *cut_off)
        })
    }

    /// Drops rules whose cut-off is before `before_ms`: every credential they cover has
    /// expired.
    pub(super) fn prune(&mut self, before_ms: i64) {
        self.cut_offs.retain(|_, cut_off| *cut_off >= before_ms);
    }

    /// Returns how many (selector, value) rules are held.
    pub(super) fn len(&self) -> usize {
        self.cut_offs.len()
    }
}
