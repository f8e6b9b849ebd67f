//! The in-memory revocation index (DESIGN.md invariant 2): rules by `(selector, value)`, so
//! "is this credential revoked?" is at most five hash lookups however many credentials a rule
//! covers. Also counts live credentials per selector value (for the Revoke reply) and keeps the
//! live X.509 credentials the CRL may have to list, and the order of issue times and cut-offs
//! ([`CutOffs`]). Cut-offs and issue times are compared in milliseconds. Rebuilt from the
//! ledger at start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

mod counts;
mod cutoff;
mod log;
mod rules;

pub use self::counts::{BUCKET_SECS, COUNTED, LiveCounts, bucket as count_bucket};
pub use self::cutoff::CutOffs;
pub use self::log::{RuleLog, RuleSnapshot};
pub use self::rules::{IssueSubject, selects};
use self::rules::{RuleEntry, RuleTable};
use crate::domain::{CredentialKind, CredentialRecord, RevocationRule, Selector};
use crate::mint::RevokedSerial;
use crate::mint::crl::CRL_VALIDITY_SECS;

/// What the CRL needs of one X.509 credential; selector values are shared between entries.
#[derive(Debug, Clone)]
struct X509Entry {
    workload: Arc<str>,
    owner: Arc<str>,
    destination: Arc<str>,
    purpose: Arc<str>,
    grant: Arc<str>,
    issued_ms: i64,
    expires_at: i64,
}

/// X.509 credentials by serial (hex), with one copy of each distinct selector value.
///
/// Ordered maps, not hash maps: this holds every X.509 credential the CRL may list (hundreds of
/// thousands under load), behind the lock each X.509 mint takes, and a hash map that doubles
/// rehashes all of them at once (tens of ms under the lock: the `mint-x509` tail stalls of
/// issue 16). A B-tree grows a node at a time, and time-ordered serials land at its end.
/// Pruning takes the expired from the front of `by_expiry` instead of scanning everything.
#[derive(Debug, Default)]
struct X509Live {
    by_serial: BTreeMap<Box<str>, X509Entry>,
    /// Serials by `expires_at`; may name serials already removed (taken back, not recorded).
    by_expiry: BTreeMap<i64, Vec<Box<str>>>,
    names: HashSet<Arc<str>>,
}

impl X509Live {
    /// Returns the shared copy of `value`, adding it if new.
    fn intern(&mut self, value: &str) -> Arc<str> {
        if let Some(name) = self.names.get(value) {
            return Arc::clone(name);
        }
        let name: Arc<str> = value.into();
        self.names.insert(Arc::clone(&name));
        name
    }

    fn insert(&mut self, record: &CredentialRecord) {
        let entry = X509Entry {
            workload: self.intern(&record.workload),
            owner: self.intern(&record.owner),
            destination: self.intern(&record.destination),
            purpose: self.intern(&record.purpose),
            grant: self.intern(&record.grant),
            issued_ms: record.issued_at_ms(),
            expires_at: record.expires_at,
        };
        let serial: Box<str> = record.credential_id.as_str().into();
        self.by_expiry
            .entry(record.expires_at)
            .or_default()
            .push(serial.clone());
        self.by_serial.insert(serial, entry);
    }

    /// Forgets entries the CRL no longer lists at `now` (taken from the front of `by_expiry`,
    /// so the cost is what is forgotten, not what is kept), and names no entry uses.
    fn prune(&mut self, now: i64) {
        // Kept: expires_at + CRL_VALIDITY_SECS > now.
        let kept = self
            .by_expiry
            .split_off(&now.saturating_sub(CRL_VALIDITY_SECS).saturating_add(1));
        let forgotten = std::mem::replace(&mut self.by_expiry, kept);
        if forgotten.is_empty() {
            return;
        }
        for serial in forgotten.into_values().flatten() {
            self.by_serial.remove(&serial);
        }
        self.names.retain(|name| Arc::strong_count(name) > 1);
    }
}

/// The selector values of one credential, borrowed.
#[derive(Debug, Clone, Copy)]
struct Values<'a> {
    credential_id: &'a str,
    subject: IssueSubject<'a>,
    /// Unix milliseconds.
    issued_ms: i64,
}

impl<'a> Values<'a> {
    fn of(record: &'a CredentialRecord) -> Self {
        Values {
            credential_id: &record.credential_id,
            subject: IssueSubject {
                workload: &record.workload,
                owner: &record.owner,
                destination: &record.destination,
                purpose: &record.purpose,
                grant: &record.grant,
                kind: record.kind,
            },
            issued_ms: record.issued_at_ms(),
        }
    }

    fn of_x509(serial: &'a str, e: &'a X509Entry) -> Self {
        Values {
            credential_id: serial,
            subject: IssueSubject {
                workload: &e.workload,
                owner: &e.owner,
                destination: &e.destination,
                purpose: &e.purpose,
                grant: &e.grant,
                kind: CredentialKind::X509,
            },
            issued_ms: e.issued_ms,
        }
    }
}

/// Rules, live counts and live X.509 credentials.
#[derive(Debug, Default)]
pub struct RevocationIndex {
    rules: RwLock<RuleTable>,
    revision: AtomicU64,
    live: Mutex<LiveCounts>,
    x509: Mutex<X509Live>,
    /// Credentials this replica noted at issue whose committed event has not come back through
    /// the ledger subscription yet (id → expires_at): the echo is not counted twice.
    echoes: Mutex<HashMap<Box<str>, i64>>,
    cutoffs: CutOffs,
}

impl RevocationIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a number that changes whenever the rules change (the CRL cache keys on it).
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Returns the cut-off (unix milliseconds) of the rule in force on exactly `selector` =
    /// `value` (not on part of a grant), if any.
    pub fn cutoff_of(&self, selector: Selector, value: &str) -> Option<i64> {
        self.rules.read().ok()?.cutoff_of(selector, value)
    }

    /// Returns how many `(selector, value)` rules are in force.
    pub fn rule_count(&self) -> usize {
        self.rules.read().map(|r| r.len()).unwrap_or_default()
    }

    /// Returns the newest issue time known, that a rule's cut-off may not be earlier than.
    pub fn cutoffs(&self) -> &CutOffs {
        &self.cutoffs
    }

    /// Returns the issue time (unix milliseconds) of a credential for `subject` signed at
    /// `now_ms`: now, or just after the cut-off of a rule covering one of its selector values
    /// when the clock is behind it (stepped back, or the rule came from a replica whose clock
    /// is ahead) — so a credential minted after a Revoke reply is never covered by that rule.
    /// Notes the time as the newest issue.
    pub fn issue_ms(&self, now_ms: i64, subject: &IssueSubject<'_>) -> i64 {
        let after_rules = {
            let rules = self
                .rules
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            rules
                .matching(None, subject)
                .map(|entry| entry.cutoff_ms.saturating_add(1))
                .max()
        };
        let issued = after_rules.map_or(now_ms, |after| after.max(now_ms));
        self.cutoffs.note_issue(issued);
        issued
    }

    /// Enforces `rule` from now on. A later rule for the same value widens the cut-off.
    pub fn apply(&self, rule: &RevocationRule) {
        self.rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                rule.rule.selector,
                &rule.rule.value,
                RuleEntry {
                    cutoff_ms: rule.rule.cutoff_ms(),
                    revocation_id: rule.rule.revocation_id.clone(),
                },
            );
        self.revision.fetch_add(1, Ordering::AcqRel);
    }

    /// Returns the revocation id of the rule that revokes `record`, if any.
    pub fn revoked_by(&self, record: &CredentialRecord) -> Option<String> {
        self.revoked_by_values(&Values::of(record))
    }

    fn revoked_by_values(&self, values: &Values<'_>) -> Option<String> {
        let rules = self
            .rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rules
            .matching(Some(values.credential_id), &values.subject)
            .find(|entry| values.issued_ms <= entry.cutoff_ms)
            .map(|entry| entry.revocation_id.clone())
    }

    /// Drops rules whose cut-off is before `rules_before` (unix seconds): everything they could
    /// cover has expired.
    pub fn prune(&self, rules_before: i64, now: i64) {
        let before_ms = rules_before.saturating_mul(1000);
        if let Ok(mut rules) = self.rules.write() {
            rules.retain_from(before_ms);
        }
        if let Ok(mut live) = self.live.lock() {
            live.prune(now);
        }
        if let Ok(mut x509) = self.x509.lock() {
            x509.prune(now);
        }
        // An echo that never came (a lagging subscription) is forgotten once it expired.
        if let Ok(mut echoes) = self.echoes.lock() {
            echoes.retain(|_, expires_at| *expires_at >= now);
        }
    }

    /// Replaces the live counts with `counts` (loaded from the ledger at start) and tracks
    /// `x509` (the X.509 credentials the CRL may have to list) without counting them again.
    pub fn restore(&self, counts: LiveCounts, x509: &[CredentialRecord]) {
        if let Ok(mut live) = self.live.lock() {
            *live = counts;
        }
        if let Ok(mut tracked) = self.x509.lock() {
            for record in x509 {
                tracked.insert(record);
            }
        }
        self.revision.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a credential this replica is about to record, before the ledger is asked (so a
    /// revoke and the CRL right after its reply see it, and its committed event, which may come
    /// back through the ledger's subscription before the ledger's answer does, is known as an
    /// echo: see [`RevocationIndex::note_committed`]). Take it back with
    /// [`RevocationIndex::note_not_recorded`] if the ledger refuses it.
    pub fn note_issuing(&self, record: &CredentialRecord) {
        if let Ok(mut echoes) = self.echoes.lock() {
            echoes.insert(record.credential_id.as_str().into(), record.expires_at);
        }
        self.note_issued(record);
    }

    /// Takes back a credential noted by [`RevocationIndex::note_issuing`] that the ledger did
    /// not record.
    pub fn note_not_recorded(&self, record: &CredentialRecord) {
        if let Ok(mut echoes) = self.echoes.lock() {
            echoes.remove(record.credential_id.as_str());
        }
        if let Ok(mut live) = self.live.lock() {
            live.remove_record(record);
        }
        if record.kind == CredentialKind::X509
            && let Ok(mut x509) = self.x509.lock()
        {
            x509.by_serial.remove(record.credential_id.as_str());
        }
    }

    /// Counts a credential whose `issued` event the ledger committed, unless this replica
    /// already counted it at issue ([`RevocationIndex::note_issuing`]). Returns true when
    /// it was counted now: another replica issued it.
    pub fn note_committed(&self, record: &CredentialRecord) -> bool {
        let echo = self
            .echoes
            .lock()
            .map(|mut echoes| echoes.remove(record.credential_id.as_str()).is_some())
            .unwrap_or(false);
        if !echo {
            self.note_issued(record);
        }
        !echo
    }

    /// Counts a newly issued credential and notes its issue time. One issued at or before the
    /// cut-off of a rule that covers it (another replica's, arriving late) changes the
    /// revision, so a cached CRL is rebuilt.
    pub fn note_issued(&self, record: &CredentialRecord) {
        self.cutoffs.note_issue(record.issued_at_ms());
        if record.kind == CredentialKind::X509 && self.revoked_by(record).is_some() {
            self.revision.fetch_add(1, Ordering::AcqRel);
        }
        if let Ok(mut live) = self.live.lock() {
            live.add_record(record);
        }
        if record.kind == CredentialKind::X509
            && let Ok(mut x509) = self.x509.lock()
        {
            x509.insert(record);
        }
    }

    /// Tracks an X.509 credential the CRL may have to list, without counting it (idempotent:
    /// for reloading after missed events).
    pub fn track_x509(&self, record: &CredentialRecord) {
        if let Ok(mut x509) = self.x509.lock() {
            x509.insert(record);
        }
        self.revision.fetch_add(1, Ordering::AcqRel);
    }

    /// Returns how many credentials with `value` for `selector` are live at `now` (for
    /// `credential_id`, see the ledger). Cost grows with distinct expiry seconds, not with
    /// the number of credentials.
    pub fn live_count(&self, selector: Selector, value: &str, now: i64) -> u64 {
        let Ok(live) = self.live.lock() else { return 0 };
        live.count(selector, value, now)
    }

    /// Returns the end of the last expiry minute of a live credential with `value` for
    /// `selector` at `now`, or `None` when none is live (see [`LiveCounts::latest_expiry`]).
    pub fn latest_expiry(&self, selector: Selector, value: &str, now: i64) -> Option<i64> {
        let live = self.live.lock().ok()?;
        live.latest_expiry(selector, value, now)
    }

    /// Returns the revoked X.509 credentials for the CRL: each stays listed until one CRL
    /// period after it expires (RFC 5280 §3.3).
    pub fn revoked_serials(&self, now: i64) -> Vec<RevokedSerial> {
        let Ok(x509) = self.x509.lock() else {
            return Vec::new();
        };
        let mut out: Vec<RevokedSerial> = x509
            .by_serial
            .iter()
            .filter(|(_, e)| e.expires_at + CRL_VALIDITY_SECS > now)
            .filter_map(|(serial, e)| {
                let values = Values::of_x509(serial, e);
                self.revoked_by_values(&values).map(|_| RevokedSerial {
                    serial_hex: serial.to_string(),
                    revoked_at: self.cut_off(&values).div_euclid(1000),
                })
            })
            .collect();
        out.sort_by(|a, b| a.serial_hex.cmp(&b.serial_hex));
        out
    }

    /// Returns when the credential of `values` was revoked, in unix milliseconds: the earliest
    /// rule cut-off that covers it.
    fn cut_off(&self, values: &Values<'_>) -> i64 {
        let Ok(rules) = self.rules.read() else {
            return values.issued_ms;
        };
        rules
            .matching(Some(values.credential_id), &values.subject)
            .filter(|e| values.issued_ms <= e.cutoff_ms)
            .map(|e| e.cutoff_ms)
            .min()
            .unwrap_or(values.issued_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EvidenceKind, NewRule, Status};

    fn record(id: &str, workload: &str, issued_at: i64) -> CredentialRecord {
        CredentialRecord {
            credential_id: id.into(),
            kind: CredentialKind::X509,
            workload: workload.into(),
            owner: "team".into(),
            destination: "https://d".into(),
            purpose: "p".into(),
            grant: "g".into(),
            evidence_kind: EvidenceKind::X509Svid,
            evidence_hash: String::new(),
            issued_at,
            expires_at: issued_at + 300,
            status: Status::Live,
            ci: None,
            status_list: None,
        }
    }

    fn rule(selector: Selector, value: &str, at: i64) -> RevocationRule {
        RevocationRule {
            rule: NewRule {
                revocation_id: format!("r-{value}-{at}"),
                selector,
                value: value.into(),
                effective_at: at,
                effective_at_ms: None,
                reason: "test".into(),
                revoked_by: "admin".into(),
                scope: None,
            },
            sequence: 1,
        }
    }

    #[test]
    fn a_rule_covers_what_was_issued_at_or_before_it_and_nothing_after() {
        let index = RevocationIndex::new();
        index.apply(&rule(Selector::Workload, "w", 100));
        assert!(index.revoked_by(&record("a", "w", 99)).is_some());
        assert!(index.revoked_by(&record("b", "w", 100)).is_some());
        assert!(index.revoked_by(&record("c", "w", 101)).is_none());
        assert!(index.revoked_by(&record("d", "other", 50)).is_none());
    }

    #[test]
    fn a_millisecond_cut_off_spares_what_was_issued_one_millisecond_later() {
        let index = RevocationIndex::new();
        let at = |ms: i64| {
            let id = crate::domain::id::jwt_id(ms, &[9; 16]);
            record(&id, "w", ms.div_euclid(1000))
        };
        let mut cut = rule(Selector::Workload, "w", 100);
        cut.rule.effective_at_ms = Some(100_500);
        index.apply(&cut);
        assert!(index.revoked_by(&at(100_499)).is_some());
        assert!(index.revoked_by(&at(100_500)).is_some());
        assert!(index.revoked_by(&at(100_501)).is_none());
        assert!(
            index.revoked_by(&record("old-format", "w", 100)).is_some(),
            "an id without a time counts from the start of its recorded second"
        );
        let subject = |workload| IssueSubject {
            workload,
            owner: "team",
            destination: "https://d",
            purpose: "p",
            grant: "g",
            kind: CredentialKind::Jwt,
        };
        assert_eq!(
            index.issue_ms(90_000, &subject("w")),
            100_501,
            "after the cut-off of the rule on its workload, though the clock is behind it"
        );
        assert_eq!(
            index.issue_ms(90_000, &subject("other")),
            90_000,
            "a credential no rule could cover keeps the clock's time"
        );
        assert_eq!(index.cutoffs().cutoff_ms(0), 100_501, "the newest issue");
    }

    #[test]
    fn a_grant_rule_covers_every_credential_of_the_grant() {
        let index = RevocationIndex::new();
        index.apply(&rule(Selector::Grant, "g", 100));
        assert!(index.revoked_by(&record("a", "w", 100)).is_some());
        let mut other = record("b", "w", 100);
        other.grant = "h".into();
        assert!(index.revoked_by(&other).is_none());
        assert_eq!(index.live_count(Selector::Grant, "g", 0), 0);
        index.note_issued(&record("c", "w", 100));
        assert_eq!(index.live_count(Selector::Grant, "g", 200), 1);
    }

    #[test]
    fn a_scoped_grant_rule_covers_only_the_part_taken_away() {
        let index = RevocationIndex::new();
        index.apply(&rule(Selector::Grant, "g/destination=https://gone", 100));
        index.apply(&rule(Selector::Grant, "g/kind=jwt", 100));
        let mut gone = record("a", "w", 100);
        gone.destination = "https://gone".into();
        assert!(index.revoked_by(&gone).is_some(), "the removed destination");
        assert!(
            index.revoked_by(&record("b", "w", 100)).is_none(),
            "an x509 credential for a kept destination"
        );
        let mut jwt = record("c", "w", 100);
        jwt.kind = CredentialKind::Jwt;
        assert!(index.revoked_by(&jwt).is_some(), "the removed kind");
        let mut other_grant = gone.clone();
        other_grant.grant = "h".into();
        assert!(index.revoked_by(&other_grant).is_none(), "another grant");
        assert_eq!(index.rule_count(), 2);
        let subject = IssueSubject {
            workload: "w",
            owner: "team",
            destination: "https://gone",
            purpose: "p",
            grant: "g",
            kind: CredentialKind::X509,
        };
        assert_eq!(index.issue_ms(50_000, &subject), 100_000 + 1000);
        index.prune(101, 0);
        assert_eq!(index.rule_count(), 0, "pruned like any rule");
    }

    #[test]
    fn pruning_forgets_only_serials_past_their_crl_period_even_after_one_was_taken_back() {
        let index = RevocationIndex::new();
        index.note_issuing(&record("early", "w", 100)); // expires at 400
        index.note_issuing(&record("late", "w", 200)); // expires at 500
        let gone = record("gone", "w", 100);
        index.note_issuing(&gone);
        index.note_not_recorded(&gone);
        index.apply(&rule(Selector::Workload, "w", 250));
        let listed = |index: &RevocationIndex| -> Vec<String> {
            let revoked = index.revoked_serials(0).into_iter();
            revoked.map(|r| r.serial_hex).collect()
        };
        assert_eq!(listed(&index), ["early", "late"]);
        index.prune(0, 400 + CRL_VALIDITY_SECS - 1);
        assert_eq!(
            listed(&index),
            ["early", "late"],
            "still within its CRL period"
        );
        index.prune(0, 400 + CRL_VALIDITY_SECS);
        assert_eq!(listed(&index), ["late"]);
        index.prune(0, 500 + CRL_VALIDITY_SECS);
        assert!(listed(&index).is_empty());
        assert_eq!(index.rule_count(), 1, "the rule is pruned on its own terms");
    }

    #[test]
    fn counts_live_credentials_per_value_and_lists_revoked_serials() {
        let index = RevocationIndex::new();
        for (i, w) in ["w", "w", "x"].iter().enumerate() {
            index.note_issued(&record(&format!("s{i}"), w, 100));
        }
        assert_eq!(index.live_count(Selector::Workload, "w", 200), 2);
        assert_eq!(
            index.live_count(Selector::Workload, "w", 420),
            0,
            "expired at 400, counted to the end of its minute"
        );
        assert_eq!(index.live_count(Selector::Owner, "team", 200), 3);
        assert_eq!(
            index.latest_expiry(Selector::Workload, "w", 200),
            Some(420),
            "expiring at 400: no later than the end of that minute"
        );
        assert_eq!(index.latest_expiry(Selector::Workload, "w", 420), None);
        let before = index.revision();
        index.apply(&rule(Selector::Workload, "w", 150));
        assert!(index.revision() > before);
        let serials: Vec<String> = index
            .revoked_serials(200)
            .into_iter()
            .map(|r| r.serial_hex)
            .collect();
        assert_eq!(serials, vec!["s0", "s1"]);
        assert_eq!(
            index.revoked_serials(400 + CRL_VALIDITY_SECS - 1).len(),
            2,
            "listed one CRL period past expiry"
        );
        index.prune(1000, 1000 + CRL_VALIDITY_SECS);
        assert_eq!(index.rule_count(), 0);
        assert!(index.revoked_serials(200).is_empty());
    }

    #[test]
    fn restore_takes_counts_as_loaded_and_lists_restored_certificates() {
        let index = RevocationIndex::new();
        let mut counts = LiveCounts::new();
        counts.add(Selector::Workload, "w", 400, 7);
        let cert = record("s9", "w", 100);
        index.restore(counts, std::slice::from_ref(&cert));
        assert_eq!(index.live_count(Selector::Workload, "w", 200), 7);
        index.apply(&rule(Selector::Owner, "team", 150));
        let serials: Vec<String> = index
            .revoked_serials(200)
            .into_iter()
            .map(|r| r.serial_hex)
            .collect();
        assert_eq!(serials, vec!["s9"]);
    }

    #[test]
    fn a_credential_counted_at_issue_is_not_counted_again_when_its_event_comes_back() {
        let index = RevocationIndex::new();
        let here = record("aa01", "spiffe://example.org/a", 1_000);
        index.note_issuing(&here);
        assert!(!index.note_committed(&here), "the echo of our own issue");
        assert_eq!(
            index.live_count(Selector::Workload, "spiffe://example.org/a", 1_000),
            1
        );
        let elsewhere = record("bb02", "spiffe://example.org/a", 1_000);
        assert!(
            index.note_committed(&elsewhere),
            "issued by another replica"
        );
        assert_eq!(
            index.live_count(Selector::Workload, "spiffe://example.org/a", 1_000),
            2
        );
        index.apply(&rule(Selector::Workload, "spiffe://example.org/a", 1_000));
        let serials: Vec<String> = index
            .revoked_serials(1_000)
            .into_iter()
            .map(|s| s.serial_hex)
            .collect();
        assert!(serials.contains(&"bb02".to_owned()), "{serials:?}");
    }

    #[test]
    fn an_echo_that_never_comes_is_forgotten_once_its_credential_expired() {
        let index = RevocationIndex::new();
        let here = record("cc03", "spiffe://example.org/a", 1_000);
        index.note_issuing(&here);
        index.prune(0, here.expires_at + 1);
        assert!(index.note_committed(&here), "no longer remembered as ours");
    }

    #[test]
    fn a_credential_the_ledger_refused_is_no_longer_counted_nor_listed() {
        let index = RevocationIndex::new();
        let kept = record("dd04", "spiffe://example.org/a", 1_000);
        let refused = record("ee05", "spiffe://example.org/a", 1_000);
        index.note_issuing(&kept);
        index.note_issuing(&refused);
        index.note_not_recorded(&refused);
        assert_eq!(
            index.live_count(Selector::Workload, "spiffe://example.org/a", 1_000),
            1
        );
        assert_eq!(index.live_count(Selector::Grant, "g", 1_000), 1);
        index.apply(&rule(Selector::Workload, "spiffe://example.org/a", 1_000));
        let serials: Vec<String> = index
            .revoked_serials(1_000)
            .into_iter()
            .map(|s| s.serial_hex)
            .collect();
        assert_eq!(serials, ["dd04"]);
    }
}
