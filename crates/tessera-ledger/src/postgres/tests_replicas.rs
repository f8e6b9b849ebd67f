//! Tests of two `PostgresLedger`s on one database, as two replicas: what one writes the other
//! reads and is sent, sequences stay global and gap-free under concurrent commits, replay
//! guards and expiry hold across them, and a lost listener connection loses no event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use tokio::sync::broadcast::Receiver;

use super::testdb::TestDb;
use super::tests::{guarded, plain, rule, sample};
use super::*;
use crate::{EventKind, Selector};

/// Returns the next `n` events of `live`; fails the test when they do not come within a
/// minute (an event that never comes would otherwise hang it).
async fn next_events(live: &mut Receiver<Event>, n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), live.recv()).await {
            Ok(Ok(event)) => out.push(event),
            Ok(Err(e)) => panic!("subscription failed after {} events: {e}", out.len()),
            Err(_) => panic!("only {} of {n} events arrived: {out:?}", out.len()),
        }
    }
    out
}

fn sequences(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

#[tokio::test]
async fn a_record_on_one_replica_is_read_on_the_other() {
    let db = TestDb::create().await;
    let (a, b) = (db.ledger().await, db.ledger().await);
    assert_eq!(a.record(plain(sample("x", 1000))).await.unwrap(), 1);
    assert_eq!(b.get("x").await.unwrap(), Some(sample("x", 1000)));
    assert_eq!(b.last_sequence().await.unwrap(), 1);
    assert_eq!(b.record(plain(sample("y", 1000))).await.unwrap(), 2);
    assert_eq!(a.len().await.unwrap(), 2);
}

#[tokio::test]
async fn a_rule_added_on_one_replica_reaches_the_others_subscribers() {
    let db = TestDb::create().await;
    let (a, b) = (db.ledger().await, db.ledger().await);
    let mut on_b = b.subscribe();
    a.record(plain(sample("x", 1000))).await.unwrap();
    let stored = a
        .add_rule(rule("r1", Selector::Owner, "team", 900))
        .await
        .unwrap();
    let events = next_events(&mut on_b, 2).await;
    assert_eq!(events[0].kind, EventKind::Issued);
    assert_eq!(events[0].credential, Some(sample("x", 1000)));
    assert_eq!(events[1].kind, EventKind::Revoked);
    assert_eq!(events[1].revocation, Some(stored.clone()));
    assert!(events.iter().all(|e| e.committed.is_some()));
    assert_eq!(b.rules().await.unwrap(), vec![stored]);
}

/// Records `n` credentials named `prefix{i}` concurrently on `ledger`; returns the sequences.
async fn record_many(ledger: Arc<PostgresLedger>, prefix: &'static str, n: usize) -> Vec<u64> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                let id = format!("{prefix}{i}");
                ledger.record(plain(sample(&id, 1000))).await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_on_two_replicas_reach_every_subscriber_in_order_without_gaps() {
    const EACH: usize = 150;
    let db = TestDb::create().await;
    let a = Arc::new(db.ledger().await);
    let b = Arc::new(db.ledger().await);
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    let (from_a, from_b) = tokio::join!(
        record_many(Arc::clone(&a), "a", EACH),
        record_many(Arc::clone(&b), "b", EACH)
    );
    let all: BTreeSet<u64> = from_a.iter().chain(&from_b).copied().collect();
    let expected: Vec<u64> = (1..=2 * EACH as u64).collect();
    assert_eq!(all.into_iter().collect::<Vec<_>>(), expected);
    for live in [&mut on_a, &mut on_b] {
        let events = next_events(live, 2 * EACH).await;
        assert_eq!(sequences(&events), expected, "strictly increasing, no gap");
        assert!(events.iter().all(|e| e.credential.is_some()));
    }
    let stored = a.events_since(0, 10 * EACH).await.unwrap();
    assert_eq!(sequences(&stored), expected);
}

#[tokio::test]
async fn a_replay_guard_used_on_one_replica_is_refused_on_the_other() {
    let db = TestDb::create().await;
    let (a, b) = (db.ledger().await, db.ledger().await);
    a.record(guarded(sample("first", 1000), "tok|dest|read"))
        .await
        .unwrap();
    let again = b
        .record(guarded(sample("second", 1000), "tok|dest|read"))
        .await;
    assert!(matches!(again, Err(LedgerError::Replay)), "{again:?}");
    assert!(a.get("second").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_guard_raced_on_two_replicas_is_granted_once() {
    let db = TestDb::create().await;
    let (a, b) = (db.ledger().await, db.ledger().await);
    for round in 0..20 {
        let key = format!("race-{round}");
        let (on_a, on_b) = tokio::join!(
            a.record(guarded(sample(&format!("a{round}"), 1000), &key)),
            b.record(guarded(sample(&format!("b{round}"), 1000), &key))
        );
        let granted = [&on_a, &on_b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(granted, 1, "round {round}: {on_a:?} {on_b:?}");
        assert!(
            [on_a, on_b]
                .into_iter()
                .any(|r| matches!(r, Err(LedgerError::Replay)))
        );
    }
    assert_eq!(a.len().await.unwrap(), 20, "no refused record was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_expiry_on_two_replicas_emits_one_event_per_credential() {
    let db = TestDb::create().await;
    let (a, b) = (db.ledger().await, db.ledger().await);
    for i in 0..50 {
        let ledger = if i % 2 == 0 { &a } else { &b };
        ledger
            .record(plain(sample(&format!("c{i}"), 100 + i)))
            .await
            .unwrap();
    }
    let (n_a, n_b) = tokio::join!(a.expire(200, usize::MAX), b.expire(200, usize::MAX));
    assert_eq!(n_a.unwrap() + n_b.unwrap(), 50);
    let events = a.events_since(50, 1000).await.unwrap();
    let expired: BTreeSet<String> = events
        .iter()
        .filter(|e| e.kind == EventKind::Expired)
        .map(|e| e.credential.as_ref().unwrap().credential_id.clone())
        .collect();
    assert_eq!((events.len(), expired.len()), (50, 50));
    assert_eq!(b.expire(300, usize::MAX).await.unwrap(), 0);
}

/// Opens a transaction on a connection of its own that takes the next sequence for a
/// `revoked` event (as another replica's batch would) and holds the counter until the
/// returned client runs COMMIT. `notify` says whether it notifies, as every batch does.
async fn foreign_batch(db: &TestDb, id: &str, notify: bool) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let json = serde_json::to_string(&rule(id, Selector::Owner, "team", 5)).unwrap();
    let notify = if notify {
        format!("SELECT pg_notify('{EVENTS_CHANNEL}', (SELECT last FROM ledger_sequence)::text);")
    } else {
        String::new()
    };
    client
        .batch_execute(&format!(
            "BEGIN;
             UPDATE ledger_sequence SET last = last + 1;
             INSERT INTO events (sequence, kind, at, rule)
                 SELECT last, 1, 5, '{json}' FROM ledger_sequence;
             INSERT INTO rules (revocation_id, sequence, effective_at, rule)
                 SELECT '{id}', last, 5, '{json}' FROM ledger_sequence;
             {notify}"
        ))
        .await
        .unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_for_the_transaction_holding_the_counter_and_follows_its_sequence() {
    let db = TestDb::create().await;
    let a = Arc::new(db.ledger().await);
    let b = db.ledger().await;
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    assert_eq!(a.record(plain(sample("x", 1000))).await.unwrap(), 1);
    let foreign = foreign_batch(&db, "held", true).await;
    let recording = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { a.record(plain(sample("y", 1000))).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Whatever the timing: the record cannot take a sequence while the counter is held.
    assert!(!recording.is_finished(), "{:?}", recording.await);
    foreign.batch_execute("COMMIT").await.unwrap();
    assert_eq!(recording.await.unwrap().unwrap(), 3);
    for live in [&mut on_a, &mut on_b] {
        let events = next_events(live, 3).await;
        let kinds: Vec<_> = events.iter().map(|e| (e.sequence, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, EventKind::Issued),
                (2, EventKind::Revoked),
                (3, EventKind::Issued)
            ]
        );
    }
}

#[tokio::test]
async fn an_event_committed_without_a_notification_still_reaches_subscribers() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    let mut live = ledger.subscribe();
    let foreign = foreign_batch(&db, "silent", false).await;
    foreign.batch_execute("COMMIT").await.unwrap();
    let events = next_events(&mut live, 1).await;
    assert_eq!(
        (events[0].sequence, events[0].kind),
        (1, EventKind::Revoked)
    );
    let rule = events[0].revocation.as_ref().unwrap();
    assert_eq!(
        (rule.rule.revocation_id.as_str(), rule.sequence),
        ("silent", 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_while_the_listener_was_disconnected_are_caught_up_in_order() {
    let db = TestDb::create().await;
    let (a, b) = (db.ledger().await, db.ledger().await);
    let mut on_b = b.subscribe();
    a.record(plain(sample("x", 1000))).await.unwrap();
    assert_eq!(sequences(&next_events(&mut on_b, 1).await), vec![1]);
    db.admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{}' AND query LIKE 'LISTEN%'",
        db.name()
    ))
    .await;
    for id in ["y", "z"] {
        a.record(plain(sample(id, 1000))).await.unwrap();
    }
    a.add_rule(rule("r", Selector::Owner, "team", 900))
        .await
        .unwrap();
    let events = next_events(&mut on_b, 3).await;
    assert_eq!(sequences(&events), vec![2, 3, 4]);
    assert_eq!(events[2].kind, EventKind::Revoked);
}
