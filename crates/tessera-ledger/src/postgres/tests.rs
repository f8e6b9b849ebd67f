//! Tests of one PostgreSQL ledger, mirroring the redb ledger's: records, refusals, rules and
//! events, expiry, listing, sweeping, closing, and what a reconnect reads back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use super::testdb::TestDb;
use super::*;
use crate::{CredentialKind, EventKind, EvidenceKind, Selector, Status};

pub(super) use crate::test_records::{guarded, plain, rule, sample};

#[tokio::test]
async fn records_are_readable_after_reconnect() {
    let db = TestDb::create().await;
    let mut ci_record = sample("ci", 1000);
    ci_record.ci = Some(crate::CiEvidence {
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: "repo:acme/app:ref:refs/heads/main".into(),
        run_id: None,
        jti: Some("j".into()),
    });
    ci_record.kind = CredentialKind::X509;
    ci_record.evidence_kind = EvidenceKind::Oidc;
    ci_record.status = Status::Revoked;
    {
        let ledger = db.ledger().await;
        for id in ["a", "b", "c"] {
            ledger.record(plain(sample(id, 1000))).await.unwrap();
        }
        ledger.record(plain(ci_record.clone())).await.unwrap();
    }
    let ledger = db.ledger().await;
    for id in ["a", "b", "c"] {
        assert_eq!(ledger.get(id).await.unwrap(), Some(sample(id, 1000)));
    }
    assert_eq!(ledger.get("ci").await.unwrap(), Some(ci_record));
    assert_eq!(ledger.get("missing").await.unwrap(), None);
    assert_eq!(ledger.len().await.unwrap(), 4);
    assert!(!ledger.is_empty().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_records_share_commits_and_get_distinct_sequences() {
    let db = TestDb::create().await;
    let ledger = Arc::new(db.ledger().await);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move { ledger.record(plain(sample(&format!("c{i}"), 1000))).await })
        })
        .collect();
    let mut sequences = BTreeSet::new();
    for task in tasks {
        sequences.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(
        sequences.into_iter().collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    assert!(
        ledger.commits() < 200,
        "{} commits for 200 records",
        ledger.commits()
    );
    drop(ledger);
    let reconnected = db.ledger().await;
    assert_eq!(reconnected.commits(), 0);
    assert_eq!(reconnected.last_sequence().await.unwrap(), 200);
}

#[tokio::test]
async fn duplicate_id_is_refused_and_original_kept() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    ledger.record(plain(sample("same", 1000))).await.unwrap();
    let mut other = sample("same", 2000);
    other.owner = "someone-else".into();
    assert!(matches!(
        ledger.record(plain(other)).await,
        Err(LedgerError::Duplicate(id)) if id == "same"
    ));
    assert_eq!(
        ledger.get("same").await.unwrap(),
        Some(sample("same", 1000))
    );
    assert_eq!(ledger.last_sequence().await.unwrap(), 1, "no event for it");
}

#[tokio::test]
async fn a_replay_guard_refuses_its_second_use_and_writes_nothing() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    ledger
        .record(guarded(sample("first", 1000), "token|dest|purpose"))
        .await
        .unwrap();
    assert!(matches!(
        ledger
            .record(guarded(sample("second", 1000), "token|dest|purpose"))
            .await,
        Err(LedgerError::Replay)
    ));
    assert!(ledger.get("second").await.unwrap().is_none());
    let sweep = SweepParams {
        expired_before: 501,
        rules_before: 0,
        limit: 100,
    };
    ledger.sweep(sweep).await.unwrap();
    ledger
        .record(guarded(sample("third", 2000), "token|dest|purpose"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_records_do_not_fail_the_others_of_their_batch() {
    let db = TestDb::create().await;
    let ledger = Arc::new(db.ledger().await);
    ledger.record(plain(sample("taken", 1000))).await.unwrap();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                let params = match i % 3 {
                    0 => plain(sample("taken", 1000)),
                    1 => guarded(sample(&format!("g{i}"), 1000), "one-key"),
                    _ => plain(sample(&format!("ok{i}"), 1000)),
                };
                (i, ledger.record(params).await)
            })
        })
        .collect();
    let (mut stored, mut replays) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (i, Err(LedgerError::Duplicate(_))) => assert_eq!(i % 3, 0),
            (i, Err(LedgerError::Replay)) => {
                assert_eq!(i % 3, 1);
                replays += 1;
            }
            (i, Ok(_)) => {
                assert_ne!(i % 3, 0);
                stored += 1;
            }
            (_, Err(other)) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (stored, replays),
        (21, 19),
        "one guarded record, all plain ones"
    );
    assert_eq!(ledger.len().await.unwrap(), 22);
    assert_eq!(ledger.last_sequence().await.unwrap(), 22);
    let counts = ledger.live_counts(0).await.unwrap();
    assert_eq!(counts.count(Selector::Purpose, "read", 0), 22);
}

#[tokio::test]
async fn sweep_deletes_only_expired_records_old_events_and_dead_rules() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    for (id, exp) in [("old", 100), ("edge", 200), ("new", 300)] {
        ledger.record(plain(sample(id, exp))).await.unwrap();
    }
    ledger
        .add_rule(rule("r-old", Selector::Owner, "team", 50))
        .await
        .unwrap();
    ledger
        .add_rule(rule("r-new", Selector::Owner, "team", 250))
        .await
        .unwrap();
    let params = SweepParams {
        expired_before: 200,
        rules_before: 100,
        limit: 100,
    };
    assert_eq!(ledger.sweep(params).await.unwrap(), 1);
    assert!(ledger.get("old").await.unwrap().is_none());
    assert!(ledger.get("edge").await.unwrap().is_some());
    let rules = ledger.rules().await.unwrap();
    let ids: Vec<_> = rules
        .iter()
        .map(|r| r.rule.revocation_id.as_str())
        .collect();
    assert_eq!(ids, vec!["r-new"]);
    // Events 1 ("old" issued at 0) and 2 ("edge" at 100) happened before 200; event 3 ("new"
    // at 200) did not, so the sweep stops there and keeps r-old's event 4 (at 50).
    let events = ledger.events_since(0, 100).await.unwrap();
    let kept: Vec<_> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(kept, vec![3, 4, 5]);
    let page = ledger
        .list(ListParams {
            page_size: 10,
            scan_limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.credentials.len(), 2);
}

#[tokio::test]
async fn rules_and_events_survive_a_reconnect_in_sequence_order() {
    let db = TestDb::create().await;
    {
        let ledger = db.ledger().await;
        let mut live = ledger.subscribe();
        ledger.record(plain(sample("a", 1000))).await.unwrap();
        let workload = "spiffe://example.org/w";
        let stored = ledger
            .add_rule(rule("r1", Selector::Workload, workload, 950))
            .await
            .unwrap();
        assert_eq!(stored.sequence, 2);
        let issued = live.recv().await.unwrap();
        assert_eq!(issued.kind, EventKind::Issued);
        assert_eq!(issued.credential, Some(sample("a", 1000)));
        assert!(issued.committed.is_some());
        let revoked = live.recv().await.unwrap();
        assert_eq!((revoked.kind, revoked.sequence), (EventKind::Revoked, 2));
        assert_eq!(revoked.revocation, Some(stored));
    }
    let ledger = db.ledger().await;
    let events = ledger.events_since(0, 10).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.sequence, e.kind))
            .collect::<Vec<_>>(),
        vec![(1, EventKind::Issued), (2, EventKind::Revoked)]
    );
    assert_eq!(events[1].revocation.as_ref().unwrap().sequence, 2);
    assert_eq!(ledger.events_since(1, 10).await.unwrap().len(), 1);
    assert_eq!(ledger.events_since(0, 1).await.unwrap().len(), 1);
    let rules = ledger.rules().await.unwrap();
    assert_eq!(rules[0].rule.revocation_id, "r1");
    assert_eq!(rules[0].sequence, 2);
    let next = ledger.record(plain(sample("b", 1000))).await.unwrap();
    assert_eq!(next, 3, "sequences continue after a reconnect");
}

#[tokio::test]
async fn expire_emits_one_expired_event_per_credential() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    ledger.record(plain(sample("soon", 100))).await.unwrap();
    ledger.record(plain(sample("later", 500))).await.unwrap();
    assert_eq!(ledger.expire(200, usize::MAX).await.unwrap(), 1);
    assert_eq!(ledger.expire(200, usize::MAX).await.unwrap(), 0);
    assert_eq!(ledger.expire(600, usize::MAX).await.unwrap(), 1);
    assert_eq!(ledger.expire(700, usize::MAX).await.unwrap(), 0);
    let kinds: Vec<_> = ledger
        .events_since(2, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.at, e.credential.unwrap().credential_id))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Expired, 100, "soon".to_owned()),
            (EventKind::Expired, 500, "later".to_owned())
        ]
    );
}

#[tokio::test]
async fn lists_newest_first_with_filters_and_pages() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    for i in 0..25 {
        let mut r = sample(&format!("id{i:02}"), 1000 + i);
        r.owner = if i % 2 == 0 { "even" } else { "odd" }.into();
        ledger.record(plain(r)).await.unwrap();
    }
    let mut params = ListParams {
        owner: "even".into(),
        page_size: 5,
        scan_limit: 1000,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = ledger.list(params.clone()).await.unwrap();
        seen.extend(page.credentials.iter().map(|r| r.credential_id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        params.page_token = page.next_page_token;
    }
    let expected: Vec<String> = (0..25)
        .rev()
        .filter(|i| i % 2 == 0)
        .map(|i| format!("id{i:02}"))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_page_examines_at_most_scan_limit_records_and_resumes_where_it_stopped() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    for i in 0..10 {
        let mut r = sample(&format!("id{i}"), 1000);
        r.owner = if i == 0 { "rare" } else { "common" }.into();
        ledger.record(plain(r)).await.unwrap();
    }
    let mut params = ListParams {
        owner: "rare".into(),
        page_size: 5,
        scan_limit: 4,
        ..Default::default()
    };
    let page = ledger.list(params.clone()).await.unwrap();
    assert!(page.credentials.is_empty());
    // Same issue time: newest first is id order descending; the fifth examined is id5.
    assert_eq!(page.next_page_token, "900:id5\u{0}");
    params.scan_limit = 100;
    params.page_token = page.next_page_token;
    let page = ledger.list(params.clone()).await.unwrap();
    assert_eq!(page.credentials.len(), 1);
    assert!(page.next_page_token.is_empty());
    params.page_token = "not a token".into();
    assert!(matches!(
        ledger.list(params).await,
        Err(LedgerError::BadRequest(_))
    ));
}

#[tokio::test]
async fn scan_pages_through_every_record_in_id_order() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    for id in ["b", "a", "c", "B"] {
        ledger.record(plain(sample(id, 1000))).await.unwrap();
    }
    let ids = |records: Vec<CredentialRecord>| {
        records
            .into_iter()
            .map(|r| r.credential_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(ledger.scan(None, 3).await.unwrap()), ["B", "a", "b"]);
    assert_eq!(ids(ledger.scan(Some("b".into()), 2).await.unwrap()), ["c"]);
}

#[tokio::test]
async fn writes_after_close_are_refused_and_reads_work() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    ledger.record(plain(sample("before", 1000))).await.unwrap();
    ledger.close().await.unwrap();
    assert!(matches!(
        ledger.record(plain(sample("after", 1000))).await,
        Err(LedgerError::Closed)
    ));
    assert!(matches!(
        ledger.add_rule(rule("r", Selector::Owner, "team", 1)).await,
        Err(LedgerError::Closed)
    ));
    assert!(ledger.get("before").await.unwrap().is_some());
    ledger.close().await.unwrap();
}
