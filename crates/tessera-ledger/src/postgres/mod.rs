//! The PostgreSQL ledger: several replicas share one database (DESIGN.md, "Scaling out:
//! replicas on PostgreSQL").
//!
//! # Writes: one writer task per replica, group commit
//! Every write — records, rules, expiries, sweeps — is a message to this replica's writer task
//! ([`writer`]), which commits whole batches in one transaction ([`batch`]) and only then
//! answers (invariant 1: every connection sets `synchronous_commit = on`, so COMMIT returns
//! once the WAL is flushed). A record refused for its replay guard or its id is refused alone:
//! one `INSERT … ON CONFLICT DO NOTHING` statement per record says which, and the others of the
//! batch commit. A batch that fails (database down, timeout) answers `Storage` to each of its
//! writes; nothing is answered `Ok` unless its transaction committed.
//!
//! # Sequence ordering: sequences commit in order, across replicas
//! Sequences come from one counter row, `ledger_sequence`, and a batch takes them in the last
//! statement of its transaction: `UPDATE ledger_sequence SET last = last + n RETURNING last`
//! (which also inserts the batch's events and rules and sends the NOTIFY), then COMMIT. The
//! row lock taken by that UPDATE is held until the transaction ends, so a second batch — on
//! this replica or another — that wants sequences waits until the first has committed (or
//! rolled back, taking its increment with it: no gap) and then reads the new `last`. Hence
//! transactions holding sequences commit in sequence order, and PostgreSQL makes a transaction
//! visible before it releases its locks, so **the committed events always form a prefix of the
//! sequence**: no reader can see sequence `n + 1` and then later find `n`. That is what lets a
//! watcher resume from "the last sequence I was sent" and miss nothing. The work done while
//! holding the counter is one statement and the COMMIT (the WAL flush); everything else of the
//! batch (inserts, counts, expiry) happens before. Locks are always taken in the same order —
//! expiry lock, credential and count rows (counts in key order), counter — so batches of
//! different replicas cannot deadlock on them (a deadlock PostgreSQL still reports, e.g. two
//! replicas inserting the same ids in different orders, retries the batch).
//!
//! # Fan-out: LISTEN/NOTIFY, catch-up by sequence
//! [`fanout`]: each replica's publisher owns `last_published` and publishes events strictly in
//! order on a broadcast channel. It is woken by its own writer (whose batches it publishes
//! directly when they follow `last_published`), by a dedicated LISTEN connection on
//! [`EVENTS_CHANNEL`] (every batch NOTIFYs its last sequence in its transaction, delivered at
//! commit), and by a poll every second; each wake reads `events_since(last_published)` until
//! caught up. A lost notification or connection (the listener reconnects with backoff and then
//! catches up) delays an event, never loses it.
//!
//! # Expiry, replay guards, outages
//! `expire` marks each credential it emits an `expired` event for (`credentials.expired`) and
//! runs under a row lock (`expire_lock … FOR UPDATE`) shared with `sweep`, so two replicas
//! expiring at once emit one event per credential. (Where redb keeps a time cursor, a flag per
//! credential also covers a credential another replica recorded, already past its expiry,
//! after an expiry ran: it gets its event at the next call.) Replay guards are rows of `replay` (primary
//! key), visible to every replica, swept after their `expires_at`. Waiting for a connection,
//! connecting, and every operation are bounded ([`PostgresOptions::connect_timeout`],
//! [`PostgresOptions::query_timeout`]): a database that is down makes operations fail with
//! `Storage` quickly, and the pool and the listener reconnect by themselves when it is back.
//!
//! # Importing a ledger
//! [`import`] ([`PostgresImport`]) fills an empty database with a whole ledger, sequences
//! kept, outside the writer; it requires the target to be quiescent (no broker on it) and
//! detects one that is not.

mod acks;
mod anchors;
mod batch;
mod connect;
mod fanout;
mod import;
mod reads;
mod rows;
mod schema;
mod signals;
mod usage;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use rustls::pki_types::CertificateDer;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use self::connect::{StorageContext, timed};
pub use self::import::{
    EventRow, ImportBatch, ImportError, ImportedCredential, LiveCountRow, PostgresImport,
};
pub use self::schema::SCHEMA_VERSION;
use self::writer::{Answer, Reply, Work, Writer, WriterMsg};
use crate::{
    CredentialPage, CredentialRecord, Event, Ledger, LedgerError, LedgerMetrics, ListParams,
    LiveCounts, NewRule, RecordParams, RevocationRule, StatusScan, SweepParams,
};

/// The channel every committing batch NOTIFYs (payload: its last sequence).
pub(crate) const EVENTS_CHANNEL: &str = "tessera_events";
/// Events a live subscriber may fall behind by before it is told it lagged.
const EVENT_BUFFER: usize = 16 * 1024;
/// Interval of the publisher's safety-net poll.
const POLL: Duration = Duration::from_secs(1);

/// Settings of [`PostgresLedger`]. `Debug` hides the URL's password.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`.
    /// The tables have plain names (`credentials`, `events`, `migrations`, …): give the ledger
    /// a database of its own, or a schema with `options=-c%20search_path%3Dtessera`.
    pub url: String,
    /// Most connections in the pool (a LISTEN connection comes on top). Default 16.
    pub pool_size: usize,
    /// Bound on waiting for a pooled connection and on making one. Default 5 s.
    pub connect_timeout: Duration,
    /// Bound on one batch commit or one read, connection wait included: past it the operation
    /// fails with `Storage` (a commit's outcome is then unknown, never reported as success).
    /// Default 30 s.
    pub query_timeout: Duration,
    /// Group commit window, as [`crate::RedbOptions::linger`]. Default 1 ms.
    pub linger: Duration,
    /// Most writes committed in one transaction. Default 4096.
    pub max_batch: usize,
    /// Roots the database's TLS certificate must chain to; empty means the Web PKI roots.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// Where commit latency, batch sizes and the last sequence are recorded.
    pub metrics: LedgerMetrics,
}

impl PostgresOptions {
    /// Returns the default settings for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(1),
            max_batch: 4096,
            ca_certs: Vec::new(),
            metrics: LedgerMetrics::default(),
        }
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redacted(&self.url))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("linger", &self.linger)
            .field("max_batch", &self.max_batch)
            .field("ca_certs", &self.ca_certs.len())
            .finish_non_exhaustive()
    }
}

/// Returns `url` without its password, if it has one (`user:***@host`).
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a postgres:// url)".to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Applies the migrations of this build to the database at `url` (as [`PostgresLedger::connect`]
/// does), with the default settings of [`PostgresOptions::new`]; returns the schema version it
/// had before (0 for an empty database). Fails as [`migrate_with`] does.
pub async fn migrate(url: &str) -> Result<u32, LedgerError> {
    migrate_with(&PostgresOptions::new(url)).await
}

/// Applies the migrations of this build to the database of `options` on one connection of its
/// own; returns the schema version it had before (0 for an empty database). Fails with
/// `SchemaTooNew` when a newer build migrated it (nothing is changed), `Storage` when it
/// cannot be reached within `connect_timeout` or a migration fails (nothing of that migration
/// is kept).
pub async fn migrate_with(options: &PostgresOptions) -> Result<u32, LedgerError> {
    const OP: &str = "connecting to the ledger database";
    let config = connect::pg_config(&options.url, options.connect_timeout)?;
    let tls = connect::tls(&options.ca_certs)?;
    let (mut client, connection) = config.connect(tls).await.ctx(OP)?;
    let driver = tokio::spawn(connection);
    let applied = timed(
        options.query_timeout,
        "migrating",
        schema::apply(&mut client),
    )
    .await;
    drop(client);
    let _ = driver.await; // ends once the client is dropped
    applied
}

/// A [`Ledger`] in a PostgreSQL database shared by every replica (see the module doc).
pub struct PostgresLedger {
    pool: Pool,
    tx: mpsc::UnboundedSender<WriterMsg>,
    closed: AtomicBool,
    commits: Arc<AtomicU64>,
    events: broadcast::Sender<Event>,
    query_timeout: Duration,
    /// The publisher and the listener, stopped when the ledger is dropped.
    fanout: Vec<JoinHandle<()>>,
    /// The URL without its password.
    url: String,
}

impl PostgresLedger {
    /// Connects to the database, applies pending migrations, and starts the writer, the
    /// publisher and the listener (on the current tokio runtime). Fails with `SchemaTooNew`
    /// when a newer build migrated the database, `Storage` when it cannot be reached within
    /// `connect_timeout` or the URL is invalid.
    pub async fn connect(options: PostgresOptions) -> Result<PostgresLedger, LedgerError> {
        let pool = connect::pool(&options)?;
        let last_sequence = timed(options.query_timeout, "opening the ledger", async {
            let mut client = connect::client(&pool, "opening the ledger").await?;
            schema::apply(&mut client).await?;
            reads::last_sequence(&client).await
        })
        .await?;
        let origin = tessera_core::mint::random_hex::<8>()
            .map_err(|e| LedgerError::Storage(format!("opening the ledger: {e}")))?;
        let commits = Arc::new(AtomicU64::new(0));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (tx, rx) = mpsc::unbounded_channel();
        let (published, local) = mpsc::unbounded_channel();
        let (wake, wakes) = mpsc::unbounded_channel();
        tokio::spawn(
            Writer {
                pool: pool.clone(),
                rx,
                linger: options.linger,
                origin: origin.clone(),
                max_batch: options.max_batch,
                query_timeout: options.query_timeout,
                metrics: options.metrics.clone(),
                commits: Arc::clone(&commits),
                published,
                last_batch: 0,
            }
            .run(),
        );
        let publisher = fanout::Publisher {
            pool: pool.clone(),
            events: events.clone(),
            last_published: last_sequence,
            local,
            wakes,
            poll: POLL,
            query_timeout: options.query_timeout,
        };
        let listener = fanout::Listener {
            config: connect::pg_config(&options.url, options.connect_timeout)?,
            tls: connect::tls(&options.ca_certs)?,
            wakes: wake,
            origin,
        };
        Ok(PostgresLedger {
            pool,
            tx,
            closed: AtomicBool::new(false),
            commits,
            events,
            query_timeout: options.query_timeout,
            fanout: vec![tokio::spawn(publisher.run()), tokio::spawn(listener.run())],
            url: redacted(&options.url),
        })
    }

    /// Returns how many batch transactions this replica's writer has committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues `work` for the writer and returns its answer. Fails with `Closed` if the ledger
    /// is closed or the writer stopped before answering.
    async fn request<T>(
        &self,
        work: Work,
        answer: impl FnOnce(Reply<T>) -> Answer,
    ) -> Result<T, LedgerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LedgerError::Closed);
        }
        let (reply, answered) = oneshot::channel();
        let msg = WriterMsg {
            work,
            answer: answer(reply),
        };
        self.tx.send(msg).map_err(|_| LedgerError::Closed)?;
        answered.await.map_err(|_| LedgerError::Closed)?
    }

    /// Returns what `read` returns on a pooled connection, bounded by the query timeout.
    /// Fails with `Storage` when no connection can be had or the time runs out.
    async fn read<T, F, Fut>(&self, operation: &'static str, read: F) -> Result<T, LedgerError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, LedgerError>>,
    {
        timed(self.query_timeout, operation, async {
            read(connect::client(&self.pool, operation).await?).await
        })
        .await
    }
}

#[async_trait]
impl Ledger for PostgresLedger {
    async fn record(&self, params: RecordParams) -> Result<u64, LedgerError> {
        self.request(Work::Record(Box::new(params)), Answer::Sequence)
            .await
    }

    async fn add_rule(&self, rule: NewRule) -> Result<RevocationRule, LedgerError> {
        self.request(Work::AddRule(rule), Answer::Rule).await
    }

    async fn rules(&self) -> Result<Vec<RevocationRule>, LedgerError> {
        self.read("reading rules", |c| async move { reads::rules(&c).await })
            .await
    }

    async fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>, LedgerError> {
        self.read("reading events", |c| async move {
            reads::events_since(&c, since, limit).await
        })
        .await
    }

    async fn last_sequence(&self) -> Result<u64, LedgerError> {
        self.read("reading the event sequence", |c| async move {
            reads::last_sequence(&c).await
        })
        .await
    }

    async fn expire(&self, now: i64, limit: usize) -> Result<u64, LedgerError> {
        self.request(Work::Expire(now, limit), Answer::Count).await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.read("checking the database", |c| async move {
            c.simple_query("SELECT 1")
                .await
                .ctx("checking the database")?;
            Ok(())
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn get(&self, credential_id: &str) -> Result<Option<CredentialRecord>, LedgerError> {
        self.read("reading a credential", |c| async move {
            reads::get(&c, credential_id).await
        })
        .await
    }

    async fn list(&self, params: ListParams) -> Result<CredentialPage, LedgerError> {
        self.read("listing credentials", |c| async move {
            reads::list(&c, &params).await
        })
        .await
    }

    async fn scan(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<CredentialRecord>, LedgerError> {
        self.read("scanning credentials", |c| async move {
            reads::scan(&c, after.as_deref(), limit).await
        })
        .await
    }

    async fn live_counts(&self, now: i64) -> Result<LiveCounts, LedgerError> {
        self.read("reading live counts", |c| async move {
            reads::live_counts(&c, now).await
        })
        .await
    }

    async fn x509_records(&self, after: i64) -> Result<Vec<CredentialRecord>, LedgerError> {
        self.read("reading live X.509 credentials", |c| async move {
            reads::x509_records(&c, after).await
        })
        .await
    }

    async fn status_list_records(
        &self,
        scan: StatusScan,
    ) -> Result<Vec<CredentialRecord>, LedgerError> {
        self.read(
            "reading credentials with a status list entry",
            |c| async move { reads::status_list_records(&c, &scan).await },
        )
        .await
    }

    async fn sweep(&self, params: SweepParams) -> Result<u64, LedgerError> {
        self.request(Work::Sweep(params), Answer::Count).await
    }

    async fn len(&self) -> Result<u64, LedgerError> {
        self.read(
            "counting credentials",
            |c| async move { reads::len(&c).await },
        )
        .await
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn newest_issue_ms(&self) -> Result<Option<i64>, LedgerError> {
        self.read("reading the newest issue time", |c| async move {
            reads::newest_issue_ms(&c).await
        })
        .await
    }

    async fn close(&self) -> Result<(), LedgerError> {
        self.closed.store(true, Ordering::Release);
        let (reply, answered) = oneshot::channel();
        let msg = WriterMsg {
            work: Work::Close,
            answer: Answer::Closed(reply),
        };
        if self.tx.send(msg).is_err() {
            return Ok(()); // the writer already stopped: closed before
        }
        // A dropped reply means an earlier Close stopped the writer after its commit.
        answered.await.unwrap_or(Ok(()))
    }
}

impl Drop for PostgresLedger {
    /// Stops the publisher and the listener; the writer stops once it has committed what is
    /// queued (its channel is closed with the ledger).
    fn drop(&mut self) {
        for task in &self.fanout {
            task.abort();
        }
    }
}

impl fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLedger")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod testdb;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conformance;
#[cfg(test)]
mod tests_copy;
#[cfg(test)]
mod tests_replicas;
#[cfg(test)]
mod tests_restore;
