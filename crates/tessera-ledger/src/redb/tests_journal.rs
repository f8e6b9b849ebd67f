//! Tests of the journal as a crash sees it: the redb file and its journal are copied while the
//! ledger is open (the on-disk redb header is the last checkpoint's, as after a kill), and the
//! copy is opened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::test_support::{ledger_path, plain, rule, sample, sweep_expired};
use super::*;
use crate::test_records::guarded;
use crate::{EventKind, Selector};

/// Opens a ledger in `dir` that checkpoints only at close (or after `journal_bytes`).
fn open_journaled(dir: &tempfile::TempDir, journal_bytes: u64) -> RedbLedger {
    let options = RedbOptions {
        checkpoint_every: Duration::from_secs(3600),
        journal_bytes,
        ..RedbOptions::default()
    };
    RedbLedger::open(&ledger_path(dir), options).unwrap()
}

/// Copies the ledger file of `from`, and its journal when `with_journal`, into a new directory:
/// what a crash at this moment leaves on disk.
fn crash_image(from: &tempfile::TempDir, with_journal: bool) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    std::fs::copy(ledger_path(from), ledger_path(&to)).unwrap();
    if with_journal {
        let journal = journal::path_of(&ledger_path(from));
        std::fs::copy(journal, journal::path_of(&ledger_path(&to))).unwrap();
    }
    to
}

async fn ids(ledger: &RedbLedger) -> Vec<String> {
    let mut ids: Vec<String> = ledger
        .scan(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.credential_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn answered_writes_since_the_last_checkpoint_come_back_from_the_journal_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_journaled(&dir, 16 << 20);
    ledger.record(plain(sample("a", 1_000))).await.unwrap();
    ledger
        .record(guarded(sample("b", 1_000), "jti-1"))
        .await
        .unwrap();
    let revoked = ledger
        .add_rule(rule(
            "r1",
            Selector::Workload,
            "spiffe://example.org/w",
            950,
        ))
        .await
        .unwrap();
    assert_eq!(ledger.expire(1_001, 10).await.unwrap(), 2);

    let bare = RedbLedger::open(
        &ledger_path(&crash_image(&dir, false)),
        RedbOptions::default(),
    );
    let bare = bare.unwrap();
    assert!(
        ids(&bare).await.is_empty(),
        "redb alone holds no batch since the checkpoint"
    );

    let image = crash_image(&dir, true);
    let restored = RedbLedger::open(&ledger_path(&image), RedbOptions::default()).unwrap();
    assert_eq!(ids(&restored).await, ["a", "b"]);
    assert_eq!(restored.rules().await.unwrap(), vec![revoked]);
    assert_eq!(restored.last_sequence().await.unwrap(), 5);
    let replay = restored.record(guarded(sample("c", 1_000), "jti-1")).await;
    assert!(matches!(replay, Err(LedgerError::Replay)), "{replay:?}");
    assert_eq!(restored.record(plain(sample("d", 2_000))).await.unwrap(), 6);
    let kinds: Vec<EventKind> = restored
        .events_since(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    use EventKind::{Expired, Issued, Revoked};
    assert_eq!(kinds, [Issued, Issued, Revoked, Expired, Expired, Issued]);
}

#[tokio::test]
async fn a_replayed_journal_is_not_replayed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_journaled(&dir, 16 << 20);
    ledger.record(plain(sample("a", 1_000))).await.unwrap();
    let image = crash_image(&dir, true);
    for _ in 0..2 {
        let reopened = RedbLedger::open(&ledger_path(&image), RedbOptions::default()).unwrap();
        assert_eq!(ids(&reopened).await, ["a"]);
        assert_eq!(reopened.last_sequence().await.unwrap(), 1);
        let counts = reopened.live_counts(0).await.unwrap();
        assert_eq!(
            counts.count(Selector::Workload, "spiffe://example.org/w", 0),
            1
        );
    }
}

#[tokio::test]
async fn a_full_journal_makes_the_next_batch_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_journaled(&dir, 1);
    ledger.record(plain(sample("a", 1_000))).await.unwrap();
    ledger.record(plain(sample("b", 1_000))).await.unwrap();
    ledger.record(plain(sample("c", 1_000))).await.unwrap();
    let bare = crash_image(&dir, false);
    let bare = RedbLedger::open(&ledger_path(&bare), RedbOptions::default()).unwrap();
    assert_eq!(
        ids(&bare).await,
        ["a", "b"],
        "b was a checkpoint, c is journaled"
    );
}

#[tokio::test]
async fn a_closed_ledger_is_whole_without_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_journaled(&dir, 16 << 20);
    ledger.record(plain(sample("a", 1_000))).await.unwrap();
    assert_eq!(sweep_expired(&ledger, 0).await, 0);
    ledger.close().await.unwrap();
    drop(ledger);
    std::fs::remove_file(journal::path_of(&ledger_path(&dir))).unwrap();
    let reopened = RedbLedger::open(&ledger_path(&dir), RedbOptions::default()).unwrap();
    assert_eq!(ids(&reopened).await, ["a"]);
}

#[tokio::test]
async fn a_journal_left_by_a_crash_is_replayed_even_when_the_journal_is_now_off() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_journaled(&dir, 16 << 20);
    ledger.record(plain(sample("a", 1_000))).await.unwrap();
    let image = crash_image(&dir, true);
    let options = RedbOptions {
        journal: false,
        ..RedbOptions::default()
    };
    let reopened = RedbLedger::open(&ledger_path(&image), options).unwrap();
    assert_eq!(ids(&reopened).await, ["a"]);
    reopened.record(plain(sample("b", 1_000))).await.unwrap();
    let bare = crash_image(&image, false);
    let bare = RedbLedger::open(&ledger_path(&bare), RedbOptions::default()).unwrap();
    assert_eq!(
        ids(&bare).await,
        ["a", "b"],
        "without the journal every batch is fsynced"
    );
}

#[tokio::test]
async fn an_undecodable_frame_stops_the_open_and_names_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = ledger_path(&dir);
    let ledger = open_journaled(&dir, 16 << 20);
    ledger.record(plain(sample("a", 1_000))).await.unwrap();
    ledger.close().await.unwrap();
    drop(ledger);
    let applied = writer::stored_frame(&Database::open(&path).unwrap()).unwrap();
    let (mut journal, _) = Journal::open(&journal::path_of(&path), applied).unwrap();
    journal.append(applied + 1, &[9]).unwrap();
    let err = RedbLedger::open(&path, RedbOptions::default())
        .expect_err("a frame that is not a batch must stop the open");
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err:?}");
    let frame = format!("ledger journal frame {}", applied + 1);
    assert!(err.to_string().contains(&frame), "{err}");
}

#[tokio::test]
async fn when_the_journal_cannot_be_written_the_batch_is_checkpointed_before_it_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = ledger_path(&dir);
    let db = Arc::new(Database::create(&path).unwrap());
    let last_sequence = schema::init_schema(&db).unwrap();
    let journal_path = journal::path_of(&path);
    std::fs::write(&journal_path, b"").unwrap();
    let (tx, rx) = mpsc::channel();
    let writer = Writer {
        db: Arc::clone(&db),
        rx,
        options: RedbOptions {
            checkpoint_every: Duration::from_secs(3600),
            ..RedbOptions::default()
        },
        commits: Arc::new(AtomicU64::new(0)),
        events: broadcast::channel(16).0,
        last_sequence,
        last_batch: 0,
        journal: Some(Journal::unwritable(&journal_path)),
        frame: 0,
        checkpointed: std::time::Instant::now(),
        payload: Vec::new(),
    };
    let thread = std::thread::spawn(move || writer.run());
    let record = sample("a", 1_000);
    let pending = job::PendingRecord {
        bytes: codec::encode_record(&record),
        record,
        replay: None,
    };
    let (reply, answer) = oneshot::channel();
    tx.send(WriterMsg::Record(Box::new(pending), reply))
        .unwrap();
    assert_eq!(answer.await.unwrap().unwrap(), 1);

    let bare = crash_image(&dir, false);
    let bare = RedbLedger::open(&ledger_path(&bare), RedbOptions::default()).unwrap();
    assert_eq!(
        ids(&bare).await,
        ["a"],
        "answered, so durable in redb itself"
    );
    drop(tx);
    thread.join().unwrap();
}

/// Returns how many observations `histogram` holds.
fn observations(histogram: &prometheus_client::metrics::histogram::Histogram) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("h", "", histogram.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("h_count "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn each_checkpoint_is_timed_and_a_journaled_batch_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = crate::LedgerMetrics::default();
    let options = RedbOptions {
        checkpoint_every: Duration::from_secs(3600),
        journal_bytes: 1,
        metrics: metrics.clone(),
        ..RedbOptions::default()
    };
    let ledger = RedbLedger::open(&ledger_path(&dir), options).unwrap();
    ledger.record(plain(sample("a", 1_000))).await.unwrap();
    assert_eq!(
        observations(&metrics.checkpoint_seconds),
        0,
        "a is journaled"
    );
    ledger.record(plain(sample("b", 1_000))).await.unwrap();
    ledger.record(plain(sample("c", 1_000))).await.unwrap();
    assert_eq!(observations(&metrics.checkpoint_seconds), 1, "b was one");
    assert_eq!(observations(&metrics.commit_seconds), 3);
    ledger.close().await.unwrap();
    assert_eq!(
        observations(&metrics.checkpoint_seconds),
        2,
        "and the close"
    );
}
