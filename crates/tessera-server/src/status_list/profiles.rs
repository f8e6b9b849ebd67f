//! What a rule can select a listed credential by, interned: each distinct (workload, owner,
//! destination, purpose, grant) is stored once and entries refer to it by a 32-bit id. The
//! number of profiles is bounded by the configured grants times their destinations and
//! purposes, not by the number of credentials, so profiles are never dropped.

use std::collections::HashMap;
use std::sync::RwLock;

use tessera_core::domain::{CredentialKind, CredentialRecord, Selector};
use tessera_core::revocation::IssueSubject;

/// The selector values a listed credential shares with every other one of its profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Profile {
    workload: Box<str>,
    owner: Box<str>,
    destination: Box<str>,
    purpose: Box<str>,
    grant: Box<str>,
}

impl Profile {
    fn of(record: &CredentialRecord) -> Self {
        Profile {
            workload: record.workload.as_str().into(),
            owner: record.owner.as_str().into(),
            destination: record.destination.as_str().into(),
            purpose: record.purpose.as_str().into(),
            grant: record.grant.as_str().into(),
        }
    }

    /// Returns true when a rule on `selector` = `value` selects the credentials of this
    /// profile (never for `credential_id`: one credential is matched by id, not by profile).
    pub(super) fn selected_by(&self, selector: Selector, value: &str) -> bool {
        let subject = IssueSubject {
            workload: &self.workload,
            owner: &self.owner,
            destination: &self.destination,
            purpose: &self.purpose,
            grant: &self.grant,
            // Only JWTs are listed.
            kind: CredentialKind::Jwt,
        };
        tessera_core::revocation::selects(selector, value, None, &subject)
    }
}

/// Profiles by id.
#[derive(Debug, Default)]
pub(super) struct Profiles {
    inner: RwLock<Interned>,
}

#[derive(Debug, Default)]
struct Interned {
    ids: HashMap<String, u32>,
    all: Vec<Profile>,
}

/// The key of `record`'s profile: its values, each prefixed with its length, so that two
/// profiles share a key only when every value is the same.
fn key(record: &CredentialRecord) -> String {
    let values = [
        record.workload.as_str(),
        &record.owner,
        &record.destination,
        &record.purpose,
        &record.grant,
    ];
    let mut key = String::with_capacity(values.iter().map(|v| v.len() + 4).sum());
    for value in values {
        key.push_str(&value.len().to_string());
        key.push(':');
        key.push_str(value);
    }
    key
}

impl Profiles {
    /// Returns the id of `record`'s profile, adding it if new.
    pub(super) fn intern(&self, record: &CredentialRecord) -> u32 {
        let key = key(record);
        let read = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = read.ids.get(&key) {
            return *id;
        }
        drop(read);
        let mut write = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let next = u32::try_from(write.all.len()).unwrap_or(u32::MAX);
        let id = *write.ids.entry(key).or_insert(next);
        if id == next {
            write.all.push(Profile::of(record));
        }
        id
    }

    /// Returns, per profile id, the latest cut-off (unix ms) among `rules` (selector, value,
    /// cut-off) that select it, or `i64::MIN` when none does. Cost: profiles × rules.
    pub(super) fn cut_offs(&self, rules: &[(Selector, &str, i64)]) -> Vec<i64> {
        let read = self.inner.read().unwrap_or_else(|e| e.into_inner());
        read.all
            .iter()
            .map(|profile| {
                rules
                    .iter()
                    .filter(|(selector, value, _)| profile.selected_by(*selector, value))
                    .map(|(_, _, cut_off)| *cut_off)
                    .max()
                    .unwrap_or(i64::MIN)
            })
            .collect()
    }

    /// Returns how many profiles are interned.
    pub(super) fn len(&self) -> usize {
        self.inner.read().map_or(0, |p| p.all.len())
    }
}
