//! Tests of the redb ledger's writes and reads: records, replay guards, rules, events,
//! expiry, sweeps and listings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::test_support::{first_page, open, plain, rule, sample, sweep_expired, temp_ledger};
use super::*;
use crate::{EventKind, ReplayGuard, Selector};

#[tokio::test]
async fn records_are_readable_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = open(&dir);
        for id in ["a", "b", "c"] {
            ledger.record(plain(sample(id, 1000))).await.unwrap();
        }
    }
    let ledger = open(&dir);
    for id in ["a", "b", "c"] {
        assert_eq!(ledger.get(id).await.unwrap(), Some(sample(id, 1000)));
    }
    assert_eq!(ledger.len().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_records_share_commits_and_get_distinct_sequences() {
    let (dir, ledger) = temp_ledger();
    let ledger: Arc<dyn Ledger> = Arc::new(ledger);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move { ledger.record(plain(sample(&format!("c{i}"), 1000))).await })
        })
        .collect();
    let mut sequences = std::collections::BTreeSet::new();
    for task in tasks {
        sequences.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(sequences.len(), 200);
    assert_eq!(
        sequences.iter().copied().collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    drop(ledger);
    let reopened = open(&dir);
    assert!(reopened.commits() == 0);
    assert_eq!(reopened.last_sequence().await.unwrap(), 200);
}

#[tokio::test]
async fn duplicate_id_is_refused_and_original_kept() {
    let (_dir, ledger) = temp_ledger();
    ledger.record(plain(sample("same", 1000))).await.unwrap();
    let mut other = sample("same", 2000);
    other.owner = "someone-else".into();
    assert!(matches!(
        ledger.record(plain(other)).await,
        Err(LedgerError::Duplicate(_))
    ));
    assert_eq!(
        ledger.get("same").await.unwrap(),
        Some(sample("same", 1000))
    );
}

#[tokio::test]
async fn a_replay_guard_refuses_its_second_use_and_writes_nothing() {
    let (_dir, ledger) = temp_ledger();
    let guard = || {
        Some(ReplayGuard {
            key: "token|dest|purpose".into(),
            expires_at: 500,
        })
    };
    ledger
        .record(RecordParams {
            credential: sample("first", 1000),
            replay_guard: guard(),
        })
        .await
        .unwrap();
    let second = RecordParams {
        credential: sample("second", 1000),
        replay_guard: guard(),
    };
    assert!(matches!(
        ledger.record(second).await,
        Err(LedgerError::Replay)
    ));
    assert!(ledger.get("second").await.unwrap().is_none());
    sweep_expired(&ledger, 501).await;
    let third = RecordParams {
        credential: sample("third", 2000),
        replay_guard: guard(),
    };
    ledger.record(third).await.unwrap();
}

#[tokio::test]
async fn sweep_deletes_only_expired_records_old_events_and_dead_rules() {
    let (_dir, ledger) = temp_ledger();
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
    assert_eq!(
        rules
            .iter()
            .map(|r| r.rule.revocation_id.as_str())
            .collect::<Vec<_>>(),
        vec!["r-new"]
    );
    // Events that happened before 200 are gone: "old" issued at 0, "edge" at 100, r-old at 50.
    let events = ledger.events_since(0, 100).await.unwrap();
    assert!(
        events.iter().all(|e| e.at >= 200 || e.sequence > 3),
        "{events:?}"
    );
    assert_eq!(first_page(&ledger).await.len(), 2);
}

#[tokio::test]
async fn rules_and_events_survive_a_reopen_in_sequence_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = open(&dir);
        let mut live = ledger.subscribe();
        ledger.record(plain(sample("a", 1000))).await.unwrap();
        let stored = ledger
            .add_rule(rule(
                "r1",
                Selector::Workload,
                "spiffe://example.org/w",
                950,
            ))
            .await
            .unwrap();
        assert_eq!(stored.sequence, 2);
        assert_eq!(live.recv().await.unwrap().kind, EventKind::Issued);
        let revoked = live.recv().await.unwrap();
        assert_eq!((revoked.kind, revoked.sequence), (EventKind::Revoked, 2));
    }
    let ledger = open(&dir);
    let events = ledger.events_since(0, 10).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.sequence, e.kind))
            .collect::<Vec<_>>(),
        vec![(1, EventKind::Issued), (2, EventKind::Revoked)]
    );
    assert_eq!(ledger.events_since(1, 10).await.unwrap().len(), 1);
    assert_eq!(ledger.rules().await.unwrap()[0].rule.revocation_id, "r1");
    let next = ledger.record(plain(sample("b", 1000))).await.unwrap();
    assert_eq!(next, 3, "sequences continue after a restart");
}

#[tokio::test]
async fn expire_emits_one_expired_event_per_credential() {
    let (_dir, ledger) = temp_ledger();
    ledger.record(plain(sample("soon", 100))).await.unwrap();
    ledger.record(plain(sample("later", 500))).await.unwrap();
    assert_eq!(ledger.expire(200, usize::MAX).await.unwrap(), 1);
    assert_eq!(ledger.expire(200, usize::MAX).await.unwrap(), 0);
    assert_eq!(ledger.expire(600, usize::MAX).await.unwrap(), 1);
    let kinds: Vec<_> = ledger
        .events_since(2, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.credential.unwrap().credential_id))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Expired, "soon".to_owned()),
            (EventKind::Expired, "later".to_owned())
        ]
    );
}

#[tokio::test]
async fn lists_newest_first_with_filters_and_pages() {
    let (_dir, ledger) = temp_ledger();
    for i in 0..25 {
        let mut r = sample(&format!("id{i:02}"), 1000 + i);
        r.owner = if i % 2 == 0 {
            "even".into()
        } else {
            "odd".into()
        };
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
async fn scan_pages_through_every_record_in_id_order() {
    let (_dir, ledger) = temp_ledger();
    for id in ["b", "a", "c"] {
        ledger.record(plain(sample(id, 1000))).await.unwrap();
    }
    let first = ledger.scan(None, 2).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|r| r.credential_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let rest = ledger.scan(Some("b".into()), 2).await.unwrap();
    assert_eq!(
        rest.iter()
            .map(|r| r.credential_id.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
}

#[tokio::test]
async fn writes_after_close_are_refused_and_reads_work() {
    let (_dir, ledger) = temp_ledger();
    ledger.record(plain(sample("before", 1000))).await.unwrap();
    ledger.close().await.unwrap();
    assert!(matches!(
        ledger.record(plain(sample("after", 1000))).await,
        Err(LedgerError::Closed)
    ));
    assert!(ledger.get("before").await.unwrap().is_some());
    ledger.close().await.unwrap();
}
