//! The Shared Signals state of the redb ledger ([`SignalStore`]): its own tables, written in
//! transactions of their own on tokio's blocking pool (redb runs one write transaction at a
//! time, so these take turns with the writer thread's batches). Acknowledgements commit without
//! an fsync: the next durable commit persists them, and a crash before it only means a SET is
//! delivered again.

use ::redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{META, RedbLedger, StorageContext, decode};
use crate::LedgerError;
use crate::signals::{
    AckParams, EnqueueParams, Enqueued, LeaseParams, NewStream, PendingParams, PendingSet,
    SignalStore, StoredStream, StreamCreated, StreamUpdate,
};

/// Stream id → JSON of [`StoredStream`].
const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("ssf_streams");
/// (stream id, position, jti) → JSON of [`StoredSet`], in delivery order.
const SETS: TableDefinition<(&str, u64, &str), &[u8]> = TableDefinition::new("ssf_sets");
/// (stream id, jti) → position: which SETs are queued (queueing is idempotent).
const SET_IDS: TableDefinition<(&str, &str), u64> = TableDefinition::new("ssf_set_ids");
/// Stream id → how many SETs it has queued.
const PENDING: TableDefinition<&str, u64> = TableDefinition::new("ssf_pending");
/// Stream id → JSON of [`Lease`].
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("ssf_leases");
/// `META` key of the signal cursor.
const CURSOR_KEY: &str = "ssf_cursor";

/// A queued SET's value.
#[derive(Serialize, Deserialize)]
struct StoredSet {
    set: String,
    queued_at_ms: i64,
}

/// Who pushes a stream, until when.
#[derive(Serialize, Deserialize)]
struct Lease {
    holder: String,
    until_ms: i64,
}

/// Creates the tables of this module in `txn` (at open), and forgets every push lease: only
/// one process opens the file, so a lease left by an earlier one (stopped or crashed) is stale.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), LedgerError> {
    const OP: &str = "creating the shared signals tables";
    txn.delete_table(LEASES).ctx(OP)?;
    txn.open_table(STREAMS).ctx(OP)?;
    txn.open_table(SETS).ctx(OP)?;
    txn.open_table(SET_IDS).ctx(OP)?;
    txn.open_table(PENDING).ctx(OP)?;
    txn.open_table(LEASES).ctx(OP)?;
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(value).map_err(|e| LedgerError::Storage(format!("encoding: {e}")))
}

impl RedbLedger {
    /// Runs `write` in a write transaction of its own on the blocking pool and commits it
    /// (fsynced when `durable` and the ledger is durable); returns what `write` returns. Fails
    /// with `Closed` after [`crate::Ledger::close`].
    pub(super) async fn signal_write<T, F>(&self, durable: bool, write: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, LedgerError> + Send + 'static,
    {
        const OP: &str = "writing shared signals state";
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(LedgerError::Closed);
        }
        let durable = durable && self.durable;
        self.read(move |db: &Database| {
            let mut txn = db.begin_write().ctx(OP)?;
            let durability = if durable {
                Durability::Immediate
            } else {
                Durability::None
            };
            txn.set_durability(durability).ctx(OP)?;
            let out = write(&txn)?;
            txn.commit().ctx(OP)?;
            Ok(out)
        })
        .await
    }
}

/// Returns every stored stream, in id order.
fn all_streams(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<StoredStream>, LedgerError> {
    const OP: &str = "reading streams";
    let mut out = Vec::new();
    for entry in table.iter().ctx(OP)? {
        let (_, bytes) = entry.ctx(OP)?;
        out.push(decode("stream", bytes.value())?);
    }
    Ok(out)
}

/// Stores `p.stream` in `txn` unless a limit or its id forbids it.
fn create(txn: &WriteTransaction, p: &NewStream) -> Result<StreamCreated, LedgerError> {
    const OP: &str = "creating a stream";
    let mut table = txn.open_table(STREAMS).ctx(OP)?;
    if table.get(p.stream.stream_id.as_str()).ctx(OP)?.is_some() {
        return Ok(StreamCreated::Duplicate);
    }
    let streams = all_streams(&table)?;
    if streams.len() >= p.limits.total {
        return Ok(StreamCreated::Full);
    }
    let owned = streams.iter().filter(|s| s.owner == p.stream.owner).count();
    if owned >= p.limits.per_owner {
        return Ok(StreamCreated::OwnerFull);
    }
    table
        .insert(p.stream.stream_id.as_str(), encode(&p.stream)?.as_slice())
        .ctx(OP)?;
    Ok(StreamCreated::Created)
}

/// Removes the SETs of `stream_id` whose jti is in `jtis` (all of them when `None`); returns
/// how many were queued.
fn remove_sets(
    txn: &WriteTransaction,
    stream_id: &str,
    jtis: Option<&[String]>,
) -> Result<u64, LedgerError> {
    const OP: &str = "removing queued SETs";
    let mut sets = txn.open_table(SETS).ctx(OP)?;
    let mut ids = txn.open_table(SET_IDS).ctx(OP)?;
    let mut pending = txn.open_table(PENDING).ctx(OP)?;
    let victims: Vec<(String, u64)> = match jtis {
        Some(jtis) => {
            let mut found = Vec::new();
            for jti in jtis {
                if let Some(position) = ids.get((stream_id, jti.as_str())).ctx(OP)? {
                    found.push((jti.clone(), position.value()));
                }
            }
            found
        }
        None => {
            let mut found = Vec::new();
            for entry in ids.range((stream_id, "")..).ctx(OP)? {
                let (key, position) = entry.ctx(OP)?;
                let (stream, jti) = key.value();
                if stream != stream_id {
                    break;
                }
                found.push((jti.to_owned(), position.value()));
            }
            found
        }
    };
    for (jti, position) in &victims {
        ids.remove((stream_id, jti.as_str())).ctx(OP)?;
        sets.remove((stream_id, *position, jti.as_str())).ctx(OP)?;
    }
    let removed = victims.len() as u64;
    let left = pending
        .get(stream_id)
        .ctx(OP)?
        .map_or(0, |n| n.value())
        .saturating_sub(removed);
    if left == 0 {
        pending.remove(stream_id).ctx(OP)?;
    } else {
        pending.insert(stream_id, left).ctx(OP)?;
    }
    Ok(removed)
}

/// Queues `p.sets` in `txn`, drops the oldest past `p.max_pending`, moves the cursor.
fn enqueue(txn: &WriteTransaction, p: &EnqueueParams) -> Result<Enqueued, LedgerError> {
    const OP: &str = "queueing SETs";
    let mut out = Enqueued::default();
    let mut touched: Vec<&str> = Vec::new();
    // A follower's batch skips events at or below the cursor: already queued (see the trait).
    let after = match p.through_sequence {
        Some(_) => {
            let meta = txn.open_table(META).ctx(OP)?;
            Some(meta.get(CURSOR_KEY).ctx(OP)?.map_or(0, |v| v.value()))
        }
        None => None,
    };
    {
        let streams = txn.open_table(STREAMS).ctx(OP)?;
        let mut sets = txn.open_table(SETS).ctx(OP)?;
        let mut ids = txn.open_table(SET_IDS).ctx(OP)?;
        let mut pending = txn.open_table(PENDING).ctx(OP)?;
        for set in &p.sets {
            let stream = set.stream_id.as_str();
            if after.is_some_and(|cursor| set.position <= cursor)
                || streams.get(stream).ctx(OP)?.is_none()
                || ids.get((stream, set.jti.as_str())).ctx(OP)?.is_some()
            {
                continue;
            }
            let value = encode(&StoredSet {
                set: set.set.clone(),
                queued_at_ms: set.queued_at_ms,
            })?;
            sets.insert((stream, set.position, set.jti.as_str()), value.as_slice())
                .ctx(OP)?;
            ids.insert((stream, set.jti.as_str()), set.position)
                .ctx(OP)?;
            let n = pending.get(stream).ctx(OP)?.map_or(0, |n| n.value());
            pending.insert(stream, n + 1).ctx(OP)?;
            out.queued += 1;
            if !touched.contains(&stream) {
                touched.push(stream);
            }
        }
    }
    for stream in touched {
        out.dropped += drop_oldest(txn, stream, p.max_pending)?;
    }
    if let Some(through) = p.through_sequence {
        let mut meta = txn.open_table(META).ctx(OP)?;
        let cursor = meta.get(CURSOR_KEY).ctx(OP)?.map_or(0, |v| v.value());
        meta.insert(CURSOR_KEY, cursor.max(through)).ctx(OP)?;
    }
    Ok(out)
}

/// Drops the oldest SETs of `stream` beyond `max`; returns how many.
fn drop_oldest(txn: &WriteTransaction, stream: &str, max: usize) -> Result<u64, LedgerError> {
    const OP: &str = "dropping the oldest SETs";
    let count = {
        let pending = txn.open_table(PENDING).ctx(OP)?;
        pending.get(stream).ctx(OP)?.map_or(0, |n| n.value())
    };
    let excess = count.saturating_sub(max as u64);
    if excess == 0 {
        return Ok(0);
    }
    let oldest: Vec<String> = {
        let sets = txn.open_table(SETS).ctx(OP)?;
        let mut found = Vec::new();
        for entry in sets.range((stream, 0u64, "")..).ctx(OP)? {
            let (key, _) = entry.ctx(OP)?;
            let (s, _, jti) = key.value();
            if s != stream || found.len() as u64 == excess {
                break;
            }
            found.push(jti.to_owned());
        }
        found
    };
    remove_sets(txn, stream, Some(&oldest))
}

/// Reads up to `p.limit` SETs of a stream, oldest first.
fn pending(db: &Database, p: &PendingParams) -> Result<Vec<PendingSet>, LedgerError> {
    const OP: &str = "reading queued SETs";
    let txn = db.begin_read().ctx(OP)?;
    let sets = txn.open_table(SETS).ctx(OP)?;
    let mut out = Vec::new();
    for entry in sets.range((p.stream_id.as_str(), 0u64, "")..).ctx(OP)? {
        let (key, value) = entry.ctx(OP)?;
        let (stream, position, jti) = key.value();
        if stream != p.stream_id || out.len() == p.limit {
            break;
        }
        let stored: StoredSet = decode("queued SET", value.value())?;
        out.push(PendingSet {
            jti: jti.to_owned(),
            position,
            set: stored.set,
            queued_at_ms: stored.queued_at_ms,
        });
    }
    Ok(out)
}

/// Grants or renews a lease in `txn` (see [`SignalStore::lease_stream`]).
fn lease(txn: &WriteTransaction, p: &LeaseParams) -> Result<bool, LedgerError> {
    const OP: &str = "leasing a stream";
    if txn
        .open_table(STREAMS)
        .ctx(OP)?
        .get(p.stream_id.as_str())
        .ctx(OP)?
        .is_none()
    {
        return Ok(false);
    }
    let mut leases = txn.open_table(LEASES).ctx(OP)?;
    let current: Option<Lease> = match leases.get(p.stream_id.as_str()).ctx(OP)? {
        Some(bytes) => Some(decode("lease", bytes.value())?),
        None => None,
    };
    let free = current
        .as_ref()
        .is_none_or(|l| l.holder == p.holder || l.until_ms < p.now_ms);
    if free {
        let lease = encode(&Lease {
            holder: p.holder.clone(),
            until_ms: p.until_ms,
        })?;
        leases
            .insert(p.stream_id.as_str(), lease.as_slice())
            .ctx(OP)?;
    }
    Ok(free)
}

#[async_trait]
impl SignalStore for RedbLedger {
    async fn create_stream(&self, params: NewStream) -> Result<StreamCreated, LedgerError> {
        self.signal_write(true, move |txn| create(txn, &params))
            .await
    }

    async fn streams(&self) -> Result<Vec<StoredStream>, LedgerError> {
        const OP: &str = "reading streams";
        self.read(|db| {
            let txn = db.begin_read().ctx(OP)?;
            all_streams(&txn.open_table(STREAMS).ctx(OP)?)
        })
        .await
    }

    async fn stream(&self, stream_id: &str) -> Result<Option<StoredStream>, LedgerError> {
        const OP: &str = "reading a stream";
        let id = stream_id.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(STREAMS).ctx(OP)?;
            match table.get(id.as_str()).ctx(OP)? {
                Some(bytes) => decode("stream", bytes.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn update_stream(&self, update: StreamUpdate) -> Result<bool, LedgerError> {
        const OP: &str = "updating a stream";
        self.signal_write(true, move |txn| {
            let mut table = txn.open_table(STREAMS).ctx(OP)?;
            let mut stream: StoredStream = match table.get(update.stream_id.as_str()).ctx(OP)? {
                Some(bytes) => decode("stream", bytes.value())?,
                None => return Ok(false),
            };
            stream.config = update.config;
            table
                .insert(update.stream_id.as_str(), encode(&stream)?.as_slice())
                .ctx(OP)?;
            Ok(true)
        })
        .await
    }

    async fn delete_stream(&self, stream_id: &str) -> Result<bool, LedgerError> {
        const OP: &str = "deleting a stream";
        let id = stream_id.to_owned();
        self.signal_write(true, move |txn| {
            let existed = txn
                .open_table(STREAMS)
                .ctx(OP)?
                .remove(id.as_str())
                .ctx(OP)?
                .is_some();
            txn.open_table(LEASES)
                .ctx(OP)?
                .remove(id.as_str())
                .ctx(OP)?;
            remove_sets(txn, &id, None)?;
            Ok(existed)
        })
        .await
    }

    async fn enqueue_sets(&self, params: EnqueueParams) -> Result<Enqueued, LedgerError> {
        self.signal_write(params.durable, move |txn| enqueue(txn, &params))
            .await
    }

    async fn pending_sets(&self, params: PendingParams) -> Result<Vec<PendingSet>, LedgerError> {
        self.read(move |db| pending(db, &params)).await
    }

    async fn ack_sets(&self, params: AckParams) -> Result<u64, LedgerError> {
        if params.jtis.is_empty() {
            return Ok(0);
        }
        self.signal_write(false, move |txn| {
            remove_sets(txn, &params.stream_id, Some(&params.jtis))
        })
        .await
    }

    async fn discard_sets(&self, stream_id: &str) -> Result<u64, LedgerError> {
        let id = stream_id.to_owned();
        self.signal_write(true, move |txn| remove_sets(txn, &id, None))
            .await
    }

    async fn signal_cursor(&self) -> Result<u64, LedgerError> {
        const OP: &str = "reading the signal cursor";
        self.read(|db| {
            let txn = db.begin_read().ctx(OP)?;
            let meta = txn.open_table(META).ctx(OP)?;
            Ok(meta.get(CURSOR_KEY).ctx(OP)?.map_or(0, |v| v.value()))
        })
        .await
    }

    async fn lease_stream(&self, params: LeaseParams) -> Result<bool, LedgerError> {
        self.signal_write(false, move |txn| lease(txn, &params))
            .await
    }
}
