//! The rules in force, by selector value: one map per selector, and beside them the parts of
//! grants that were taken away (`grant` rules scoped to a destination, purpose or kind). A
//! credential is checked with one borrowed hash lookup per selector plus the scoped rules of
//! its own grant; nothing is allocated.

use std::collections::HashMap;

use crate::domain::{CredentialKind, GrantPart, GrantSelection, Selector};

/// The strongest rule for one `(selector, value)`.
#[derive(Debug, Clone)]
pub(super) struct RuleEntry {
    /// Unix milliseconds.
    pub cutoff_ms: i64,
    pub revocation_id: String,
}

/// The selector values of a credential, borrowed (its id is absent before it is signed).
#[derive(Debug, Clone, Copy)]
pub struct IssueSubject<'a> {
    pub workload: &'a str,
    pub owner: &'a str,
    pub destination: &'a str,
    pub purpose: &'a str,
    /// The name of the grant it is minted under.
    pub grant: &'a str,
    pub kind: CredentialKind,
}

impl<'a> IssueSubject<'a> {
    /// Returns this subject's value for `selector` (`None` for `credential_id`).
    fn get(&self, selector: Selector) -> Option<&'a str> {
        match selector {
            Selector::CredentialId => None,
            Selector::Workload => Some(self.workload),
            Selector::Destination => Some(self.destination),
            Selector::Purpose => Some(self.purpose),
            Selector::Owner => Some(self.owner),
            Selector::Grant => Some(self.grant),
        }
    }
}

/// Returns true when a rule on `selector` = `value` selects the credential `id` (when known)
/// of `subject`, whatever its cut-off. A `grant` value that does not parse selects nothing.
pub fn selects(
    selector: Selector,
    value: &str,
    id: Option<&str>,
    subject: &IssueSubject<'_>,
) -> bool {
    match selector {
        Selector::CredentialId => id == Some(value),
        Selector::Grant if value.contains('/') => value.parse::<GrantSelection>().is_ok_and(|s| {
            s.covers(
                subject.grant,
                subject.destination,
                subject.purpose,
                subject.kind,
            )
        }),
        other => subject.get(other) == Some(value),
    }
}

/// Rules by selector value.
#[derive(Debug, Default)]
pub(super) struct RuleTable {
    /// One map per selector, indexed by [`Selector::code`].
    exact: [HashMap<Box<str>, RuleEntry>; Selector::ALL.len()],
    /// Scoped `grant` rules by grant name.
    grant_parts: HashMap<Box<str>, Vec<(GrantPart, RuleEntry)>>,
}

impl RuleTable {
    /// Enforces `entry` for `selector` = `value`; an existing rule with a later cut-off stays.
    /// A `grant` value naming a part of a grant goes to the scoped rules.
    pub fn insert(&mut self, selector: Selector, value: &str, entry: RuleEntry) {
        if selector == Selector::Grant
            && let Ok(GrantSelection {
                grant,
                part: Some(part),
            }) = value.parse::<GrantSelection>()
        {
            let parts = self.grant_parts.entry(grant.into()).or_default();
            match parts.iter_mut().find(|(p, _)| *p == part) {
                Some((_, existing)) if existing.cutoff_ms >= entry.cutoff_ms => {}
                Some((_, existing)) => *existing = entry,
                None => parts.push((part, entry)),
            }
            return;
        }
        let map = &mut self.exact[usize::from(selector.code())];
        match map.get(value) {
            Some(existing) if existing.cutoff_ms >= entry.cutoff_ms => {}
            _ => {
                map.insert(value.into(), entry);
            }
        }
    }

    /// Returns every rule whose selector value matches the credential `id` (if any) of
    /// `subject`, whatever its cut-off.
    pub fn matching<'t>(
        &'t self,
        id: Option<&'t str>,
        subject: &IssueSubject<'t>,
    ) -> impl Iterator<Item = &'t RuleEntry> + 't {
        let subject = *subject;
        let exact = Selector::ALL.into_iter().filter_map(move |selector| {
            let value = match selector {
                Selector::CredentialId => id?,
                other => subject.get(other)?,
            };
            self.exact[usize::from(selector.code())].get(value)
        });
        let parts = self
            .grant_parts
            .get(subject.grant)
            .into_iter()
            .flatten()
            .filter(move |(part, _)| {
                part.covers(subject.destination, subject.purpose, subject.kind)
            })
            .map(|(_, entry)| entry);
        exact.chain(parts)
    }

    /// Returns the cut-off (unix milliseconds) of the rule on exactly `selector` = `value`, if
    /// one is held.
    pub fn cutoff_of(&self, selector: Selector, value: &str) -> Option<i64> {
        self.exact[usize::from(selector.code())]
            .get(value)
            .map(|r| r.cutoff_ms)
    }

    /// Returns how many rules are held.
    pub fn len(&self) -> usize {
        self.exact.iter().map(HashMap::len).sum::<usize>()
            + self.grant_parts.values().map(Vec::len).sum::<usize>()
    }

    /// Drops rules whose cut-off is before `before_ms`.
    pub fn retain_from(&mut self, before_ms: i64) {
        for map in &mut self.exact {
            map.retain(|_, r| r.cutoff_ms >= before_ms);
        }
        self.grant_parts.retain(|_, parts| {
            parts.retain(|(_, r)| r.cutoff_ms >= before_ms);
            !parts.is_empty()
        });
    }
}
