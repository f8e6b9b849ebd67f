//! Tests of what a restart reads: persisted live counts, the X.509 index, and upgrades of
//! older files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::test_support::{
    first_page, ledger_path, open, plain, sample, sweep_expired, temp_ledger, x509,
};
use super::*;
use crate::Selector;

/// Overwrites the stored bytes of `id` with garbage, so any read of it fails.
fn corrupt(ledger: &RedbLedger, id: &str) {
    let txn = ledger.db.begin_write().unwrap();
    txn.open_table(CREDENTIALS)
        .unwrap()
        .insert(id, b"\xffnot a record".as_slice())
        .unwrap();
    txn.commit().unwrap();
}

#[tokio::test]
async fn restart_restores_live_counts_without_reading_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = open(&dir);
        // Expiries on minute boundaries: counts are kept per expiry minute.
        for (i, exp) in [960, 960, 1980].into_iter().enumerate() {
            ledger
                .record(plain(sample(&format!("j{i}"), exp)))
                .await
                .unwrap();
        }
        ledger.record(plain(x509("x0", 1500))).await.unwrap();
    }
    let ledger = open(&dir);
    for id in ["j0", "j1", "j2"] {
        corrupt(&ledger, id);
    }
    let counts = ledger.live_counts(0).await.unwrap();
    assert_eq!(counts.total(0), 4);
    assert_eq!(
        counts.count(Selector::Workload, "spiffe://example.org/w", 0),
        3
    );
    assert_eq!(
        counts.count(Selector::Workload, "spiffe://example.org/x", 0),
        1
    );
    assert_eq!(counts.count(Selector::Owner, "team", 960), 2);
    let later = ledger.live_counts(960).await.unwrap();
    assert_eq!(later.total(960), 2, "what expired at 960 is not loaded");
    let x509s = ledger.x509_records(0).await.unwrap();
    assert_eq!(x509s, vec![x509("x0", 1500)]);
    assert!(ledger.x509_records(1500).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_counts_each_stored_record_once_and_refused_ones_not_at_all() {
    let (_dir, ledger) = temp_ledger();
    let ledger = Arc::new(ledger);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            // Every id twice: one of each pair is refused as a duplicate.
            tokio::spawn(async move {
                ledger
                    .record(plain(sample(&format!("c{}", i / 2), 1000)))
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += u64::from(task.await.unwrap().is_ok());
    }
    assert_eq!(stored, 50);
    let counts = ledger.live_counts(0).await.unwrap();
    assert_eq!(counts.count(Selector::Purpose, "read", 0), 50);
}

#[tokio::test]
async fn expiry_deletes_persisted_counts_and_sweep_the_x509_index() {
    let (_dir, ledger) = temp_ledger();
    ledger.record(plain(sample("soon", 100))).await.unwrap();
    ledger.record(plain(x509("cert", 100))).await.unwrap();
    ledger.record(plain(sample("later", 500))).await.unwrap();
    // Counts are kept per expiry minute: those of `soon` go once its minute (100 → 120) ends.
    ledger.expire(120, usize::MAX).await.unwrap();
    let count_rows = |ledger: &RedbLedger| {
        let txn = ledger.db.begin_read().unwrap();
        txn.open_table(LIVE_COUNTS).unwrap().len().unwrap()
    };
    assert_eq!(
        count_rows(&ledger),
        5,
        "only the five counts of `later` remain"
    );
    assert_eq!(ledger.live_counts(0).await.unwrap().total(0), 1);
    assert_eq!(ledger.x509_records(0).await.unwrap().len(), 1);
    sweep_expired(&ledger, 200).await;
    assert!(ledger.x509_records(0).await.unwrap().is_empty());
}

/// Writes a ledger file as schema `version` (1 or 2) wrote it: JSON records and events.
fn write_old_ledger(path: &Path, version: u64, records: &[CredentialRecord]) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut credentials = txn.open_table(CREDENTIALS).unwrap();
        let mut expiry = txn.open_table(EXPIRY).unwrap();
        let mut issued = txn.open_table(ISSUED).unwrap();
        let mut events = txn.open_table(EVENTS).unwrap();
        for (i, record) in records.iter().enumerate() {
            let id = record.credential_id.as_str();
            let bytes = serde_json::to_vec(record).unwrap();
            credentials.insert(id, bytes.as_slice()).unwrap();
            expiry.insert((record.expires_at, id), ()).unwrap();
            if version >= 2 {
                issued.insert((record.issued_at, id), ()).unwrap();
            }
            let event = Event {
                sequence: i as u64 + 1,
                kind: crate::EventKind::Issued,
                at: record.issued_at,
                credential: Some(record.clone()),
                revocation: None,
                committed: None,
            };
            let bytes = serde_json::to_vec(&event).unwrap();
            events.insert(event.sequence, bytes.as_slice()).unwrap();
        }
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(SCHEMA_VERSION_KEY, version).unwrap();
        meta.insert(LAST_SEQUENCE_KEY, records.len() as u64)
            .unwrap();
    }
    txn.commit().unwrap();
}

async fn check_upgrade(version: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = ledger_path(&dir);
    let records = vec![sample("a", 960), x509("b", 2000), sample("c", 3000)];
    write_old_ledger(&path, version, &records);
    let ledger = RedbLedger::open(&path, RedbOptions::default()).unwrap();
    let counts = ledger.live_counts(0).await.unwrap();
    assert_eq!(counts.total(0), 3);
    assert_eq!(
        counts.count(Selector::Workload, "spiffe://example.org/w", 1000),
        1
    );
    assert_eq!(ledger.x509_records(0).await.unwrap(), vec![x509("b", 2000)]);
    for record in &records {
        assert_eq!(
            ledger.get(&record.credential_id).await.unwrap().as_ref(),
            Some(record)
        );
    }
    let events = ledger.events_since(0, 10).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e.credential.clone())
            .collect::<Vec<_>>(),
        records.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    assert_eq!(first_page(&ledger).await.len(), 3);
    assert_eq!(ledger.record(plain(sample("d", 4000))).await.unwrap(), 4);
    drop(ledger);
    let reopened = RedbLedger::open(&path, RedbOptions::default()).unwrap();
    assert_eq!(reopened.live_counts(0).await.unwrap().total(0), 4);
}

#[tokio::test]
async fn upgrades_a_version_2_ledger() {
    check_upgrade(2).await;
}

#[tokio::test]
async fn upgrades_a_version_1_ledger() {
    check_upgrade(1).await;
}

#[tokio::test]
async fn refuses_a_schema_version_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let path = ledger_path(&dir);
    write_old_ledger(&path, 99, &[sample("a", 1000)]);
    let err = RedbLedger::open(&path, RedbOptions::default()).unwrap_err();
    assert!(
        matches!(err, LedgerError::Corrupt(ref m) if m.contains("99")),
        "{err}"
    );
}

#[tokio::test]
async fn an_event_reads_its_credential_from_the_table_and_none_once_swept() {
    let (_dir, ledger) = temp_ledger();
    let mut late = sample("late", 1000);
    late.issued_at = 900;
    ledger.record(plain(late.clone())).await.unwrap();
    ledger.record(plain(sample("early", 100))).await.unwrap();
    let events = ledger.events_since(0, 10).await.unwrap();
    assert_eq!(events[1].credential, Some(sample("early", 100)));
    sweep_expired(&ledger, 200).await;
    let events = ledger.events_since(0, 10).await.unwrap();
    let resolved: Vec<_> = events
        .iter()
        .map(|e| (e.sequence, e.kind, e.credential.clone()))
        .collect();
    assert_eq!(
        resolved,
        vec![
            (1, crate::EventKind::Issued, Some(late)),
            (2, crate::EventKind::Issued, None),
        ]
    );
}

#[tokio::test]
async fn an_upgraded_ledger_keeps_records_and_events_compact() {
    let dir = tempfile::tempdir().unwrap();
    let path = ledger_path(&dir);
    write_old_ledger(&path, 2, &[sample("a", 1000)]);
    let ledger = RedbLedger::open(&path, RedbOptions::default()).unwrap();
    let txn = ledger.db.begin_read().unwrap();
    let record = txn
        .open_table(CREDENTIALS)
        .unwrap()
        .get("a")
        .unwrap()
        .unwrap();
    assert_ne!(record.value().first(), Some(&b'{'), "no longer JSON");
    let event = txn.open_table(EVENTS).unwrap().get(1).unwrap().unwrap();
    assert_eq!(event.value().len(), 1 + 8 + 1, "kind, time and the id `a`");
}

#[tokio::test]
async fn a_version_3_ledger_keeps_refusing_the_tokens_its_replay_guards_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = ledger_path(&dir);
    {
        // As schema 3 kept them: a guard in the table keyed by the guard alone (here not
        // mirrored in `replay_expiry`, so only moving it can keep it).
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LEGACY_REPLAY)
            .unwrap()
            .insert("token|dest|purpose", 500)
            .unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_VERSION_KEY, 3)
            .unwrap();
        txn.commit().unwrap();
    }
    let ledger = RedbLedger::open(&path, RedbOptions::default()).unwrap();
    let guarded = |id: &str| crate::RecordParams {
        credential: sample(id, 1000),
        replay_guard: Some(crate::ReplayGuard {
            key: "token|dest|purpose".into(),
            expires_at: 500,
        }),
    };
    let again = ledger.record(guarded("after-upgrade")).await;
    assert!(matches!(again, Err(LedgerError::Replay)), "{again:?}");
    let guards = ledger.replay_guards().await.unwrap();
    assert_eq!(guards.len(), 1, "{guards:?}");
    let txn = ledger.db.begin_read().unwrap();
    let version = txn
        .open_table(META)
        .unwrap()
        .get(SCHEMA_VERSION_KEY)
        .unwrap();
    assert_eq!(version.map(|v| v.value()), Some(SCHEMA_VERSION));
    assert!(
        txn.open_table(LEGACY_REPLAY).is_err(),
        "the old table is deleted"
    );
    drop(txn);
    sweep_expired(&ledger, 501).await;
    ledger.record(guarded("after-expiry")).await.unwrap();
}
