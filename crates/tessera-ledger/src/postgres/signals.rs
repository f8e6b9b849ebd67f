//! The Shared Signals state of the PostgreSQL ledger ([`SignalStore`], tables of migration 3):
//! statements on pooled connections, outside the writer (they take no sequence). Every replica
//! queues the SETs of the events it sees; `(stream_id, jti)` is the key, so the first insert
//! wins and the others change nothing, and a follower skips the events the shared cursor says
//! another replica already queued (they may have been delivered and acknowledged since). Stream creation takes an advisory lock so the caps hold
//! across replicas. Acknowledgements and leases commit without waiting for the WAL flush: a
//! crash may bring an acknowledged SET back, to be delivered again.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::PostgresLedger;
use super::connect::StorageContext;
use super::rows::{self, column};
use crate::LedgerError;
use crate::signals::{
    AckParams, EnqueueParams, Enqueued, LeaseParams, NewStream, PendingParams, PendingSet,
    SignalStore, StoredStream, StreamCreated, StreamUpdate,
};

/// Key of the advisory lock stream creation holds ("ssf").
const CREATE_LOCK: i64 = 0x0073_7366;

fn stream(row: &Row) -> Result<StoredStream, LedgerError> {
    Ok(StoredStream {
        stream_id: column(row, 0)?,
        owner: column(row, 1)?,
        from_sequence: rows::sequence(column(row, 2)?)?,
        config: column(row, 3)?,
    })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

impl PostgresLedger {
    /// Fails with `Closed` after [`crate::Ledger::close`].
    pub(super) fn check_open(&self) -> Result<(), LedgerError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(LedgerError::Closed);
        }
        Ok(())
    }
}

/// Queues `p.sets` on `txn` (see [`SignalStore::enqueue_sets`]).
async fn enqueue(
    txn: &deadpool_postgres::Transaction<'_>,
    p: &EnqueueParams,
) -> Result<Enqueued, LedgerError> {
    const OP: &str = "queueing SETs";
    if !p.durable {
        txn.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .ctx(OP)?;
    }
    // A follower's batch (it moves the cursor) skips the events another replica's follower
    // already queued: they may have been delivered and acknowledged since, and queueing them
    // again would push them twice. The cursor row is locked until commit, so followers on
    // different replicas take turns.
    let after = match p.through_sequence {
        Some(_) => {
            let row = txn
                .query_one("SELECT last FROM ssf_cursor FOR UPDATE", &[])
                .await
                .ctx(OP)?;
            column::<i64>(&row, 0)?
        }
        None => -1,
    };
    let streams: Vec<&str> = p.sets.iter().map(|s| s.stream_id.as_str()).collect();
    let jtis: Vec<&str> = p.sets.iter().map(|s| s.jti.as_str()).collect();
    let positions: Vec<i64> = p.sets.iter().map(|s| rows::bigint(s.position)).collect();
    let jwts: Vec<&str> = p.sets.iter().map(|s| s.set.as_str()).collect();
    let queued_at: Vec<i64> = p.sets.iter().map(|s| s.queued_at_ms).collect();
    let queued = txn
        .execute(
            "INSERT INTO ssf_sets (stream_id, jti, position, set_jwt, queued_at_ms)
             SELECT u.s, u.j, u.p, u.t, u.q
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[])
                  AS u(s, j, p, t, q)
             WHERE EXISTS (SELECT 1 FROM ssf_streams WHERE stream_id = u.s) AND u.p > $6
             ON CONFLICT DO NOTHING",
            &[&streams, &jtis, &positions, &jwts, &queued_at, &after],
        )
        .await
        .ctx(OP)?;
    let mut touched = streams;
    touched.sort_unstable();
    touched.dedup();
    let max = rows::bigint(p.max_pending as u64);
    let dropped = txn
        .execute(
            "DELETE FROM ssf_sets d USING (
                 SELECT stream_id, jti FROM (
                     SELECT stream_id, jti, row_number() OVER (
                         PARTITION BY stream_id ORDER BY position DESC, jti DESC) AS n
                     FROM ssf_sets WHERE stream_id = ANY($1)) r
                 WHERE r.n > $2) o
             WHERE d.stream_id = o.stream_id AND d.jti = o.jti",
            &[&touched, &max],
        )
        .await
        .ctx(OP)?;
    if let Some(through) = p.through_sequence {
        txn.execute(
            "UPDATE ssf_cursor SET last = greatest(last, $1)",
            &[&rows::bigint(through)],
        )
        .await
        .ctx(OP)?;
    }
    Ok(Enqueued { queued, dropped })
}

/// Stores `p.stream` on `txn` unless a limit or its id forbids it.
async fn create(
    txn: &deadpool_postgres::Transaction<'_>,
    p: &NewStream,
) -> Result<StreamCreated, LedgerError> {
    const OP: &str = "creating a stream";
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATE_LOCK])
        .await
        .ctx(OP)?;
    let s = &p.stream;
    let row = txn
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE owner = $1),
                    count(*) FILTER (WHERE stream_id = $2)
             FROM ssf_streams",
            &[&s.owner, &s.stream_id],
        )
        .await
        .ctx(OP)?;
    let (total, owned, same): (i64, i64, i64) =
        (column(&row, 0)?, column(&row, 1)?, column(&row, 2)?);
    if same > 0 {
        return Ok(StreamCreated::Duplicate);
    }
    if count(total) >= p.limits.total as u64 {
        return Ok(StreamCreated::Full);
    }
    if count(owned) >= p.limits.per_owner as u64 {
        return Ok(StreamCreated::OwnerFull);
    }
    txn.execute(
        "INSERT INTO ssf_streams (stream_id, owner, from_sequence, config) VALUES ($1, $2, $3, $4)",
        &[
            &s.stream_id,
            &s.owner,
            &rows::bigint(s.from_sequence),
            &s.config,
        ],
    )
    .await
    .ctx(OP)?;
    Ok(StreamCreated::Created)
}

#[async_trait]
impl SignalStore for PostgresLedger {
    async fn create_stream(&self, params: NewStream) -> Result<StreamCreated, LedgerError> {
        const OP: &str = "creating a stream";
        self.check_open()?;
        self.read(OP, |mut c| async move {
            let txn = c.transaction().await.ctx(OP)?;
            let created = create(&txn, &params).await?;
            txn.commit().await.ctx(OP)?;
            Ok(created)
        })
        .await
    }

    async fn streams(&self) -> Result<Vec<StoredStream>, LedgerError> {
        const OP: &str = "reading streams";
        self.read(OP, |c| async move {
            let found = c
                .query(
                    "SELECT stream_id, owner, from_sequence, config FROM ssf_streams
                     ORDER BY stream_id",
                    &[],
                )
                .await
                .ctx(OP)?;
            found.iter().map(stream).collect()
        })
        .await
    }

    async fn stream(&self, stream_id: &str) -> Result<Option<StoredStream>, LedgerError> {
        const OP: &str = "reading a stream";
        self.read(OP, |c| async move {
            let row = c
                .query_opt(
                    "SELECT stream_id, owner, from_sequence, config FROM ssf_streams
                     WHERE stream_id = $1",
                    &[&stream_id],
                )
                .await
                .ctx(OP)?;
            row.as_ref().map(stream).transpose()
        })
        .await
    }

    async fn update_stream(&self, update: StreamUpdate) -> Result<bool, LedgerError> {
        const OP: &str = "updating a stream";
        self.check_open()?;
        self.read(OP, |c| async move {
            let n = c
                .execute(
                    "UPDATE ssf_streams SET config = $2 WHERE stream_id = $1",
                    &[&update.stream_id, &update.config],
                )
                .await
                .ctx(OP)?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_stream(&self, stream_id: &str) -> Result<bool, LedgerError> {
        const OP: &str = "deleting a stream";
        self.check_open()?;
        self.read(OP, |c| async move {
            let n = c
                .execute(
                    "DELETE FROM ssf_streams WHERE stream_id = $1",
                    &[&stream_id],
                )
                .await
                .ctx(OP)?;
            Ok(n > 0)
        })
        .await
    }

    async fn enqueue_sets(&self, params: EnqueueParams) -> Result<Enqueued, LedgerError> {
        const OP: &str = "queueing SETs";
        self.check_open()?;
        self.read(OP, |mut c| async move {
            let txn = c.transaction().await.ctx(OP)?;
            let done = enqueue(&txn, &params).await?;
            txn.commit().await.ctx(OP)?;
            Ok(done)
        })
        .await
    }

    async fn pending_sets(&self, params: PendingParams) -> Result<Vec<PendingSet>, LedgerError> {
        const OP: &str = "reading queued SETs";
        self.read(OP, |c| async move {
            let limit = rows::bigint(params.limit as u64);
            let found = c
                .query(
                    "SELECT jti, position, set_jwt, queued_at_ms FROM ssf_sets
                     WHERE stream_id = $1 ORDER BY position, jti LIMIT $2",
                    &[&params.stream_id, &limit],
                )
                .await
                .ctx(OP)?;
            found
                .iter()
                .map(|row| {
                    Ok(PendingSet {
                        jti: column(row, 0)?,
                        position: rows::sequence(column(row, 1)?)?,
                        set: column(row, 2)?,
                        queued_at_ms: column(row, 3)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn ack_sets(&self, params: AckParams) -> Result<u64, LedgerError> {
        const OP: &str = "acknowledging SETs";
        self.check_open()?;
        if params.jtis.is_empty() {
            return Ok(0);
        }
        self.read(OP, |mut c| async move {
            let txn = c.transaction().await.ctx(OP)?;
            txn.batch_execute("SET LOCAL synchronous_commit = off")
                .await
                .ctx(OP)?;
            let n = txn
                .execute(
                    "DELETE FROM ssf_sets WHERE stream_id = $1 AND jti = ANY($2)",
                    &[&params.stream_id, &params.jtis],
                )
                .await
                .ctx(OP)?;
            txn.commit().await.ctx(OP)?;
            Ok(n)
        })
        .await
    }

    async fn discard_sets(&self, stream_id: &str) -> Result<u64, LedgerError> {
        const OP: &str = "discarding queued SETs";
        self.check_open()?;
        self.read(OP, |c| async move {
            c.execute("DELETE FROM ssf_sets WHERE stream_id = $1", &[&stream_id])
                .await
                .ctx(OP)
        })
        .await
    }

    async fn signal_cursor(&self) -> Result<u64, LedgerError> {
        const OP: &str = "reading the signal cursor";
        self.read(OP, |c| async move {
            let row = c
                .query_one("SELECT last FROM ssf_cursor", &[])
                .await
                .ctx(OP)?;
            rows::sequence(column(&row, 0)?)
        })
        .await
    }

    async fn lease_stream(&self, params: LeaseParams) -> Result<bool, LedgerError> {
        const OP: &str = "leasing a stream";
        self.check_open()?;
        self.read(OP, |mut c| async move {
            let txn = c.transaction().await.ctx(OP)?;
            txn.batch_execute("SET LOCAL synchronous_commit = off")
                .await
                .ctx(OP)?;
            let n = txn
                .execute(
                    "UPDATE ssf_streams SET lease_holder = $2, lease_until_ms = $4
                     WHERE stream_id = $1
                       AND (lease_holder IS NULL OR lease_holder = $2 OR lease_until_ms < $3)",
                    &[
                        &params.stream_id,
                        &params.holder,
                        &params.now_ms,
                        &params.until_ms,
                    ],
                )
                .await
                .ctx(OP)?;
            txn.commit().await.ctx(OP)?;
            Ok(n > 0)
        })
        .await
    }
}
