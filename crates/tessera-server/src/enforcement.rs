//! Evidence that a revocation is enforced (DESIGN.md "Evidence that access is gone"): which
//! relying parties acknowledged each rule and how long after its cut-off, how often the CRL and
//! the status lists were fetched after it, how many introspections it refused, and any
//! introspection answered active for a credential it covers after its cut-off (a replica that
//! had not applied it yet) — which must be none, and is shown when it is not.
//!
//! Acknowledgements are kept in the ledger (every replica shows them; this store only tells
//! which are a relying party's first and observes the delay). The counts are what this replica
//! saw since it started, held in memory with bounded size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use prometheus_client::metrics::histogram::Histogram;
use tessera_core::domain::{CredentialKind, CredentialRecord, RevocationRule, Selector};
use tessera_core::revocation::IssueSubject;
use tessera_ledger::Acknowledgement;

/// Fetch times (CRL, status lists) remembered, at most, per kind.
const FETCHES_KEPT: usize = 65_536;
/// Introspections answered active that are remembered, at most, to check later rules against.
const ACCEPTED_KEPT: usize = 65_536;
/// How long an active answer is remembered: longer than any replica takes to apply a rule.
const ACCEPTED_FOR_MS: i64 = 10 * 60 * 1000;
/// Relying parties remembered per rule, at most.
const ACKS_PER_RULE: usize = 10_000;
/// Ids of wrongly accepted credentials listed per rule, at most.
const ACCEPTED_IDS_LISTED: usize = 20;

/// A fetched resource that tells relying parties about revocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Crl,
    StatusList,
}

/// What one replica counted of how a rule is enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnforcementReport {
    pub crl_fetches_after: u64,
    pub status_list_fetches_after: u64,
    pub introspections_refused: u64,
    pub introspections_accepted: u64,
    pub accepted_credential_ids: Vec<String>,
}

/// A rule as this replica enforces it.
#[derive(Debug)]
struct Seen {
    selector: Selector,
    value: String,
    cutoff_ms: i64,
    report: EnforcementReport,
    /// Relying parties whose acknowledgement this replica already took.
    acked: HashSet<String>,
}

/// An introspection answered active: when, and what a rule compares (not the whole record).
#[derive(Debug)]
struct Accepted {
    at_ms: i64,
    issued_ms: i64,
    credential_id: Box<str>,
    workload: Box<str>,
    owner: Box<str>,
    destination: Box<str>,
    purpose: Box<str>,
    grant: Box<str>,
    kind: CredentialKind,
}

impl Accepted {
    /// Returns true when a rule on `selector` = `value` selects this credential.
    fn selected_by(&self, selector: Selector, value: &str) -> bool {
        let subject = IssueSubject {
            workload: &self.workload,
            owner: &self.owner,
            destination: &self.destination,
            purpose: &self.purpose,
            grant: &self.grant,
            kind: self.kind,
        };
        tessera_core::revocation::selects(selector, value, Some(&self.credential_id), &subject)
    }
}

#[derive(Debug, Default)]
struct State {
    rules: HashMap<String, Seen>,
    crl: VecDeque<i64>,
    status_lists: VecDeque<i64>,
}

/// The evidence store of one replica.
#[derive(Debug)]
pub struct Enforcement {
    state: Mutex<State>,
    /// Recent active answers, under a lock of their own: introspection never waits for a rule
    /// being checked against them, beyond the push of one entry.
    accepted: Mutex<VecDeque<Accepted>>,
    /// `tessera_revocation_enforced_seconds`: cut-off → a relying party's acknowledgement.
    enforced_seconds: Histogram,
}

impl Enforcement {
    /// An empty store observing acknowledgement delays into `enforced_seconds`.
    pub fn new(enforced_seconds: Histogram) -> Self {
        Enforcement {
            state: Mutex::new(State::default()),
            accepted: Mutex::new(VecDeque::new()),
            enforced_seconds,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts keeping evidence for `rule`, now enforced here, and counts the introspections
    /// this replica answered active after its cut-off for credentials it covers.
    pub fn rule_in_force(&self, rule: &RevocationRule) {
        let id = rule.rule.revocation_id.clone();
        if self.state().rules.contains_key(&id) {
            return;
        }
        let mut seen = Seen {
            selector: rule.rule.selector,
            value: rule.rule.value.clone(),
            cutoff_ms: rule.rule.cutoff_ms(),
            report: EnforcementReport::default(),
            acked: HashSet::new(),
        };
        {
            let accepted = self
                .accepted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for a in accepted.iter() {
                let covered =
                    a.issued_ms <= seen.cutoff_ms && a.selected_by(seen.selector, &seen.value);
                if a.at_ms > seen.cutoff_ms && covered {
                    note_accepted(&mut seen.report, &a.credential_id);
                }
            }
        }
        self.state().rules.entry(id).or_insert(seen);
    }

    /// Takes `relying_party`'s acknowledgement at `now_ms` of the rules `ids`; returns how many
    /// name a rule enforced here, and the acknowledgements to store: the first this replica saw
    /// of each (relying party, rule), whose delay from the cut-off is observed. Ids of unknown
    /// rules are ignored.
    pub fn acknowledged(
        &self,
        relying_party: &str,
        ids: &[String],
        now_ms: i64,
    ) -> (u32, Vec<Acknowledgement>) {
        let mut state = self.state();
        let (mut known, mut first) = (0, Vec::new());
        for id in ids {
            let Some(seen) = state.rules.get_mut(id) else {
                continue;
            };
            known += 1;
            if seen.acked.len() < ACKS_PER_RULE && seen.acked.insert(relying_party.to_owned()) {
                let after = now_ms.saturating_sub(seen.cutoff_ms).max(0);
                self.enforced_seconds.observe(after as f64 / 1000.0);
                first.push(Acknowledgement {
                    revocation_id: id.clone(),
                    relying_party: relying_party.to_owned(),
                    at_ms: now_ms,
                });
            }
        }
        (known, first)
    }

    /// Notes a fetch of the CRL or of a status list at `now_ms`.
    pub fn fetched(&self, what: Fetched, now_ms: i64) {
        let mut state = self.state();
        let log = match what {
            Fetched::Crl => &mut state.crl,
            Fetched::StatusList => &mut state.status_lists,
        };
        if log.len() == FETCHES_KEPT {
            log.pop_front();
        }
        log.push_back(now_ms);
    }

    /// Notes an introspection refused because rule `revocation_id` covers the token.
    pub fn refused(&self, revocation_id: &str) {
        if let Some(seen) = self.state().rules.get_mut(revocation_id) {
            seen.report.introspections_refused += 1;
        }
    }

    /// Notes an introspection answered active at `now_ms` for `record`: a rule applied later
    /// with an earlier cut-off that covers it counts it as accepted after the revoke.
    pub fn accepted(&self, record: &CredentialRecord, now_ms: i64) {
        let entry = Accepted {
            at_ms: now_ms,
            issued_ms: record.issued_at_ms(),
            credential_id: record.credential_id.as_str().into(),
            workload: record.workload.as_str().into(),
            owner: record.owner.as_str().into(),
            destination: record.destination.as_str().into(),
            purpose: record.purpose.as_str().into(),
            grant: record.grant.as_str().into(),
            kind: record.kind,
        };
        let mut accepted = self
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while accepted.front().is_some_and(|a| {
            a.at_ms < now_ms.saturating_sub(ACCEPTED_FOR_MS) || accepted.len() >= ACCEPTED_KEPT
        }) {
            accepted.pop_front();
        }
        accepted.push_back(entry);
    }

    /// Returns what this replica knows of the enforcement of rule `revocation_id`, or `None`
    /// when it does not enforce it (unknown, or forgotten once everything it covered expired).
    pub fn report(&self, revocation_id: &str) -> Option<EnforcementReport> {
        let state = self.state();
        let seen = state.rules.get(revocation_id)?;
        let after = |log: &VecDeque<i64>| log.iter().filter(|at| **at > seen.cutoff_ms).count();
        let mut report = seen.report.clone();
        report.crl_fetches_after = after(&state.crl) as u64;
        report.status_list_fetches_after = after(&state.status_lists) as u64;
        Some(report)
    }

    /// Forgets the evidence of rules whose cut-off is before `before_ms` (the ledger drops
    /// them too: everything they covered has expired).
    pub fn forget_before(&self, before_ms: i64) {
        self.state()
            .rules
            .retain(|_, seen| seen.cutoff_ms >= before_ms);
    }
}

/// Counts one covered credential answered active after the cut-off.
fn note_accepted(report: &mut EnforcementReport, credential_id: &str) {
    report.introspections_accepted += 1;
    if report.accepted_credential_ids.len() < ACCEPTED_IDS_LISTED {
        report
            .accepted_credential_ids
            .push(credential_id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use tessera_core::domain::{CredentialKind, EvidenceKind, NewRule, Status};

    use super::*;

    fn record(id: &str, issued_at: i64) -> CredentialRecord {
        CredentialRecord {
            credential_id: id.into(),
            kind: CredentialKind::Jwt,
            workload: "spiffe://example.org/w".into(),
            owner: "team".into(),
            destination: "https://d".into(),
            purpose: "p".into(),
            grant: "g".into(),
            evidence_kind: EvidenceKind::JwtSvid,
            evidence_hash: String::new(),
            issued_at,
            expires_at: issued_at + 300,
            status: Status::Live,
            ci: None,
            status_list: None,
        }
    }

    fn rule(id: &str, cutoff_ms: i64) -> RevocationRule {
        RevocationRule {
            rule: NewRule {
                revocation_id: id.into(),
                selector: Selector::Workload,
                value: "spiffe://example.org/w".into(),
                effective_at: cutoff_ms / 1000,
                effective_at_ms: Some(cutoff_ms),
                reason: "test".into(),
                revoked_by: "admin".into(),
                scope: None,
            },
            sequence: 1,
        }
    }

    fn store() -> Enforcement {
        Enforcement::new(Histogram::new([0.1, 1.0]))
    }

    #[test]
    fn acknowledgements_count_once_per_relying_party_and_only_for_known_rules() {
        let e = store();
        e.rule_in_force(&rule("r1", 10_000));
        let ids = ["r1".to_owned(), "unknown".to_owned()];
        let (known, first) = e.acknowledged("spiffe://example.org/rp", &ids, 10_040);
        assert_eq!(known, 1);
        assert_eq!(
            first,
            vec![Acknowledgement {
                revocation_id: "r1".into(),
                relying_party: "spiffe://example.org/rp".into(),
                at_ms: 10_040,
            }]
        );
        let (known, again) = e.acknowledged("spiffe://example.org/rp", &ids, 99_000);
        assert_eq!((known, again.len()), (1, 0), "only the first is stored");
        assert!(e.report("unknown").is_none());
    }

    #[test]
    fn fetches_count_only_after_the_cut_off() {
        let e = store();
        e.rule_in_force(&rule("r1", 10_000));
        e.fetched(Fetched::Crl, 9_999);
        e.fetched(Fetched::Crl, 10_001);
        e.fetched(Fetched::StatusList, 10_002);
        e.fetched(Fetched::StatusList, 10_003);
        let report = e.report("r1").unwrap();
        assert_eq!(
            (report.crl_fetches_after, report.status_list_fetches_after),
            (1, 2)
        );
    }

    #[test]
    fn an_active_answer_after_the_cut_off_for_a_covered_token_is_shown() {
        let e = store();
        let covered = record("c1", 9);
        let later = record("c2", 11);
        e.accepted(&covered, 9_500);
        e.accepted(&covered, 10_200);
        e.accepted(&later, 11_500);
        e.rule_in_force(&rule("r1", 10_000));
        e.refused("r1");
        let report = e.report("r1").unwrap();
        assert_eq!(
            report.introspections_accepted, 1,
            "only the one after the cut-off"
        );
        assert_eq!(report.accepted_credential_ids, vec!["c1".to_owned()]);
        assert_eq!(report.introspections_refused, 1);
    }

    #[test]
    fn evidence_is_forgotten_with_its_rule() {
        let e = store();
        e.rule_in_force(&rule("r1", 10_000));
        e.forget_before(10_001);
        assert!(e.report("r1").is_none());
    }
}
