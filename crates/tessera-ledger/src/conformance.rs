//! A conformance suite for any [`Ledger`] backend: the contract of the trait, checked through
//! the trait alone. A backend plugs in with a [`Backend`] (which opens, and reopens, its
//! ledger) and one [`conformance_tests!`] invocation, which makes one test per check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    CredentialKind, CredentialRecord, EventKind, Ledger, LedgerError, ListParams, NewRule,
    RecordParams, ReplayGuard, Selector, StatusListRef, StatusScan, SweepParams,
};

/// Opens a backend's ledger on storage of its own, the same storage on every call.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Returns the ledger, opened anew (a backend that locks its storage may need the previous
    /// ledger dropped first; the checks drop it).
    async fn open(&self) -> Arc<dyn Ledger>;
}

/// Makes one `#[tokio::test]` per check of this module, each on a backend made by `$make` (an
/// async expression returning something that implements [`Backend`]).
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance::conformance_tests!(@each $make;
            records_are_read_back_and_counted,
            sequences_have_no_gap_and_continue_after_reopen,
            a_duplicate_id_is_refused_without_an_event,
            a_replay_guard_holds_until_swept,
            rules_come_back_oldest_first_with_their_sequence,
            events_since_pages_through_the_sequence,
            subscribers_get_committed_events_in_order_with_their_records,
            expire_emits_one_event_per_credential_once,
            expire_writes_at_most_its_limit_and_repeated_calls_finish_the_backlog,
            list_pages_newest_first_through_filters,
            scan_pages_in_id_order,
            live_counts_and_x509_records_survive_a_reopen,
            status_list_entries_are_kept_and_paged_in_expiry_order,
            sweep_deletes_what_expired_and_keeps_the_rest,
            close_refuses_writes_and_keeps_reads,
            the_newest_issue_time_is_read_from_the_newest_ids,
            the_first_acknowledgement_of_a_rule_is_kept_until_forgotten,
            an_audit_anchor_only_moves_forward_and_survives_a_reopen,
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend = $make.await;
                $crate::conformance::$check(&backend).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;

/// Returns a live JWT record (see [`crate::test_records::sample`]).
fn record(id: &str, expires_at: i64) -> CredentialRecord {
    crate::test_records::sample(id, expires_at)
}

use crate::test_records::plain;

/// Returns an owner rule `id` on `team`, effective at `at`.
fn rule(id: &str, at: i64) -> NewRule {
    crate::test_records::rule(id, Selector::Owner, "team", at)
}

fn sweep_before(at: i64) -> SweepParams {
    SweepParams {
        expired_before: at,
        rules_before: at,
        limit: 1000,
    }
}

pub(crate) async fn records_are_read_back_and_counted(backend: &dyn Backend) {
    let ledger = backend.open().await;
    assert!(ledger.is_empty().await.unwrap());
    let mut ci = record("ci", 1000);
    ci.ci = Some(crate::CiEvidence {
        issuer: "https://issuer".into(),
        subject: "repo:a/b".into(),
        run_id: Some("7".into()),
        jti: None,
    });
    ci.evidence_hash = "not hex".into();
    for r in [record("a", 1000), ci.clone()] {
        ledger.record(plain(r)).await.unwrap();
    }
    assert_eq!(ledger.get("a").await.unwrap(), Some(record("a", 1000)));
    assert_eq!(ledger.get("ci").await.unwrap(), Some(ci));
    assert_eq!(ledger.get("nope").await.unwrap(), None);
    assert_eq!(ledger.len().await.unwrap(), 2);
}

pub(crate) async fn sequences_have_no_gap_and_continue_after_reopen(backend: &dyn Backend) {
    let ledger = backend.open().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move { ledger.record(plain(record(&format!("c{i}"), 1000))).await })
        })
        .collect();
    let mut sequences = BTreeSet::new();
    for task in tasks {
        sequences.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(sequences, (1..=50).collect());
    assert_eq!(ledger.last_sequence().await.unwrap(), 50);
    drop(ledger);
    let ledger = backend.open().await;
    assert_eq!(ledger.last_sequence().await.unwrap(), 50);
    let next = ledger.add_rule(rule("r", 10)).await.unwrap();
    assert_eq!(next.sequence, 51);
}

pub(crate) async fn a_duplicate_id_is_refused_without_an_event(backend: &dyn Backend) {
    let ledger = backend.open().await;
    ledger.record(plain(record("same", 1000))).await.unwrap();
    let mut other = record("same", 2000);
    other.owner = "other".into();
    let refused = ledger.record(plain(other)).await;
    assert!(
        matches!(&refused, Err(LedgerError::Duplicate(id)) if id == "same"),
        "{refused:?}"
    );
    assert_eq!(
        ledger.get("same").await.unwrap(),
        Some(record("same", 1000))
    );
    assert_eq!(ledger.last_sequence().await.unwrap(), 1);
}

pub(crate) async fn a_replay_guard_holds_until_swept(backend: &dyn Backend) {
    let ledger = backend.open().await;
    let guarded = |id: &str| RecordParams {
        credential: record(id, 1000),
        replay_guard: Some(ReplayGuard {
            key: "token|dest|purpose".into(),
            expires_at: 500,
        }),
    };
    ledger.record(guarded("first")).await.unwrap();
    let again = ledger.record(guarded("second")).await;
    assert!(matches!(again, Err(LedgerError::Replay)), "{again:?}");
    assert_eq!(ledger.get("second").await.unwrap(), None);
    drop(ledger);
    let ledger = backend.open().await;
    let again = ledger.record(guarded("third")).await;
    assert!(matches!(again, Err(LedgerError::Replay)), "after a reopen");
    ledger.sweep(sweep_before(501)).await.unwrap();
    ledger.record(guarded("fourth")).await.unwrap();
}

pub(crate) async fn rules_come_back_oldest_first_with_their_sequence(backend: &dyn Backend) {
    let ledger = backend.open().await;
    ledger.record(plain(record("a", 1000))).await.unwrap();
    let second = ledger.add_rule(rule("zz", 10)).await.unwrap();
    let third = ledger.add_rule(rule("aa", 20)).await.unwrap();
    assert_eq!((second.sequence, third.sequence), (2, 3));
    assert_eq!(second.rule, rule("zz", 10));
    drop(ledger);
    let ledger = backend.open().await;
    assert_eq!(ledger.rules().await.unwrap(), vec![second, third]);
}

pub(crate) async fn events_since_pages_through_the_sequence(backend: &dyn Backend) {
    let ledger = backend.open().await;
    for i in 0..5 {
        ledger
            .record(plain(record(&format!("e{i}"), 1000)))
            .await
            .unwrap();
    }
    let stored = ledger.add_rule(rule("r", 10)).await.unwrap();
    let first = ledger.events_since(0, 4).await.unwrap();
    let rest = ledger.events_since(4, 100).await.unwrap();
    let seqs: Vec<u64> = first.iter().chain(&rest).map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    assert_eq!(first[0].kind, EventKind::Issued);
    assert_eq!(first[0].credential, Some(record("e0", 1000)));
    assert_eq!(first[0].at, 900);
    assert_eq!(rest[1].kind, EventKind::Revoked);
    assert_eq!(rest[1].revocation, Some(stored));
    assert!(ledger.events_since(6, 10).await.unwrap().is_empty());
}

pub(crate) async fn subscribers_get_committed_events_in_order_with_their_records(
    backend: &dyn Backend,
) {
    let ledger = backend.open().await;
    let mut live = ledger.subscribe();
    ledger.record(plain(record("a", 150))).await.unwrap();
    let stored = ledger.add_rule(rule("r", 10)).await.unwrap();
    ledger.expire(200, usize::MAX).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(live.recv().await.unwrap());
    }
    let summary: Vec<_> = got.iter().map(|e| (e.sequence, e.kind)).collect();
    let expected = [
        (1, EventKind::Issued),
        (2, EventKind::Revoked),
        (3, EventKind::Expired),
    ];
    assert_eq!(summary, expected);
    assert_eq!(got[0].credential, Some(record("a", 150)));
    assert_eq!(got[1].revocation, Some(stored));
    assert_eq!(got[2].credential, Some(record("a", 150)));
    assert!(got.iter().all(|e| e.committed.is_some()));
}

pub(crate) async fn expire_emits_one_event_per_credential_once(backend: &dyn Backend) {
    let ledger = backend.open().await;
    for (id, exp) in [("soon", 100), ("soon2", 150), ("later", 500)] {
        ledger.record(plain(record(id, exp))).await.unwrap();
    }
    assert_eq!(ledger.expire(200, usize::MAX).await.unwrap(), 2);
    assert_eq!(ledger.expire(200, usize::MAX).await.unwrap(), 0);
    assert_eq!(ledger.expire(300, usize::MAX).await.unwrap(), 0);
    assert_eq!(ledger.expire(501, usize::MAX).await.unwrap(), 1);
    let expired: Vec<_> = ledger
        .events_since(3, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.at, e.credential.unwrap().credential_id))
        .collect();
    let expected = [
        (EventKind::Expired, 100, "soon".to_owned()),
        (EventKind::Expired, 150, "soon2".to_owned()),
        (EventKind::Expired, 500, "later".to_owned()),
    ];
    assert_eq!(expired, expected);
}

pub(crate) async fn expire_writes_at_most_its_limit_and_repeated_calls_finish_the_backlog(
    backend: &dyn Backend,
) {
    let ledger = backend.open().await;
    let overdue = [
        ("b", 100),
        ("a", 100),
        ("c", 100),
        ("e", 120),
        ("d", 120),
        ("f", 150),
    ];
    for (id, exp) in overdue {
        ledger.record(plain(record(id, exp))).await.unwrap();
    }
    ledger.record(plain(record("later", 500))).await.unwrap();
    // A limit of 2 cuts the three of second 100 in two: the next call resumes inside it.
    for _ in 0..2 {
        let before = ledger.last_sequence().await.unwrap();
        let n = ledger.expire(200, 2).await.unwrap();
        assert_eq!(n, 2);
        assert_eq!(ledger.last_sequence().await.unwrap(), before + 2);
    }
    drop(ledger);
    let ledger = backend.open().await;
    assert_eq!(
        ledger.expire(200, 2).await.unwrap(),
        2,
        "resumes after a reopen"
    );
    assert_eq!(
        ledger.expire(200, 2).await.unwrap(),
        0,
        "the backlog is gone"
    );
    let expired: Vec<_> = ledger
        .events_since(7, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.at, e.credential.unwrap().credential_id))
        .collect();
    let mut expected: Vec<_> = overdue
        .iter()
        .map(|(id, exp)| (EventKind::Expired, *exp, (*id).to_owned()))
        .collect();
    expected.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    assert_eq!(expired, expected, "each once, in (expires_at, id) order");
    assert_eq!(ledger.expire(501, 2).await.unwrap(), 1);
}

pub(crate) async fn list_pages_newest_first_through_filters(backend: &dyn Backend) {
    let ledger = backend.open().await;
    for i in 0..12 {
        let mut r = record(&format!("id{i:02}"), 1000 + i);
        r.purpose = if i % 3 == 0 { "write" } else { "read" }.into();
        r.kind = if i % 2 == 0 {
            CredentialKind::X509
        } else {
            CredentialKind::Jwt
        };
        ledger.record(plain(r)).await.unwrap();
    }
    let mut params = ListParams {
        purpose: "write".into(),
        kind: Some(CredentialKind::X509),
        page_size: 1,
        scan_limit: 100,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = ledger.list(params.clone()).await.unwrap();
        seen.extend(page.credentials.into_iter().map(|r| r.credential_id));
        if page.next_page_token.is_empty() {
            break;
        }
        params.page_token = page.next_page_token;
    }
    assert_eq!(seen, ["id06", "id00"]);
    params.page_token = "garbage".into();
    let bad = ledger.list(params).await;
    assert!(matches!(bad, Err(LedgerError::BadRequest(_))), "{bad:?}");
}

pub(crate) async fn scan_pages_in_id_order(backend: &dyn Backend) {
    let ledger = backend.open().await;
    for id in ["m", "Z", "a", "b"] {
        ledger.record(plain(record(id, 1000))).await.unwrap();
    }
    let ids = |rs: Vec<CredentialRecord>| rs.into_iter().map(|r| r.credential_id).collect();
    let first: Vec<String> = ids(ledger.scan(None, 2).await.unwrap());
    assert_eq!(first, ["Z", "a"]);
    let rest: Vec<String> = ids(ledger.scan(Some("a".into()), 10).await.unwrap());
    assert_eq!(rest, ["b", "m"]);
}

pub(crate) async fn live_counts_and_x509_records_survive_a_reopen(backend: &dyn Backend) {
    let ledger = backend.open().await;
    let mut cert = record("cert", 1500);
    cert.kind = CredentialKind::X509;
    for r in [record("j0", 960), record("j1", 960), cert.clone()] {
        ledger.record(plain(r)).await.unwrap();
    }
    drop(ledger);
    let ledger = backend.open().await;
    let counts = ledger.live_counts(0).await.unwrap();
    assert_eq!(counts.total(0), 3);
    assert_eq!(counts.count(Selector::Owner, "team", 960), 1);
    assert_eq!(ledger.live_counts(960).await.unwrap().total(960), 1);
    assert_eq!(ledger.x509_records(0).await.unwrap(), vec![cert]);
    assert!(ledger.x509_records(1500).await.unwrap().is_empty());
}

/// Returns [`record`] with entry `idx` of list `1767225600-00abcdef01234567`.
fn with_status(id: &str, expires_at: i64, idx: u32) -> CredentialRecord {
    let mut r = record(id, expires_at);
    r.status_list = Some(StatusListRef {
        list: "1767225600-00abcdef01234567".into(),
        idx,
    });
    r
}

pub(crate) async fn status_list_entries_are_kept_and_paged_in_expiry_order(backend: &dyn Backend) {
    let ledger = backend.open().await;
    let expected = [
        with_status("b", 900, 0),
        with_status("a", 1000, u32::MAX),
        with_status("c", 1000, 7),
    ];
    for r in [&expected[2], &expected[0], &expected[1]] {
        ledger.record(plain(r.clone())).await.unwrap();
    }
    ledger.record(plain(record("none", 1000))).await.unwrap();
    drop(ledger);
    let ledger = backend.open().await;
    assert_eq!(ledger.get("a").await.unwrap().as_ref(), Some(&expected[1]));
    assert_eq!(ledger.get("none").await.unwrap().unwrap().status_list, None);
    let scan = StatusScan {
        expires_after: 0,
        after: None,
        limit: 2,
    };
    let first = ledger.status_list_records(scan.clone()).await.unwrap();
    assert_eq!(first, expected[..2], "no record without an entry");
    let next = scan.next(&first).unwrap();
    let rest = ledger.status_list_records(next.clone()).await.unwrap();
    assert_eq!(rest, expected[2..]);
    assert_eq!(next.next(&rest), None, "a short page is the last");
    let live = StatusScan {
        expires_after: 900,
        ..scan.clone()
    };
    let ids: Vec<String> = ledger
        .status_list_records(live)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.credential_id)
        .collect();
    assert_eq!(ids, ["a", "c"], "only what expires after 900");
    ledger.sweep(sweep_before(950)).await.unwrap();
    let after_sweep = ledger.status_list_records(scan.clone()).await.unwrap();
    assert_eq!(after_sweep, expected[1..], "swept records leave the index");
}

pub(crate) async fn sweep_deletes_what_expired_and_keeps_the_rest(backend: &dyn Backend) {
    let ledger = backend.open().await;
    for (id, exp) in [("old", 100), ("edge", 200), ("new", 300)] {
        ledger.record(plain(record(id, exp))).await.unwrap();
    }
    ledger.add_rule(rule("dead", 150)).await.unwrap();
    let live = ledger.add_rule(rule("live", 250)).await.unwrap();
    assert_eq!(ledger.sweep(sweep_before(200)).await.unwrap(), 1);
    assert_eq!(ledger.get("old").await.unwrap(), None);
    assert!(ledger.get("edge").await.unwrap().is_some());
    assert_eq!(ledger.rules().await.unwrap(), vec![live]);
    assert_eq!(ledger.len().await.unwrap(), 2);
    let kept: Vec<u64> = ledger
        .events_since(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(
        kept,
        [3, 4, 5],
        "events at 0 and 100 went, the sweep stops at 200"
    );
}

pub(crate) async fn close_refuses_writes_and_keeps_reads(backend: &dyn Backend) {
    let ledger = backend.open().await;
    ledger.record(plain(record("before", 1000))).await.unwrap();
    ledger.close().await.unwrap();
    let after = ledger.record(plain(record("after", 1000))).await;
    assert!(matches!(after, Err(LedgerError::Closed)), "{after:?}");
    assert!(matches!(
        ledger.expire(2000, usize::MAX).await,
        Err(LedgerError::Closed)
    ));
    assert!(ledger.get("before").await.unwrap().is_some());
    assert_eq!(ledger.last_sequence().await.unwrap(), 1);
    ledger.close().await.unwrap();
}

pub(crate) async fn the_newest_issue_time_is_read_from_the_newest_ids(backend: &dyn Backend) {
    use tessera_core::domain::id::jwt_id;
    let ledger = backend.open().await;
    assert_eq!(ledger.newest_issue_ms().await.unwrap(), None);
    let at = |ms: i64, fill: u8| {
        let mut r = record(&jwt_id(ms, &[fill; 16]), 0);
        r.issued_at = ms.div_euclid(1000);
        r.expires_at = r.issued_at + 300;
        plain(r)
    };
    let mut old = record("old-format-id", 0);
    old.issued_at = 900;
    old.expires_at = 1200;
    for params in [
        plain(old),
        at(950_456, 0),
        at(950_123, 0xff),
        at(940_999, 1),
    ] {
        ledger.record(params).await.unwrap();
    }
    assert_eq!(ledger.newest_issue_ms().await.unwrap(), Some(950_456));
    drop(ledger);
    let ledger = backend.open().await;
    assert_eq!(ledger.newest_issue_ms().await.unwrap(), Some(950_456));
}

pub(crate) async fn the_first_acknowledgement_of_a_rule_is_kept_until_forgotten(
    backend: &dyn Backend,
) {
    use crate::Acknowledgement;
    let ack = |rule: &str, party: &str, at_ms: i64| Acknowledgement {
        revocation_id: rule.into(),
        relying_party: party.into(),
        at_ms,
    };
    let ledger = backend.open().await;
    let first = vec![
        ack("r1", "spiffe://td/b", 1_000),
        ack("r1", "spiffe://td/a", 2_000),
    ];
    assert_eq!(ledger.acknowledge(first).await.unwrap(), 2);
    let again = vec![
        ack("r1", "spiffe://td/a", 9_000),
        ack("r2", "spiffe://td/a", 5_000),
    ];
    assert_eq!(
        ledger.acknowledge(again).await.unwrap(),
        1,
        "only r2 is new"
    );
    drop(ledger);
    let ledger = backend.open().await;
    assert_eq!(
        ledger.acknowledgements("r1", 10).await.unwrap(),
        vec![
            ack("r1", "spiffe://td/a", 2_000),
            ack("r1", "spiffe://td/b", 1_000)
        ],
        "by relying party, the first time kept"
    );
    assert_eq!(ledger.acknowledgements("r1", 1).await.unwrap().len(), 1);
    assert!(ledger.acknowledgements("r0", 10).await.unwrap().is_empty());
    assert_eq!(ledger.forget_acknowledgements(2_000).await.unwrap(), 1);
    assert_eq!(ledger.acknowledgements("r1", 10).await.unwrap().len(), 1);
    assert_eq!(ledger.acknowledgements("r2", 10).await.unwrap().len(), 1);
}

pub(crate) async fn an_audit_anchor_only_moves_forward_and_survives_a_reopen(
    backend: &dyn Backend,
) {
    let ledger = backend.open().await;
    let anchor = |log: &str, seq: u64| crate::AuditAnchor {
        log: log.into(),
        seq,
        hash: format!("h{seq}"),
        at_ms: 1_000 + seq as i64,
    };
    assert_eq!(ledger.audit_anchor("log-a").await.unwrap(), None);
    ledger.anchor_audit(anchor("log-a", 5)).await.unwrap();
    ledger.anchor_audit(anchor("log-a", 3)).await.unwrap();
    ledger.anchor_audit(anchor("log-b", 1)).await.unwrap();
    assert_eq!(
        ledger.audit_anchor("log-a").await.unwrap(),
        Some(anchor("log-a", 5)),
        "an older line does not move it back"
    );
    ledger.anchor_audit(anchor("log-a", 9)).await.unwrap();
    ledger.close().await.unwrap();
    drop(ledger);
    let ledger = backend.open().await;
    assert_eq!(
        ledger.audit_anchor("log-a").await.unwrap(),
        Some(anchor("log-a", 9))
    );
    assert_eq!(
        ledger.audit_anchor("log-b").await.unwrap(),
        Some(anchor("log-b", 1))
    );
}
