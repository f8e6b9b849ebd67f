//! The revocation rules a relying party holds: looked up by a token's claims without a scan,
//! and dropped once nothing they cover can still be valid.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// A selector that names a claim of the token, so its rules can be matched from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Selector {
    CredentialId,
    Workload,
    Destination,
    Purpose,
}

impl Selector {
    const ALL: [Selector; 4] = [
        Selector::CredentialId,
        Selector::Workload,
        Selector::Destination,
        Selector::Purpose,
    ];

    /// Returns the selector named `name` on the wire, or `None` for one that cannot be matched
    /// from a token (`owner`, or one this SDK does not know).
    fn parse(name: &str) -> Option<Selector> {
        match name {
            "credential_id" => Some(Selector::CredentialId),
            "workload" => Some(Selector::Workload),
            "destination" => Some(Selector::Destination),
            "purpose" => Some(Selector::Purpose),
            _ => None,
        }
    }

    /// Returns the selector's wire name.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Selector::CredentialId => "credential_id",
            Selector::Workload => "workload",
            Selector::Destination => "destination",
            Selector::Purpose => "purpose",
        }
    }

    /// Returns the selector's slot in [`Rules`].
    fn index(self) -> usize {
        self as usize
    }

    /// Returns the token claim the selector's value is compared with.
    fn claim(self) -> &'static str {
        match self {
            Selector::CredentialId => "jti",
            Selector::Workload => "sub",
            Selector::Destination => "aud",
            Selector::Purpose => "scope",
        }
    }
}

/// What the rules say about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coverage {
    /// No rule covers it.
    None,
    /// A rule of this selector covers it.
    Revoked(Selector),
    /// A rule that cannot be matched from the token (owner) may cover it.
    Unknown,
}

/// Rules by selector and value, each with its cut-off in unix milliseconds (the newest
/// `effective_at_ms`: tokens issued at or before it are revoked), plus a queue to drop them by cut-off. `Debug` shows
/// counts, not the (possibly millions of) rules.
#[derive(Default)]
pub(super) struct Rules {
    /// Per selector (by [`Selector::index`]): cut-off by value.
    cuts: [HashMap<String, i64>; 4],
    /// Keys by a cut-off they had, oldest first; a key may sit under older cut-offs too.
    by_cut: BTreeMap<i64, Vec<(Selector, String)>>,
    /// The newest cut-off of the retained rules that cannot be matched from a token.
    unmatchable_cut: Option<i64>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("len", &self.len())
            .field("unmatchable_cut", &self.unmatchable_cut)
            .finish_non_exhaustive()
    }
}

impl Rules {
    /// Adds a rule: tokens with `selector` = `value` issued at or before `cutoff_ms`.
    pub(super) fn insert(&mut self, selector: &str, value: &str, cutoff_ms: i64) {
        let Some(selector) = Selector::parse(selector) else {
            // Owner (or unknown) rules: only the newest cut-off matters, every token issued at
            // or before it goes to introspection.
            self.unmatchable_cut = Some(
                self.unmatchable_cut
                    .map_or(cutoff_ms, |cut| cut.max(cutoff_ms)),
            );
            return;
        };
        match self.cuts[selector.index()].entry(value.to_owned()) {
            // Replayed again, or older than the cut-off held: nothing to do.
            Entry::Occupied(held) if *held.get() >= cutoff_ms => return,
            Entry::Occupied(mut held) => {
                held.insert(cutoff_ms);
            }
            Entry::Vacant(slot) => {
                slot.insert(cutoff_ms);
            }
        }
        self.by_cut
            .entry(cutoff_ms)
            .or_default()
            .push((selector, value.to_owned()));
    }

    /// Drops every rule whose cut-off is before `before` (unix milliseconds); returns how many were dropped. Costs
    /// one step per dropped queue entry.
    pub(super) fn prune(&mut self, before: i64) -> usize {
        let mut dropped = 0;
        while let Some(entry) = self.by_cut.first_entry() {
            if *entry.key() >= before {
                break;
            }
            for (selector, value) in entry.remove() {
                let cuts = &mut self.cuts[selector.index()];
                // Still under this (old) cut-off? A newer one keeps it.
                if cuts.get(&value).is_some_and(|cut| *cut < before) {
                    cuts.remove(&value);
                    dropped += 1;
                }
            }
        }
        if self.unmatchable_cut.is_some_and(|cut| cut < before) {
            self.unmatchable_cut = None;
            dropped += 1;
        }
        dropped
    }

    /// Returns what the rules say about a token issued at `issued_ms` (unix milliseconds) with
    /// these claims.
    pub(super) fn coverage(&self, claims: &Value, issued_ms: i64) -> Coverage {
        for selector in Selector::ALL {
            let value = claims[selector.claim()].as_str().unwrap_or_default();
            if self.cuts[selector.index()]
                .get(value)
                .is_some_and(|cut| issued_ms <= *cut)
            {
                return Coverage::Revoked(selector);
            }
        }
        if self.unmatchable_cut.is_some_and(|cut| issued_ms <= cut) {
            return Coverage::Unknown;
        }
        Coverage::None
    }

    /// Returns how many rules are held (those that cannot be matched count as one).
    pub(super) fn len(&self) -> usize {
        self.cuts.iter().map(HashMap::len).sum::<usize>()
            + usize::from(self.unmatchable_cut.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Value {
        json!({"jti": "c1", "sub": "spiffe://td/w", "aud": "https://d", "scope": "p"})
    }

    #[test]
    fn a_rule_covers_tokens_issued_at_or_before_its_cut_off() {
        let mut rules = Rules::default();
        rules.insert("workload", "spiffe://td/w", 100);
        assert_eq!(
            rules.coverage(&claims(), 100),
            Coverage::Revoked(Selector::Workload)
        );
        assert_eq!(rules.coverage(&claims(), 101), Coverage::None);
    }

    #[test]
    fn owner_and_unknown_rules_send_older_tokens_to_introspection() {
        let mut rules = Rules::default();
        rules.insert("owner", "team", 100);
        rules.insert("grant", "g", 50);
        assert_eq!(rules.coverage(&claims(), 100), Coverage::Unknown);
        assert_eq!(rules.coverage(&claims(), 101), Coverage::None);
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn pruning_drops_rules_cut_off_before_the_limit_and_keeps_the_rest() {
        let mut rules = Rules::default();
        rules.insert("credential_id", "old", 10);
        rules.insert("credential_id", "new", 30);
        rules.insert("owner", "team", 10);
        assert_eq!(rules.prune(20), 2);
        assert_eq!(rules.len(), 1);
        let old = json!({"jti": "old"});
        assert_eq!(rules.coverage(&old, 5), Coverage::None);
        let new = json!({"jti": "new"});
        assert_eq!(
            rules.coverage(&new, 5),
            Coverage::Revoked(Selector::CredentialId)
        );
    }

    #[test]
    fn a_rule_raised_to_a_later_cut_off_survives_the_pruning_of_its_old_one() {
        let mut rules = Rules::default();
        rules.insert("purpose", "p", 10);
        rules.insert("purpose", "p", 30);
        rules.insert("purpose", "p", 20); // older: changes nothing
        assert_eq!(rules.prune(25), 0);
        assert_eq!(
            rules.coverage(&claims(), 30),
            Coverage::Revoked(Selector::Purpose)
        );
        assert_eq!(rules.prune(31), 1);
        assert_eq!(rules.len(), 0);
    }
}
