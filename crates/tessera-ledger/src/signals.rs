//! Shared Signals delivery state (OpenID SSF 1.0): the streams receivers created and the
//! Security Event Tokens queued for each until the receiver acknowledges them, so that a
//! restart resends what was not acknowledged. The ledger keeps a stream's configuration as the
//! server wrote it (JSON); it only knows its id, owner and the sequence it starts after.
//!
//! Layout (redb tables / PostgreSQL tables, see each backend):
//! - streams: stream id → [`StoredStream`] (and, for push delivery, a lease: which replica
//!   pushes it, until when);
//! - queued SETs: (stream id, position, jti) → the signed SET, with a (stream id, jti) key that
//!   makes queueing idempotent: a SET whose jti is already queued for the stream is not queued
//!   again (replicas that all follow the same event queue it once);
//! - the signal cursor: the last event sequence whose SETs were queued.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// One stream as the ledger keeps it. `Debug` does not print the configuration (it may hold the
/// receiver's authorization header).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStream {
    pub stream_id: String,
    /// The SPIFFE ID of the receiver that created it.
    pub owner: String,
    /// The last event sequence when the stream was created: it gets events after this one.
    pub from_sequence: u64,
    /// The stream configuration, JSON as the server wrote it.
    pub config: String,
}

impl fmt::Debug for StoredStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredStream")
            .field("stream_id", &self.stream_id)
            .field("owner", &self.owner)
            .field("from_sequence", &self.from_sequence)
            .field("config", &format_args!("({} bytes)", self.config.len()))
            .finish()
    }
}

/// How many streams may exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams one owner may have.
    pub per_owner: usize,
    /// Streams in all.
    pub total: usize,
}

/// Parameters of [`SignalStore::create_stream`].
#[derive(Clone, Debug)]
pub struct NewStream {
    pub stream: StoredStream,
    pub limits: StreamLimits,
}

/// What [`SignalStore::create_stream`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamCreated {
    Created,
    /// The owner already has `per_owner` streams: nothing was stored.
    OwnerFull,
    /// There are `total` streams already: nothing was stored.
    Full,
    /// A stream with this id exists: nothing was stored.
    Duplicate,
}

/// Parameters of [`SignalStore::update_stream`]: the new configuration of a stream.
#[derive(Clone)]
pub struct StreamUpdate {
    pub stream_id: String,
    pub config: String,
}

impl fmt::Debug for StreamUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamUpdate")
            .field("stream_id", &self.stream_id)
            .finish_non_exhaustive()
    }
}

/// A signed SET to queue for one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSet {
    pub stream_id: String,
    /// The SET's `jti`: a second SET with the same jti for the same stream is not queued.
    pub jti: String,
    /// Delivery order within the stream (then by jti): the event sequence that caused it.
    pub position: u64,
    /// The compact JWS.
    pub set: String,
    /// Unix milliseconds when it was queued.
    pub queued_at_ms: i64,
}

/// Parameters of [`SignalStore::enqueue_sets`].
#[derive(Clone, Debug)]
pub struct EnqueueParams {
    pub sets: Vec<NewSet>,
    /// Most SETs a stream keeps: past it, its oldest are dropped.
    pub max_pending: usize,
    /// When given, the signal cursor moves up to this sequence in the same transaction.
    pub through_sequence: Option<u64>,
    /// Commit durably before answering. `false` suits SETs that are rebuilt from durable rules
    /// after a crash (the cursor is lost with them).
    pub durable: bool,
}

/// What [`SignalStore::enqueue_sets`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// SETs newly queued (not already queued, for a stream that exists).
    pub queued: u64,
    /// Oldest SETs dropped to keep streams within `max_pending`.
    pub dropped: u64,
}

/// A queued SET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSet {
    pub jti: String,
    pub position: u64,
    pub set: String,
    pub queued_at_ms: i64,
}

/// Parameters of [`SignalStore::pending_sets`].
#[derive(Clone, Debug)]
pub struct PendingParams {
    pub stream_id: String,
    pub limit: usize,
}

/// Parameters of [`SignalStore::ack_sets`].
#[derive(Clone, Debug)]
pub struct AckParams {
    pub stream_id: String,
    /// The jtis to forget; unknown ones are ignored.
    pub jtis: Vec<String>,
}

/// Parameters of [`SignalStore::lease_stream`].
#[derive(Clone, Debug)]
pub struct LeaseParams {
    pub stream_id: String,
    /// Who asks (one id per replica).
    pub holder: String,
    /// Unix milliseconds now.
    pub now_ms: i64,
    /// Until when the lease is held if granted, unix milliseconds.
    pub until_ms: i64,
}

/// Keeps Shared Signals streams and the SETs queued for them (see the module doc).
#[async_trait]
pub trait SignalStore: Send + Sync {
    /// Stores a new stream unless it would exceed `limits` or its id is taken; returns which.
    /// Decided atomically, also across replicas.
    async fn create_stream(&self, params: NewStream) -> Result<StreamCreated, LedgerError>;

    /// Returns every stream, in id order.
    async fn streams(&self) -> Result<Vec<StoredStream>, LedgerError>;

    /// Returns the stream with this id, if any.
    async fn stream(&self, stream_id: &str) -> Result<Option<StoredStream>, LedgerError>;

    /// Replaces a stream's configuration; returns false (changing nothing) when it does not
    /// exist.
    async fn update_stream(&self, update: StreamUpdate) -> Result<bool, LedgerError>;

    /// Deletes a stream with its queued SETs and lease; returns false when it did not exist.
    async fn delete_stream(&self, stream_id: &str) -> Result<bool, LedgerError>;

    /// Queues SETs (ignoring those already queued and those of streams that do not exist),
    /// drops the oldest of any stream past `max_pending`, and moves the cursor, atomically. A
    /// batch that moves the cursor (`through_sequence`) also ignores SETs whose position is at
    /// or below the cursor: another follower (replica) queued those events already, and they
    /// may have been delivered and acknowledged since.
    async fn enqueue_sets(&self, params: EnqueueParams) -> Result<Enqueued, LedgerError>;

    /// Returns up to `limit` queued SETs of a stream, oldest first (by position, then jti).
    async fn pending_sets(&self, params: PendingParams) -> Result<Vec<PendingSet>, LedgerError>;

    /// Forgets acknowledged SETs of a stream; returns how many were queued. Not necessarily
    /// durable on return: a crash may bring some back, to be delivered again.
    async fn ack_sets(&self, params: AckParams) -> Result<u64, LedgerError>;

    /// Forgets every SET queued for a stream (it was disabled); returns how many.
    async fn discard_sets(&self, stream_id: &str) -> Result<u64, LedgerError>;

    /// Returns the last event sequence whose SETs were queued (0 at first).
    async fn signal_cursor(&self) -> Result<u64, LedgerError>;

    /// Grants or renews the push lease of a stream to `holder` when it is free, expired or
    /// already `holder`'s; returns whether `holder` holds it now. False for an unknown stream.
    async fn lease_stream(&self, params: LeaseParams) -> Result<bool, LedgerError>;
}
