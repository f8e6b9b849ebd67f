//! The `ledger-writer` thread: takes the first queued message, drains what else is queued (up
//! to `max_batch`), applies the whole batch in one write transaction, makes it durable, and
//! only then answers every waiter and publishes the batch's events, in sequence order.
//!
//! Durable means: committed to redb without an fsync and its frame written and `fdatasync`ed to
//! the [`journal`](super::journal); or, at a checkpoint (every [`RedbOptions::checkpoint_every`],
//! when the journal holds [`RedbOptions::journal_bytes`], at close, and whenever the journal
//! cannot be written), committed to redb with an fsync, after which the journal starts again.
//! Without the journal (`RedbOptions::journal` false) every batch is a checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use ::redb::{Database, Durability};
use tokio::sync::broadcast;

use super::apply::apply;
use super::job::{self, Job, WriterMsg};
use super::journal::{Frame, Journal};
use super::{JOURNAL_FRAME_KEY, RedbOptions, StorageContext};
use crate::{Event, LedgerError};

/// The writer thread's state.
pub(super) struct Writer {
    pub db: Arc<Database>,
    pub rx: mpsc::Receiver<WriterMsg>,
    pub options: RedbOptions,
    pub commits: Arc<AtomicU64>,
    pub events: broadcast::Sender<Event>,
    pub last_sequence: u64,
    /// Size of the last batch committed: a batch of more than one says writes are arriving
    /// concurrently, so the next batch lingers for more (see [`RedbOptions::linger`]).
    pub last_batch: usize,
    /// The journal, when the ledger is durable and journaled.
    pub journal: Option<Journal>,
    /// The number of the last batch committed (stored with it as `journal_frame`).
    pub frame: u64,
    /// When redb was last committed with an fsync.
    pub checkpointed: Instant,
    /// The journal encoding of the batch being committed, kept to reuse its allocation.
    pub payload: Vec<u8>,
}

impl Writer {
    /// Commits batches until a `Close` is committed or every sender is dropped, then
    /// checkpoints, so a closed ledger is whole in its redb file.
    pub fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let (jobs, closing) = self.drain(first);
            self.commit_batch(jobs, closing);
            if closing {
                break;
            }
        }
        let journaled = self.journal.as_ref().is_some_and(|j| j.written() > 0);
        if journaled && let Err(err) = self.checkpoint() {
            tracing::error!(error = %err, "checkpointing the ledger at close failed");
        }
        tracing::debug!("ledger writer stopped");
    }

    /// Returns `first` and what else is queued, up to `max_batch`, and whether a `Close` is
    /// among them. While writes arrive concurrently (the last batch held more than one), first
    /// sleeps the linger once, so the batch gathers what arrives meanwhile without a wake-up
    /// (and a context switch) per message.
    fn drain(&self, first: WriterMsg) -> (Vec<Job>, bool) {
        let mut closing = matches!(first, WriterMsg::Close(_));
        if !closing && self.last_batch > 1 && !self.options.linger.is_zero() {
            std::thread::sleep(self.options.linger);
        }
        let mut jobs = vec![Job::from(first)];
        while !closing && jobs.len() < self.options.max_batch {
            let Ok(msg) = self.rx.try_recv() else { break };
            closing = matches!(msg, WriterMsg::Close(_));
            jobs.push(Job::from(msg));
        }
        (jobs, closing)
    }

    /// Applies and commits `jobs` in one transaction (a checkpoint when `closing`), then
    /// answers each and publishes the events; on failure answers `Storage`, and forgets the
    /// batch's sequence numbers unless redb committed it and only making it durable failed.
    fn commit_batch(&mut self, mut jobs: Vec<Job>, closing: bool) {
        let started = Instant::now();
        let size = jobs.len();
        self.last_batch = size;
        match self.apply_and_commit(&mut jobs, closing) {
            Ok((last_sequence, emitted)) => {
                let committed = Instant::now();
                let metrics = &self.options.metrics;
                metrics
                    .commit_seconds
                    .observe(committed.duration_since(started).as_secs_f64());
                metrics.batch_size.observe(size as f64);
                metrics
                    .event_sequence
                    .set(i64::try_from(last_sequence).unwrap_or(i64::MAX));
                self.last_sequence = last_sequence;
                self.commits.fetch_add(1, Ordering::Relaxed);
                jobs.into_iter().for_each(Job::answer);
                for mut event in emitted {
                    event.committed = Some(committed);
                    let _ = self.events.send(event); // no subscriber is not an error
                }
            }
            Err(err) => {
                tracing::error!(error = %err, size = jobs.len(), "ledger batch failed");
                let message = match err {
                    LedgerError::Storage(message) => message,
                    other => other.to_string(),
                };
                jobs.into_iter().for_each(|job| job.fail(&message));
            }
        }
    }

    /// Commits `jobs` as the next frame and makes them durable: through the journal, or as a
    /// checkpoint when one is due (or `closing`). Returns the last sequence and the events.
    fn apply_and_commit(
        &mut self,
        jobs: &mut [Job],
        closing: bool,
    ) -> Result<(u64, Vec<Event>), LedgerError> {
        let frame = self.frame + 1;
        let checkpoint = closing || self.checkpoint_due();
        let mut txn = self.db.begin_write().ctx("starting a ledger write")?;
        let durable_commit = self.options.durable && checkpoint;
        let durability = match durable_commit {
            true => Durability::Immediate,
            false => Durability::None,
        };
        txn.set_durability(durability)
            .ctx("setting the ledger durability")?;
        let result = apply(&txn, jobs, self.last_sequence, frame)?;
        let checkpointing = durable_commit.then(Instant::now);
        txn.commit().ctx("committing the ledger batch")?;
        if let Some(started) = checkpointing {
            self.observe_checkpoint(started);
        }
        // Committed, if not yet durable: later batches follow it, even if making it durable
        // fails below and it is answered `Storage` (like a crash after a commit, before the
        // reply).
        self.frame = frame;
        self.last_sequence = result.0;
        if checkpoint {
            self.restart_journal();
        } else if self.journal.is_some() {
            self.journal_batch(jobs, frame)?;
        }
        Ok(result)
    }

    /// Returns whether the next batch should be committed with an fsync: always when durable
    /// without a journal, else when the last checkpoint is [`RedbOptions::checkpoint_every`]
    /// old or the journal holds [`RedbOptions::journal_bytes`].
    fn checkpoint_due(&self) -> bool {
        match &self.journal {
            None => self.options.durable,
            Some(journal) => {
                journal.written() >= self.options.journal_bytes
                    || self.checkpointed.elapsed() >= self.options.checkpoint_every
            }
        }
    }

    /// Writes the committed batch `frame` to the journal. When that fails, checkpoints instead
    /// (the batch is then durable in redb) and fails only if that fails too.
    fn journal_batch(&mut self, jobs: &[Job], frame: u64) -> Result<(), LedgerError> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(());
        };
        self.payload.clear();
        let written = job::encode(jobs, &mut self.payload)
            .and_then(|()| journal.append(frame, &self.payload));
        if let Err(err) = written {
            tracing::warn!(error = %err, "the ledger journal failed: checkpointing instead");
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Commits redb with an fsync (making every earlier commit durable) and restarts the
    /// journal. Fails with `Storage` when the commit fails.
    fn checkpoint(&mut self) -> Result<(), LedgerError> {
        let started = Instant::now();
        checkpoint(&self.db)?;
        self.observe_checkpoint(started);
        self.restart_journal();
        Ok(())
    }

    /// Records a checkpoint that began at `started` and has just ended.
    fn observe_checkpoint(&self, started: Instant) {
        self.options
            .metrics
            .checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    fn restart_journal(&mut self) {
        self.checkpointed = Instant::now();
        if let Some(journal) = self.journal.as_mut() {
            journal.restart();
        }
    }
}

/// Commits an empty redb transaction with an fsync, which makes every commit before it durable.
fn checkpoint(db: &Database) -> Result<(), LedgerError> {
    const OP: &str = "checkpointing the ledger";
    let mut txn = db.begin_write().ctx(OP)?;
    txn.set_durability(Durability::Immediate).ctx(OP)?;
    txn.commit().ctx(OP)
}

/// What [`replay`] restored.
pub(super) struct Replayed {
    /// The last event sequence after the replay.
    pub last_sequence: u64,
    /// The number of the last frame the ledger holds.
    pub frame: u64,
}

/// Returns the number of the last journal frame the ledger at `db` holds (0 for none).
pub(super) fn stored_frame(db: &Database) -> Result<u64, LedgerError> {
    super::read_meta(db, JOURNAL_FRAME_KEY, "reading the journal frame")
}

/// Applies `frames` (those after the ledger's stored frame, in order) to `db` as their batches
/// were applied before a crash, then checkpoints. Returns the sequence and frame reached. Fails
/// with `Corrupt` on an undecodable frame and `Storage` when a commit fails; nothing is lost
/// then, as the journal is untouched until the next open succeeds.
pub(super) fn replay(
    db: &Database,
    frames: Vec<Frame>,
    mut last_sequence: u64,
    mut frame: u64,
) -> Result<Replayed, LedgerError> {
    const OP: &str = "replaying the ledger journal";
    if frames.is_empty() {
        return Ok(Replayed {
            last_sequence,
            frame,
        });
    }
    let count = frames.len();
    for f in frames {
        let mut jobs = job::decode(&f.payload)
            .map_err(|e| LedgerError::Corrupt(format!("ledger journal frame {}: {e}", f.number)))?;
        let mut txn = db.begin_write().ctx(OP)?;
        txn.set_durability(Durability::None).ctx(OP)?;
        (last_sequence, _) = apply(&txn, &mut jobs, last_sequence, f.number)?;
        txn.commit().ctx(OP)?;
        frame = f.number;
    }
    checkpoint(db)?;
    tracing::info!(
        frames = count,
        frame,
        last_sequence,
        "ledger journal replayed"
    );
    Ok(Replayed {
        last_sequence,
        frame,
    })
}
