//! Tests of moving a redb ledger into PostgreSQL ([`crate::copy_redb_to_postgres`]): what the
//! target answers through the `Ledger` trait (usage included) equals what the source answers,
//! and a target that is not empty, or a source that is missing or in use, is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::testdb::TestDb;
use super::tests::{guarded, plain, rule, sample};
use super::*;
use crate::{
    CiEvidence, CopyError, CredentialKind, EventKind, EvidenceKind, ImportError, RedbLedger,
    RedbOptions, Selector, Status, UsageStore, copy_redb_to_postgres, open_source,
};

/// Returns [`sample`] as an X.509 record of workload `spiffe://example.org/x`.
fn x509(id: &str, expires_at: i64) -> CredentialRecord {
    let mut record = sample(id, expires_at);
    record.kind = CredentialKind::X509;
    record.workload = "spiffe://example.org/x".into();
    record
}

/// Returns [`sample`] minted for a CI token, with `kind`.
fn ci(id: &str, expires_at: i64, kind: CredentialKind) -> CredentialRecord {
    let mut record = sample(id, expires_at);
    record.kind = kind;
    record.evidence_kind = EvidenceKind::Oidc;
    record.ci = Some(CiEvidence {
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: "repo:acme/app:ref:refs/heads/main".into(),
        run_id: Some("42".into()),
        jti: Some(format!("jti-{id}")),
    });
    record
}

/// Fills `ledger` with records of both kinds (with and without CI evidence, one revoked), a
/// replay guard (key `k`), two rules, expired events (cursor at 200), a swept record whose
/// `expired` event remains, and a record recorded already past the cursor.
async fn fill(ledger: &RedbLedger) {
    ledger.record(plain(sample("gone", 100))).await.unwrap();
    let mut listed = sample("a", 1000);
    listed.status_list = Some(crate::StatusListRef {
        list: "1767225600-00abcdef01234567".into(),
        idx: 3,
    });
    ledger.record(plain(listed)).await.unwrap();
    ledger.record(plain(x509("x", 1200))).await.unwrap();
    let mut revoked = x509("xr", 1300);
    revoked.status = Status::Revoked;
    ledger.record(plain(revoked)).await.unwrap();
    let ci_jwt = ci("cj", 1100, CredentialKind::Jwt);
    ledger.record(guarded(ci_jwt, "k")).await.unwrap();
    ledger
        .record(plain(ci("cx", 1100, CredentialKind::X509)))
        .await
        .unwrap();
    ledger
        .add_rule(rule(
            "r1",
            Selector::Workload,
            "spiffe://example.org/w",
            950,
        ))
        .await
        .unwrap();
    ledger.record(plain(sample("old", 150))).await.unwrap();
    assert_eq!(ledger.expire(200, usize::MAX).await.unwrap(), 2);
    ledger
        .add_rule(rule("r2", Selector::CredentialId, "x", 1100))
        .await
        .unwrap();
    let sweep = SweepParams {
        expired_before: 101,
        rules_before: 0,
        limit: 100,
    };
    assert_eq!(ledger.sweep(sweep).await.unwrap(), 1);
    ledger.record(plain(sample("late", 180))).await.unwrap();
    ledger.record(plain(sample("fresh", 250))).await.unwrap();
}

/// Asserts that `target` answers every read as `source` does.
async fn assert_same(source: &RedbLedger, target: &PostgresLedger) {
    for id in [
        "gone", "a", "x", "xr", "cj", "cx", "old", "late", "fresh", "none",
    ] {
        assert_eq!(target.get(id).await.unwrap(), source.get(id).await.unwrap());
    }
    let all = ListParams {
        page_size: 100,
        scan_limit: 1000,
        ..Default::default()
    };
    let listed = source.list(all.clone()).await.unwrap();
    assert_eq!(listed.credentials.len(), 8);
    assert_eq!(target.list(all).await.unwrap(), listed);
    assert_eq!(target.rules().await.unwrap(), source.rules().await.unwrap());
    let events = source.events_since(0, 1000).await.unwrap();
    assert_eq!(events.first().map(|e| e.sequence), Some(2)); // the first one was swept
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::Expired && e.credential.is_none())
    );
    assert_eq!(target.events_since(0, 1000).await.unwrap(), events);
    assert_eq!(target.events_since(5, 3).await.unwrap(), events[4..7]);
    assert_eq!(
        target.last_sequence().await.unwrap(),
        source.last_sequence().await.unwrap()
    );
    for now in [0, 150, 200, 1000, 1250] {
        assert_eq!(
            target.live_counts(now).await.unwrap(),
            source.live_counts(now).await.unwrap()
        );
        assert_eq!(
            target.x509_records(now).await.unwrap(),
            source.x509_records(now).await.unwrap()
        );
        let scan = crate::StatusScan {
            expires_after: now,
            after: None,
            limit: 100,
        };
        assert_eq!(
            target.status_list_records(scan.clone()).await.unwrap(),
            source.status_list_records(scan).await.unwrap()
        );
    }
    assert_eq!(target.len().await.unwrap(), source.len().await.unwrap());
    let all = crate::UsageQuery {
        since_day: i64::MIN,
    };
    let usage = source.usage(all).await.unwrap();
    assert_eq!(usage.len(), 2, "one key per kind: {usage:?}");
    assert_eq!(
        usage.iter().map(|u| u.total).sum::<u64>(),
        9,
        "swept ones too"
    );
    assert_eq!(target.usage(all).await.unwrap(), usage);
}

#[tokio::test]
async fn a_copied_ledger_answers_as_the_embedded_one_and_continues_its_sequence() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let source = RedbLedger::open(&path, RedbOptions::default()).unwrap();
    fill(&source).await;
    source.close().await.unwrap();
    drop(source);

    let source = open_source(&path).unwrap();
    let mut seen = Vec::new();
    let report = copy_redb_to_postgres(&source, &db.options(), &mut |done, total| {
        seen.push((done, total))
    })
    .await
    .unwrap();
    let last = source.last_sequence().await.unwrap();
    assert_eq!(report.records, 8);
    assert_eq!(report.rules, 2);
    assert_eq!(report.replay_guards, 1);
    assert_eq!(report.usage, 2);
    assert_eq!(report.events as usize, last as usize - 1);
    assert_eq!(report.last_sequence, last);
    assert_eq!(seen.first(), Some(&(0, 8)));
    assert_eq!(seen.last(), Some(&(8, 8)));

    let target = db.ledger().await;
    assert_same(&source, &target).await;
    let replayed = target.record(guarded(sample("again", 1000), "k")).await;
    assert!(matches!(replayed, Err(LedgerError::Replay)), "{replayed:?}");
    let next = target.record(plain(sample("next", 1000))).await.unwrap();
    assert_eq!(next, last + 1);
    // The `expired` flags follow the source's cursor: both emit events for the same ones.
    assert_eq!(target.expire(300, usize::MAX).await.unwrap(), 1);
    assert_eq!(source.expire(300, usize::MAX).await.unwrap(), 1);
    let expired = target.events_since(next, 10).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        expired[0]
            .credential
            .as_ref()
            .map(|c| c.credential_id.as_str()),
        Some("fresh")
    );
}

#[tokio::test]
async fn a_target_that_holds_a_ledger_is_refused_and_left_as_it_was() {
    let db = TestDb::create().await;
    let target = db.ledger().await;
    target.record(plain(sample("there", 1000))).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = RedbLedger::open(&dir.path().join("l.redb"), RedbOptions::default()).unwrap();
    source.record(plain(sample("a", 1000))).await.unwrap();

    let refused = copy_redb_to_postgres(&source, &db.options(), &mut |_, _| {}).await;
    match refused {
        Err(CopyError::Target(ImportError::NotEmpty {
            credentials: 1,
            events: 1,
            rules: 0,
        })) => {}
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    assert_eq!(target.len().await.unwrap(), 1);
    assert_eq!(target.last_sequence().await.unwrap(), 1);
    assert_eq!(target.get("a").await.unwrap(), None);
}

#[tokio::test]
async fn a_missing_source_or_one_in_use_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    assert!(matches!(open_source(&path), Err(CopyError::SourceMissing(p)) if p == path));
    let _open = RedbLedger::open(&path, RedbOptions::default()).unwrap();
    let refused = open_source(&path);
    assert!(
        matches!(&refused, Err(CopyError::SourceInUse(p)) if *p == path),
        "{refused:?}"
    );
}
