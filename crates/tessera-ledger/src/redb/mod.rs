//! The redb ledger: one database file and its [`journal`], one writer thread ([`writer`]),
//! group commit.
//!
//! Every write — records, rules, expiries, sweeps — is a message to the `ledger-writer`
//! thread, which commits whole batches (each made durable by one journal `fdatasync`, or by an
//! fsynced redb commit at a checkpoint) and only then answers and publishes the batch's events.
//! Reads run on tokio's blocking pool.

mod acks;
mod anchors;
mod apply;
mod codec;
mod export;
mod job;
mod journal;
mod reads;
mod schema;
mod signals;
mod usage;
mod writer;

use crate::LedgerMetrics;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ::redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};

use self::job::{PendingRecord, Reply, WriterMsg};
use self::journal::Journal;
use self::writer::Writer;
use super::{
    CredentialPage, CredentialRecord, Event, Ledger, LedgerError, ListParams, LiveCounts, NewRule,
    RecordParams, RevocationRule, StatusScan, SweepParams,
};

/// Credential id → [`codec::encode_record`] of its [`CredentialRecord`].
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
/// (expires_at, credential id) → (), ordered for sweeping and expiry events.
const EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("expiry");
/// (issued_at, credential id) → (), for listing newest first.
const ISSUED: TableDefinition<(i64, &str), ()> = TableDefinition::new("issued");
/// Replay guard key → expires_at: schema 3 and before, moved into [`REPLAY_EXPIRY`] and
/// deleted by the upgrade to 4.
const LEGACY_REPLAY: TableDefinition<&str, i64> = TableDefinition::new("replay");
/// (expires_at, replay guard key) → (): the replay guards, found by both halves of the key
/// (the token's `exp` plus the leeway, and its hash; see [`crate::ReplayGuard`]) and swept in
/// order. Guards arrive roughly in order of expiry, so a batch's guards land in the table's
/// last leaf; keyed by the hash alone (schema 3), each guard dirtied a random leaf, which
/// doubled the file's growth and the bytes each checkpoint wrote under CI token exchange.
const REPLAY_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("replay_expiry");
/// Revocation id → serde_json of [`RevocationRule`].
const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("rules");
/// Sequence → [`codec`] encoding of the event (`issued`/`expired` name their credential).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// (expires_at, selector code, value) → how many credentials with that value expire then.
const LIVE_COUNTS: TableDefinition<(i64, u8, &str), u64> = TableDefinition::new("live_counts");
/// (expires_at, credential id) → () of X.509 credentials only (restored for the CRL).
const X509_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("x509_expiry");
/// (expires_at, credential id) → () of credentials with a status list entry only (status lists
/// are rebuilt from them at start). Added without a schema version: files from before hold no
/// such record, so the table starts empty.
const STATUS_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("status_expiry");
/// Ledger metadata.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_VERSION_KEY: &str = "schema_version";
const LAST_SEQUENCE_KEY: &str = "last_sequence";
const EXPIRED_CURSOR_KEY: &str = "expired_cursor";
/// The number of the last [`journal`] frame (writer batch) the file holds.
const JOURNAL_FRAME_KEY: &str = "journal_frame";
/// [`EXPIRED_CURSOR_KEY`] → the id of the last record given its `expired` event at the
/// cursor's second when a limited [`Ledger::expire`] stopped there; empty (or absent, in files
/// from before) when every record before the cursor has its event.
const EXPIRED_CURSOR_ID: TableDefinition<&str, &str> = TableDefinition::new("expired_cursor_id");
const SCHEMA_VERSION: u64 = 4;
/// Events a live subscriber may fall behind by before it is told it lagged.
const EVENT_BUFFER: usize = 16 * 1024;

/// Tuning of [`RedbLedger`].
#[derive(Clone, Debug)]
pub struct RedbOptions {
    /// Most writer messages committed in one transaction. Default 4096.
    pub max_batch: usize,
    /// Make every batch durable before answering it (`true`, the default). `false` uses redb
    /// `Durability::None` and no journal, which breaks the ledger's durability guarantee: for
    /// benchmarks only.
    pub durable: bool,
    /// Make batches durable through the [`journal`] (`true`, the default), checkpointing redb
    /// now and then; `false` fsyncs every redb commit instead.
    pub journal: bool,
    /// Longest time between checkpoints while journaling. Default 250 ms: a checkpoint holds
    /// the writer for redb's durable commit (3–4 ms at 1,500 mints/s on the bench machine, about
    /// twice that after 1 s), so short ones keep the tail of mint latency short.
    pub checkpoint_every: std::time::Duration,
    /// Journal bytes after which the next batch is a checkpoint. Default 16 MiB.
    pub journal_bytes: u64,
    /// Bytes of redb page cache (`[ledger] cache_size`). Default 64 MiB.
    pub cache_size: usize,
    /// Group commit window: while writes arrive concurrently (the last batch held more than
    /// one), the writer, woken by a write, sleeps this long before taking what is queued, so
    /// that one commit and one fsync carry more credentials (and the writer is not woken once
    /// per write). After a batch of one, nothing waits. Default 1 ms.
    pub linger: std::time::Duration,
    /// Where commit latency, batch sizes and the last sequence are recorded.
    pub metrics: LedgerMetrics,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            max_batch: 4096,
            durable: true,
            journal: true,
            checkpoint_every: std::time::Duration::from_millis(250),
            journal_bytes: 16 << 20,
            cache_size: 64 << 20,
            linger: std::time::Duration::from_millis(1),
            metrics: LedgerMetrics::default(),
        }
    }
}

/// `map_err` to [`LedgerError::Storage`] naming the operation.
trait StorageContext<T> {
    fn ctx(self, operation: &'static str) -> Result<T, LedgerError>;
}

impl<T, E: fmt::Display> StorageContext<T> for Result<T, E> {
    fn ctx(self, operation: &'static str) -> Result<T, LedgerError> {
        self.map_err(|e| LedgerError::Storage(format!("{operation}: {e}")))
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(bytes).map_err(|e| LedgerError::Corrupt(format!("{what}: {e}")))
}

/// A [`Ledger`] kept in one redb file, written by a dedicated `ledger-writer` thread.
pub struct RedbLedger {
    path: PathBuf,
    db: Arc<Database>,
    /// `None` only while dropping.
    tx: Option<mpsc::Sender<WriterMsg>>,
    /// `None` only while dropping.
    writer: Option<JoinHandle<()>>,
    closed: AtomicBool,
    commits: Arc<AtomicU64>,
    events: broadcast::Sender<Event>,
    /// Whether commits are fsynced ([`RedbOptions::durable`]).
    durable: bool,
}

impl RedbLedger {
    /// Opens the ledger at `path`, creating parent directories, the file and the tables if
    /// missing (and upgrading a version 1 to 3 file), replays its journal (what was made
    /// durable after the last checkpoint), and starts the writer thread. Fails with `Storage`
    /// if a file cannot be opened (including when another process holds the ledger), `Corrupt`
    /// if its schema version is unknown or its journal misses frames.
    pub fn open(path: &Path, options: RedbOptions) -> Result<RedbLedger, LedgerError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).ctx("creating the ledger directory")?;
        }
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(path)
            .ctx("opening the ledger database")?;
        let db = Arc::new(db);
        let last_sequence = schema::init_schema(&db)?;
        let (journal, replayed) = open_journal(&db, path, &options, last_sequence)?;
        let last_sequence = replayed.last_sequence;
        let commits = Arc::new(AtomicU64::new(0));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (tx, rx) = mpsc::channel();
        let durable = options.durable;
        let writer = Writer {
            db: Arc::clone(&db),
            rx,
            options,
            commits: Arc::clone(&commits),
            events: events.clone(),
            last_sequence,
            last_batch: 0,
            journal,
            frame: replayed.frame,
            checkpointed: std::time::Instant::now(),
            payload: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("ledger-writer".to_owned())
            .spawn(move || writer.run())
            .ctx("starting the ledger writer thread")?;
        Ok(RedbLedger {
            path: path.to_owned(),
            db,
            tx: Some(tx),
            writer: Some(handle),
            closed: AtomicBool::new(false),
            commits,
            events,
            durable,
        })
    }

    /// Returns how many write transactions the writer thread has committed (one per batch).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Sends a message to the writer and returns its answer. Fails with `Closed` if the ledger
    /// is closed or the writer stopped before answering.
    async fn request<T>(&self, msg: impl FnOnce(Reply<T>) -> WriterMsg) -> Result<T, LedgerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LedgerError::Closed);
        }
        let tx = self.tx.as_ref().ok_or(LedgerError::Closed)?;
        let (reply, answer) = oneshot::channel();
        tx.send(msg(reply)).map_err(|_| LedgerError::Closed)?;
        answer.await.map_err(|_| LedgerError::Closed)?
    }

    /// Runs `read` with the database on tokio's blocking pool and returns its result.
    async fn read<T, F>(&self, read: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, LedgerError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || read(&db))
            .await
            .ctx("running a ledger read")?
    }
}

/// Opens the journal of the ledger at `path` and replays what it holds after the file's last
/// checkpoint; returns the journal when `options` journal (a journal left by a run that did is
/// replayed whatever the options are now) and what the ledger reached. Fails as
/// [`Journal::open`] and [`writer::replay`] do.
fn open_journal(
    db: &Database,
    path: &Path,
    options: &RedbOptions,
    last_sequence: u64,
) -> Result<(Option<Journal>, writer::Replayed), LedgerError> {
    let frame = writer::stored_frame(db)?;
    let journal_path = journal::path_of(path);
    let journaled = options.durable && options.journal;
    if !journaled && !journal_path.exists() {
        return Ok((
            None,
            writer::Replayed {
                last_sequence,
                frame,
            },
        ));
    }
    let (journal, frames) = Journal::open(&journal_path, frame)?;
    let replayed = writer::replay(db, frames, last_sequence, frame)?;
    Ok((journaled.then_some(journal), replayed))
}

/// Returns the `meta` value under `key` as committed (0 when absent). Fails with `Storage`
/// naming `operation`.
fn read_meta(db: &Database, key: &str, operation: &'static str) -> Result<u64, LedgerError> {
    let txn = db.begin_read().ctx(operation)?;
    let meta = txn.open_table(META).ctx(operation)?;
    Ok(meta.get(key).ctx(operation)?.map_or(0, |v| v.value()))
}

/// Returns [`Ledger::newest_issue_ms`]: the latest issue millisecond among the ids of the
/// newest issue second (ids within one second do not sort by time as strings).
fn newest_issue_ms(db: &Database) -> Result<Option<i64>, LedgerError> {
    const OP: &str = "reading the newest issue time";
    let txn = db.begin_read().ctx(OP)?;
    let issued = txn.open_table(ISSUED).ctx(OP)?;
    let Some((last, _)) = issued.last().ctx(OP)? else {
        return Ok(None);
    };
    let second = last.value().0;
    let mut newest = None;
    for entry in issued.range((second, "")..).ctx(OP)? {
        let (key, _) = entry.ctx(OP)?;
        let ms = tessera_core::domain::id::issued_ms(key.value().1, second);
        newest = newest.max(Some(ms));
    }
    Ok(newest)
}

/// Reads one page of [`Ledger::list`].
fn list_page(db: &Database, p: &ListParams) -> Result<CredentialPage, LedgerError> {
    const OP: &str = "listing credentials";
    let txn = db.begin_read().ctx(OP)?;
    let issued = txn.open_table(ISSUED).ctx(OP)?;
    let credentials = txn.open_table(CREDENTIALS).ctx(OP)?;
    let bad = || LedgerError::BadRequest("page_token is not one this server returned".into());
    let upper = match p.page_token.as_str() {
        "" => None,
        token => {
            let (at, id) = token.split_once(':').ok_or_else(bad)?;
            Some((at.parse::<i64>().map_err(|_| bad())?, id.to_owned()))
        }
    };
    let range = match &upper {
        Some((at, id)) => issued.range(..(*at, id.as_str())).ctx(OP)?,
        None => issued.range::<(i64, &str)>(..).ctx(OP)?,
    };
    let mut page = CredentialPage::default();
    for (scanned, entry) in range.rev().enumerate() {
        let (key, _) = entry.ctx(OP)?;
        let (at, id) = key.value();
        if page.credentials.len() == p.page_size || scanned == p.scan_limit {
            page.next_page_token = resume_token(at, id);
            break;
        }
        if let Some(bytes) = credentials.get(id).ctx(OP)? {
            let record = codec::decode_record(id, bytes.value())?;
            if p.matches(&record) {
                page.credentials.push(record);
            }
        }
    }
    Ok(page)
}

/// Returns a token whose exclusive upper bound still includes `(at, id)`.
fn resume_token(at: i64, id: &str) -> String {
    // Keys sort by (at, id); appending a NUL makes the smallest string greater than `id`.
    format!("{at}:{id}\u{0}")
}

#[async_trait]
impl Ledger for RedbLedger {
    async fn record(&self, params: RecordParams) -> Result<u64, LedgerError> {
        let bytes = codec::encode_record(&params.credential);
        let pending = PendingRecord {
            record: params.credential,
            bytes,
            replay: params.replay_guard.map(|g| (g.key, g.expires_at)),
        };
        self.request(|reply| WriterMsg::Record(Box::new(pending), reply))
            .await
    }

    async fn add_rule(&self, rule: NewRule) -> Result<RevocationRule, LedgerError> {
        self.request(|reply| WriterMsg::AddRule(Box::new(rule), reply))
            .await
    }

    async fn rules(&self) -> Result<Vec<RevocationRule>, LedgerError> {
        const OP: &str = "reading rules";
        let mut rules: Vec<RevocationRule> = self
            .read(|db| {
                let txn = db.begin_read().ctx(OP)?;
                let table = txn.open_table(RULES).ctx(OP)?;
                let mut out = Vec::new();
                for entry in table.iter().ctx(OP)? {
                    let (_, bytes) = entry.ctx(OP)?;
                    out.push(decode("rule", bytes.value())?);
                }
                Ok(out)
            })
            .await?;
        rules.sort_by_key(|r| r.sequence);
        Ok(rules)
    }

    async fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>, LedgerError> {
        const OP: &str = "reading events";
        self.read(move |db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(EVENTS).ctx(OP)?;
            let credentials = txn.open_table(CREDENTIALS).ctx(OP)?;
            let mut out = Vec::new();
            for entry in table.range(since.saturating_add(1)..).ctx(OP)?.take(limit) {
                let (sequence, bytes) = entry.ctx(OP)?;
                let stored = codec::decode_event(sequence.value(), bytes.value())?;
                out.push(reads::resolve_event(
                    &credentials,
                    sequence.value(),
                    stored,
                )?);
            }
            Ok(out)
        })
        .await
    }

    async fn last_sequence(&self) -> Result<u64, LedgerError> {
        self.read(|db| read_meta(db, LAST_SEQUENCE_KEY, "reading the event sequence"))
            .await
    }

    async fn expire(&self, now: i64, limit: usize) -> Result<u64, LedgerError> {
        self.request(|reply| WriterMsg::Expire(now, limit, reply))
            .await
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn get(&self, credential_id: &str) -> Result<Option<CredentialRecord>, LedgerError> {
        const OP: &str = "reading a credential";
        let id = credential_id.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(CREDENTIALS).ctx(OP)?;
            match table.get(id.as_str()).ctx(OP)? {
                Some(bytes) => codec::decode_record(&id, bytes.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self, params: ListParams) -> Result<CredentialPage, LedgerError> {
        self.read(move |db| list_page(db, &params)).await
    }

    async fn scan(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<CredentialRecord>, LedgerError> {
        const OP: &str = "scanning credentials";
        self.read(move |db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(CREDENTIALS).ctx(OP)?;
            let range = match &after {
                Some(after) => table
                    .range::<&str>((
                        std::ops::Bound::Excluded(after.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .ctx(OP)?,
                None => table.range::<&str>(..).ctx(OP)?,
            };
            let mut out = Vec::new();
            for entry in range.take(limit) {
                let (id, bytes) = entry.ctx(OP)?;
                out.push(codec::decode_record(id.value(), bytes.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn live_counts(&self, now: i64) -> Result<LiveCounts, LedgerError> {
        self.read(move |db| reads::live_counts(db, now)).await
    }

    async fn x509_records(&self, after: i64) -> Result<Vec<CredentialRecord>, LedgerError> {
        self.read(move |db| reads::x509_records(db, after)).await
    }

    async fn status_list_records(
        &self,
        scan: StatusScan,
    ) -> Result<Vec<CredentialRecord>, LedgerError> {
        self.read(move |db| reads::status_list_records(db, &scan))
            .await
    }

    async fn sweep(&self, params: SweepParams) -> Result<u64, LedgerError> {
        self.request(|reply| WriterMsg::Sweep(params, reply)).await
    }

    async fn len(&self) -> Result<u64, LedgerError> {
        const OP: &str = "counting credentials";
        self.read(|db| {
            let txn = db.begin_read().ctx(OP)?;
            txn.open_table(CREDENTIALS).ctx(OP)?.len().ctx(OP)
        })
        .await
    }

    async fn newest_issue_ms(&self) -> Result<Option<i64>, LedgerError> {
        self.read(newest_issue_ms).await
    }

    async fn close(&self) -> Result<(), LedgerError> {
        self.closed.store(true, Ordering::Release);
        let Some(tx) = self.tx.as_ref() else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        if tx.send(WriterMsg::Close(reply)).is_err() {
            return Ok(()); // The writer already stopped: closed before.
        }
        // A dropped reply means an earlier Close stopped the writer after its commit.
        answer.await.unwrap_or(Ok(()))
    }
}

impl Drop for RedbLedger {
    /// Stops the writer: dropping the sender ends its loop once the queue is committed. Joins
    /// it so the database file is released when this returns.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("ledger writer thread panicked");
        }
    }
}

impl fmt::Debug for RedbLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbLedger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conformance;
#[cfg(test)]
mod tests_journal;
#[cfg(test)]
mod tests_restore;
