//! The redb ledger: one database file, one writer thread, group commit.
//!
//! Every write (records, sweeps, and later revocation rules and events) is a [`WriterMsg`] sent
//! to the `ledger-writer` thread. The thread takes the first queued message, drains what else is
//! queued (up to [`RedbOptions::max_batch`]), applies the whole batch in one write transaction,
//! commits it (fsync), and only then answers every waiter. Reads run on tokio's blocking pool.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ::redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{CredentialRecord, Ledger, LedgerError, RecordParams, SweepParams};

/// Credential id → serde_json of [`CredentialRecord`].
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
/// (expires_at, credential id) → (), ordered for sweeping.
const EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("expiry");
/// Replay guard key → expires_at.
const REPLAY: TableDefinition<&str, i64> = TableDefinition::new("replay");
/// (expires_at, replay guard key) → (), ordered for sweeping.
const REPLAY_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("replay_expiry");
/// Ledger metadata; holds [`SCHEMA_VERSION_KEY`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_VERSION_KEY: &str = "schema_version";
const SCHEMA_VERSION: u64 = 1;

/// Tuning of [`RedbLedger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedbOptions {
    /// Most writer messages committed in one transaction. Default 4096.
    pub max_batch: usize,
    /// Fsync every commit (`true`, the default). `false` uses redb `Durability::None`, which
    /// breaks the ledger's durability guarantee: for benchmarks only.
    pub durable: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            max_batch: 4096,
            durable: true,
        }
    }
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
}

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// A record encoded by the caller, ready for the writer.
struct PendingRecord {
    id: String,
    expires_at: i64,
    bytes: Vec<u8>,
    /// Replay guard key and expiry.
    replay: Option<(String, i64)>,
}

/// What the writer thread is asked to do. New write kinds (revocation rules, events) become new
/// variants, committed in the same batches.
enum WriterMsg {
    Record(PendingRecord, Reply<()>),
    Sweep(SweepParams, Reply<u64>),
    Close(Reply<()>),
}

/// A [`WriterMsg`] with room for its result, filled in while the batch is applied.
enum Job {
    Record(PendingRecord, Reply<()>, Result<(), LedgerError>),
    Sweep(SweepParams, Reply<u64>, u64),
    Close(Reply<()>),
}

impl From<WriterMsg> for Job {
    fn from(msg: WriterMsg) -> Self {
        match msg {
            WriterMsg::Record(record, reply) => Job::Record(record, reply, Ok(())),
            WriterMsg::Sweep(params, reply) => Job::Sweep(params, reply, 0),
            WriterMsg::Close(reply) => Job::Close(reply),
        }
    }
}

impl Job {
    /// Sends the job's result; called only after its batch is committed.
    fn answer(self) {
        match self {
            Job::Record(_, reply, result) => send(reply, result),
            Job::Sweep(_, reply, deleted) => send(reply, Ok(deleted)),
            Job::Close(reply) => send(reply, Ok(())),
        }
    }

    /// Answers `Storage(message)`: the job's batch was not committed.
    fn fail(self, message: &str) {
        let err = LedgerError::Storage(message.to_owned());
        match self {
            Job::Record(_, reply, _) | Job::Close(reply) => send(reply, Err(err)),
            Job::Sweep(_, reply, _) => send(reply, Err(err)),
        }
    }
}

/// Answers a waiter. One that gave up (dropped its future) is not an error.
fn send<T>(reply: Reply<T>, result: Result<T, LedgerError>) {
    let _ = reply.send(result);
}

/// `map_err` to [`LedgerError::Storage`] naming the operation, for redb, I/O and other errors.
trait StorageContext<T> {
    fn ctx(self, operation: &'static str) -> Result<T, LedgerError>;
}

impl<T, E: fmt::Display> StorageContext<T> for Result<T, E> {
    fn ctx(self, operation: &'static str) -> Result<T, LedgerError> {
        self.map_err(|e| LedgerError::Storage(format!("{operation}: {e}")))
    }
}

impl RedbLedger {
    /// Opens the ledger at `path`, creating parent directories, the file and the tables if
    /// missing, and starts the writer thread. Fails with `Storage` if the file cannot be
    /// created or opened (including when another process holds it), `Corrupt` if its schema
    /// version is not the one this build reads.
    pub fn open(path: &Path, options: RedbOptions) -> Result<RedbLedger, LedgerError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).ctx("creating the ledger directory")?;
        }
        let db = Arc::new(Database::create(path).ctx("opening the ledger database")?);
        init_schema(&db)?;
        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: Arc::clone(&db),
            rx,
            options,
            commits: Arc::clone(&commits),
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

    /// Runs `read` with the database on tokio's blocking pool and returns its result. Fails
    /// with `Storage` if the blocking task could not run to completion.
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

/// Creates the tables and checks (or, in a new ledger, writes) the schema version. Fails with
/// `Corrupt` on another version, or no version in a ledger that holds records.
fn init_schema(db: &Database) -> Result<(), LedgerError> {
    const OP: &str = "initialising the ledger schema";
    let txn = db.begin_write().ctx(OP)?;
    {
        let mut meta = txn.open_table(META).ctx(OP)?;
        let credentials = txn.open_table(CREDENTIALS).ctx(OP)?;
        txn.open_table(EXPIRY).ctx(OP)?;
        txn.open_table(REPLAY).ctx(OP)?;
        txn.open_table(REPLAY_EXPIRY).ctx(OP)?;
        let found = meta.get(SCHEMA_VERSION_KEY).ctx(OP)?.map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(LedgerError::Corrupt(format!(
                    "schema version {other} found, this build reads version {SCHEMA_VERSION}"
                )));
            }
            None if credentials.is_empty().ctx(OP)? => {
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION).ctx(OP)?;
            }
            None => {
                return Err(LedgerError::Corrupt(
                    "schema version missing from a ledger that holds records".to_owned(),
                ));
            }
        }
    }
    txn.commit().ctx(OP)
}

/// The writer thread's state.
struct Writer {
    db: Arc<Database>,
    rx: mpsc::Receiver<WriterMsg>,
    options: RedbOptions,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Commits batches until a `Close` is committed or every sender is dropped. Messages still
    /// queued after a `Close` are dropped unanswered, so their senders see `Closed`.
    fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let (jobs, closing) = self.drain(first);
            self.commit_batch(jobs);
            if closing {
                break;
            }
        }
        tracing::debug!("ledger writer stopped");
    }

    /// Returns `first` plus whatever is queued behind it, up to `max_batch` messages and
    /// stopping after a `Close`, and whether the batch ends with a `Close`.
    fn drain(&self, first: WriterMsg) -> (Vec<Job>, bool) {
        let mut closing = matches!(first, WriterMsg::Close(_));
        let mut jobs = vec![Job::from(first)];
        while !closing && jobs.len() < self.options.max_batch {
            let Ok(msg) = self.rx.try_recv() else { break };
            closing = matches!(msg, WriterMsg::Close(_));
            jobs.push(Job::from(msg));
        }
        (jobs, closing)
    }

    /// Applies and commits `jobs` in one transaction, then answers each of them: with its
    /// result if the commit succeeded, with `Storage` otherwise.
    fn commit_batch(&self, mut jobs: Vec<Job>) {
        match self.apply_and_commit(&mut jobs) {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(size = jobs.len(), "ledger batch committed");
                jobs.into_iter().for_each(Job::answer);
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

    /// Runs every job in one write transaction and commits it. Fails with `Storage` if any
    /// step fails, in which case nothing of the batch is written.
    fn apply_and_commit(&self, jobs: &mut [Job]) -> Result<(), LedgerError> {
        let mut txn = self.db.begin_write().ctx("starting a ledger write")?;
        let durability = if self.options.durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability)
            .ctx("setting the ledger durability")?;
        apply(&txn, jobs)?;
        txn.commit().ctx("committing the ledger batch")
    }
}

type CredentialsTable<'t> = Table<'t, &'static str, &'static [u8]>;
type ExpiryTable<'t> = Table<'t, (i64, &'static str), ()>;
type ReplayTable<'t> = Table<'t, &'static str, i64>;

/// The tables one batch writes.
struct Tables<'t> {
    credentials: CredentialsTable<'t>,
    expiry: ExpiryTable<'t>,
    replay: ReplayTable<'t>,
    replay_expiry: ExpiryTable<'t>,
}

/// Applies `jobs` in order inside `txn`, storing each job's result in it. Fails with `Storage`
/// on a storage error.
fn apply(txn: &WriteTransaction, jobs: &mut [Job]) -> Result<(), LedgerError> {
    let mut t = Tables {
        credentials: txn.open_table(CREDENTIALS).ctx("opening credentials")?,
        expiry: txn.open_table(EXPIRY).ctx("opening expiry")?,
        replay: txn.open_table(REPLAY).ctx("opening replay")?,
        replay_expiry: txn.open_table(REPLAY_EXPIRY).ctx("opening replay_expiry")?,
    };
    for job in jobs {
        match job {
            Job::Record(record, _, result) => *result = insert_record(&mut t, record)?,
            Job::Sweep(params, _, deleted) => {
                *deleted = sweep_expired(&mut t.credentials, &mut t.expiry, *params)?;
                sweep_replay(&mut t, *params)?;
            }
            Job::Close(_) => {}
        }
    }
    Ok(())
}

/// Inserts `record` (and its replay guard) unless the guard's key is already stored or the id
/// is already recorded, committed or earlier in this batch. Returns the record's result;
/// fails with `Storage` on a storage error.
fn insert_record(
    t: &mut Tables<'_>,
    record: &PendingRecord,
) -> Result<Result<(), LedgerError>, LedgerError> {
    const OP: &str = "recording a credential";
    if let Some((key, _)) = &record.replay
        && t.replay.get(key.as_str()).ctx(OP)?.is_some()
    {
        return Ok(Err(LedgerError::Replay));
    }
    if t.credentials.get(record.id.as_str()).ctx(OP)?.is_some() {
        return Ok(Err(LedgerError::Duplicate(record.id.clone())));
    }
    t.credentials
        .insert(record.id.as_str(), record.bytes.as_slice())
        .ctx(OP)?;
    t.expiry
        .insert((record.expires_at, record.id.as_str()), ())
        .ctx(OP)?;
    if let Some((key, expires_at)) = &record.replay {
        t.replay.insert(key.as_str(), *expires_at).ctx(OP)?;
        t.replay_expiry
            .insert((*expires_at, key.as_str()), ())
            .ctx(OP)?;
    }
    Ok(Ok(()))
}

/// Deletes up to `params.limit` replay guards with `expires_at < params.expired_before`.
fn sweep_replay(t: &mut Tables<'_>, params: SweepParams) -> Result<(), LedgerError> {
    const OP: &str = "sweeping replay guards";
    let upper = (params.expired_before, "");
    let mut expired = Vec::new();
    for entry in t.replay_expiry.range(..upper).ctx(OP)?.take(params.limit) {
        let (key, _) = entry.ctx(OP)?;
        let (expires_at, guard) = key.value();
        expired.push((expires_at, guard.to_owned()));
    }
    for (expires_at, guard) in &expired {
        t.replay_expiry
            .remove((*expires_at, guard.as_str()))
            .ctx(OP)?;
        t.replay.remove(guard.as_str()).ctx(OP)?;
    }
    Ok(())
}

/// Deletes up to `params.limit` records with `expires_at < params.expired_before`, earliest
/// first, from both tables. Returns how many were deleted; fails with `Storage` on a storage
/// error.
fn sweep_expired(
    credentials: &mut CredentialsTable<'_>,
    expiry: &mut ExpiryTable<'_>,
    params: SweepParams,
) -> Result<u64, LedgerError> {
    const OP: &str = "sweeping expired credentials";
    // (t, "") is the smallest key at time t, so this bound selects exactly t < expired_before.
    let upper = (params.expired_before, "");
    let mut expired = Vec::new();
    for entry in expiry.range(..upper).ctx(OP)?.take(params.limit) {
        let (key, _) = entry.ctx(OP)?;
        let (expires_at, id) = key.value();
        expired.push((expires_at, id.to_owned()));
    }
    for (expires_at, id) in &expired {
        expiry.remove((*expires_at, id.as_str())).ctx(OP)?;
        credentials.remove(id.as_str()).ctx(OP)?;
    }
    Ok(expired.len() as u64)
}

#[async_trait]
impl Ledger for RedbLedger {
    async fn record(&self, params: RecordParams) -> Result<(), LedgerError> {
        let record = params.credential;
        let bytes = serde_json::to_vec(&record).ctx("encoding a credential record")?;
        let pending = PendingRecord {
            id: record.credential_id,
            expires_at: record.expires_at,
            bytes,
            replay: params.replay_guard.map(|g| (g.key, g.expires_at)),
        };
        self.request(|reply| WriterMsg::Record(pending, reply))
            .await
    }

    async fn get(&self, credential_id: &str) -> Result<Option<CredentialRecord>, LedgerError> {
        const OP: &str = "reading a credential";
        let id = credential_id.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(CREDENTIALS).ctx(OP)?;
            let Some(bytes) = table.get(id.as_str()).ctx(OP)? else {
                return Ok(None);
            };
            serde_json::from_slice(bytes.value())
                .map(Some)
                .map_err(|e| LedgerError::Corrupt(format!("credential {id}: {e}")))
        })
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ledger::{CredentialKind, EvidenceKind, Status};

    /// Records without a replay guard.
    trait RecordPlain {
        async fn record_plain(&self, record: CredentialRecord) -> Result<(), LedgerError>;
    }

    impl RecordPlain for RedbLedger {
        async fn record_plain(&self, record: CredentialRecord) -> Result<(), LedgerError> {
            self.record(RecordParams {
                credential: record,
                replay_guard: None,
            })
            .await
        }
    }

    #[tokio::test]
    async fn a_replay_guard_refuses_its_second_use_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = RedbLedger::open(&dir.path().join("l.redb"), RedbOptions::default()).unwrap();
        let guard = Some(crate::ledger::ReplayGuard {
            key: "token-a|dest|purpose".into(),
            expires_at: 500,
        });
        let first = RecordParams {
            credential: sample("first", 1000),
            replay_guard: guard.clone(),
        };
        ledger.record(first).await.unwrap();
        let second = RecordParams {
            credential: sample("second", 1000),
            replay_guard: guard,
        };
        assert!(matches!(
            ledger.record(second).await,
            Err(LedgerError::Replay)
        ));
        assert!(ledger.get("second").await.unwrap().is_none());
        // Once swept past its expiry, the guard no longer refuses.
        ledger
            .sweep(SweepParams {
                expired_before: 501,
                limit: 100,
            })
            .await
            .unwrap();
        let third = RecordParams {
            credential: sample("third", 2000),
            replay_guard: Some(crate::ledger::ReplayGuard {
                key: "token-a|dest|purpose".into(),
                expires_at: 500,
            }),
        };
        ledger.record(third).await.unwrap();
    }

    fn sample(id: &str, expires_at: i64) -> CredentialRecord {
        CredentialRecord {
            credential_id: id.to_owned(),
            kind: CredentialKind::Jwt,
            workload: "spiffe://example.org/ns/ci/sa/builder".to_owned(),
            owner: "team-ci".to_owned(),
            destination: "registry".to_owned(),
            purpose: "push".to_owned(),
            grant: "ci-push".to_owned(),
            evidence_kind: EvidenceKind::Oidc,
            evidence_hash: "ab".repeat(32),
            issued_at: expires_at - 300,
            expires_at,
            status: Status::Live,
            ci: None,
        }
    }

    fn open_in(dir: &tempfile::TempDir) -> RedbLedger {
        let path = dir.path().join("nested").join("ledger.redb");
        RedbLedger::open(&path, RedbOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn records_are_readable_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<_> = (0..3).map(|i| sample(&format!("c{i}"), 1000 + i)).collect();
        let ledger = open_in(&dir);
        for record in &records {
            ledger.record_plain(record.clone()).await.unwrap();
        }
        drop(ledger);

        let ledger = open_in(&dir);
        for record in &records {
            let read = ledger.get(&record.credential_id).await.unwrap();
            assert_eq!(read.as_ref(), Some(record));
        }
        assert_eq!(ledger.len().await.unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_records_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(open_in(&dir));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let ledger: Arc<dyn Ledger> = ledger.clone();
                tokio::spawn(async move {
                    ledger
                        .record(RecordParams {
                            credential: sample(&format!("c{i}"), 1000),
                            replay_guard: None,
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(ledger.len().await.unwrap(), 200);
        let commits = ledger.commits();
        assert!(commits < 200, "{commits} commits for 200 records");
    }

    #[tokio::test]
    async fn duplicate_id_is_refused_and_original_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open_in(&dir);
        let original = sample("dup", 1000);
        ledger.record_plain(original.clone()).await.unwrap();
        let mut other = sample("dup", 2000);
        other.purpose = "pull".to_owned();
        let err = ledger.record_plain(other.clone()).await.unwrap_err();
        assert!(
            matches!(&err, LedgerError::Duplicate(id) if id == "dup"),
            "{err}"
        );
        assert_eq!(ledger.get("dup").await.unwrap(), Some(original));

        // Two records with one id submitted together: exactly one is written.
        let (a, b) = tokio::join!(
            ledger.record_plain(sample("twin", 1000)),
            ledger.record_plain(sample("twin", 1000))
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        assert_eq!(ledger.len().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn sweep_deletes_only_expired_records() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open_in(&dir);
        for (id, expires_at) in [("a", 10), ("b", 20), ("c", 30), ("d", 40)] {
            ledger.record_plain(sample(id, expires_at)).await.unwrap();
        }
        let params = SweepParams {
            expired_before: 30,
            limit: 100,
        };
        assert_eq!(ledger.sweep(params).await.unwrap(), 2);
        assert_eq!(ledger.get("a").await.unwrap(), None);
        assert_eq!(ledger.get("b").await.unwrap(), None);
        assert!(ledger.get("c").await.unwrap().is_some());
        assert!(ledger.get("d").await.unwrap().is_some());

        // The limit bounds a sweep, earliest expiry first.
        let params = SweepParams {
            expired_before: 100,
            limit: 1,
        };
        assert_eq!(ledger.sweep(params).await.unwrap(), 1);
        assert_eq!(ledger.get("c").await.unwrap(), None);
        assert!(ledger.get("d").await.unwrap().is_some());
        assert_eq!(ledger.len().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn record_after_close_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open_in(&dir);
        ledger.record_plain(sample("before", 1000)).await.unwrap();
        ledger.close().await.unwrap();
        let err = ledger
            .record_plain(sample("after", 1000))
            .await
            .unwrap_err();
        assert!(matches!(err, LedgerError::Closed), "{err}");
        ledger.close().await.unwrap();
        assert!(ledger.get("before").await.unwrap().is_some());
        assert_eq!(ledger.get("after").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_mismatched_schema_version_is_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb");
        drop(RedbLedger::open(&path, RedbOptions::default()).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_VERSION_KEY, 2)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = RedbLedger::open(&path, RedbOptions::default()).unwrap_err();
        assert!(
            matches!(&err, LedgerError::Corrupt(m) if m.contains("schema version 2")),
            "{err}"
        );
    }
}
