//! The ledger: the durable record of every issued credential.
//!
//! Invariant 1 of DESIGN.md lives here: [`Ledger::record`] returns only once the record is
//! committed and fsynced. Implementations batch concurrent records into one durable commit
//! (group commit), so the cost of an fsync is shared by every mint waiting on it.
//!
//! Layout, shared by every implementation (redb tables / PostgreSQL tables):
//! - `credentials`: credential id → [`CredentialRecord`];
//! - `expiry`: (expires_at, credential id) → (), to sweep expired records in order;
//! - `live_counts`: (expires_at, selector code, value) → how many credentials with that value
//!   expire then, written in the transaction that stores the records, so a restart loads
//!   [`LiveCounts`] without reading records; `x509_expiry`: (expires_at, credential id) → ()
//!   of X.509 credentials only, so a restart reads just those records (for the CRL);
//! - `rules` (rule id → rule) and `events` (sequence → event), written through the same
//!   group-commit path as credentials; `replay_expiry` ((until, one-time evidence key) → ())
//!   for CI tokens, in order of expiry;
//! - `usage` and `usage days`: how much each grant is used ([`UsageStore`]), written in the
//!   transaction that stores the records, one row per distinct key per batch.
//!
//! In PostgreSQL ([`PostgresLedger`]) the `expiry`, `issued` and `x509_expiry` orders are
//! indexes of `credentials`, and the sequence is one counter row shared by every replica.
//!
//! The domain types it stores ([`CredentialRecord`], [`RevocationRule`], [`Event`]) live in
//! `tessera-core`; this crate only keeps them.

mod acks;
mod anchors;
#[cfg(test)]
mod conformance;
#[cfg(test)]
mod conformance_signals;
#[cfg(test)]
mod conformance_usage;
mod copy;
mod metrics;
mod postgres;
mod redb;
mod signals;
#[cfg(test)]
mod test_records;
mod usage;

use std::fmt;

use async_trait::async_trait;

pub use self::acks::{AckStore, Acknowledgement};
pub use self::anchors::{AnchorStore, AuditAnchor};
pub use self::copy::{CopyError, CopyReport, copy_redb_to_postgres, open_source};
pub use self::metrics::LedgerMetrics;
pub use self::postgres::{
    EventRow, ImportBatch, ImportError, ImportedCredential, LiveCountRow, PostgresImport,
    PostgresLedger, PostgresOptions, SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION, migrate,
    migrate_with,
};
pub use self::redb::{RedbLedger, RedbOptions};
pub use self::signals::{
    AckParams, EnqueueParams, Enqueued, LeaseParams, NewSet, NewStream, PendingParams, PendingSet,
    SignalStore, StoredStream, StreamCreated, StreamLimits, StreamUpdate,
};
pub use self::usage::{
    USAGE_DAYS_KEPT, UsageDay, UsageKey, UsageQuery, UsageRow, UsageStore, utc_day,
};
pub use tessera_core::domain::{
    CiEvidence, CredentialKind, CredentialRecord, Event, EventKind, EvidenceKind, NewRule,
    RevocationRule, Selector, Status, StatusListRef,
};
pub use tessera_core::revocation::{BUCKET_SECS, COUNTED, LiveCounts, count_bucket};

/// A one-time-use marker stored with a record: a second record carrying the same guard is
/// refused with [`LedgerError::Replay`] until the marker is swept after `expires_at`.
///
/// The key must determine `expires_at`: both come from the one token (the key hashes it with
/// the destination and purpose; the expiry is its `exp` plus a constant clock-skew leeway), so
/// the same key never arrives with another expiry. The embedded ledger relies on it: it finds
/// a guard by (`expires_at`, `key`), which keeps its guards in time order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayGuard {
    /// Opaque key, e.g. a hash of (token, destination, purpose).
    pub key: String,
    /// Unix seconds after which the guarded token is dead anyway (its `exp` plus the leeway).
    pub expires_at: i64,
}

/// Parameters of [`Ledger::record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordParams {
    pub credential: CredentialRecord,
    pub replay_guard: Option<ReplayGuard>,
}

/// A page of credentials, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialPage {
    pub credentials: Vec<CredentialRecord>,
    /// Pass back as [`ListParams::page_token`] for the next page; empty at the end.
    pub next_page_token: String,
}

/// Parameters of [`Ledger::list`]. Empty filters match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    pub workload: String,
    pub owner: String,
    pub destination: String,
    pub purpose: String,
    /// The name of the grant the credentials were minted under.
    pub grant: String,
    pub kind: Option<CredentialKind>,
    pub page_size: usize,
    pub page_token: String,
    /// Records examined at most for one page (bounds the cost of a selective filter).
    pub scan_limit: usize,
}

impl ListParams {
    /// Returns true when `record` passes every filter.
    pub fn matches(&self, record: &CredentialRecord) -> bool {
        let field = |want: &str, have: &str| want.is_empty() || want == have;
        field(&self.workload, &record.workload)
            && field(&self.owner, &record.owner)
            && field(&self.destination, &record.destination)
            && field(&self.purpose, &record.purpose)
            && field(&self.grant, &record.grant)
            && self.kind.is_none_or(|k| k == record.kind)
    }
}

/// Parameters of [`Ledger::sweep`].
#[derive(Clone, Copy, Debug)]
pub struct SweepParams {
    /// Records whose `expires_at` is strictly before this unix time are deleted, events that
    /// happened before it, and usage days more than [`USAGE_DAYS_KEPT`] days before it.
    pub expired_before: i64,
    /// Rules whose `effective_at` is strictly before this unix time are deleted (everything
    /// they could cover has expired).
    pub rules_before: i64,
    /// At most this many records are deleted in one call (bounds the write transaction).
    pub limit: usize,
}

/// Parameters of [`Ledger::status_list_records`]: one page of the records that carry a status
/// list entry, in (expires_at, credential id) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusScan {
    /// Only records whose `expires_at` is strictly after this unix time.
    pub expires_after: i64,
    /// Resume strictly after this (expires_at, credential id): the last record of the previous
    /// page. `None` starts at the beginning.
    pub after: Option<(i64, String)>,
    /// Records returned at most.
    pub limit: usize,
}

impl StatusScan {
    /// Returns the scan of the page that follows `page` (its last record), or `None` when
    /// `page` was the last one (shorter than the limit).
    pub fn next(&self, page: &[CredentialRecord]) -> Option<StatusScan> {
        let last = page.last().filter(|_| page.len() >= self.limit)?;
        Some(StatusScan {
            after: Some((last.expires_at, last.credential_id.clone())),
            ..self.clone()
        })
    }
}

/// Errors of the ledger. The message names the operation; callers map every variant to an
/// internal/unavailable error without exposing storage details.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger storage error: {0}")]
    Storage(String),
    #[error("ledger record is corrupt: {0}")]
    Corrupt(String),
    #[error("ledger is closed")]
    Closed,
    #[error("credential id {0} is already recorded")]
    Duplicate(String),
    #[error("this token was already exchanged for this destination and purpose")]
    Replay,
    #[error("{0}")]
    BadRequest(String),
    /// The database was migrated by a newer build: this one refuses to use it rather than
    /// misread it.
    #[error(
        "the ledger database has schema version {found}, newer than the {supported} this build \
         supports: run a newer tessera"
    )]
    SchemaTooNew { found: u32, supported: u32 },
}

/// The durable record of issued credentials, revocation rules and events. Every ledger also
/// keeps the Shared Signals delivery state ([`SignalStore`]), acknowledgements of rules
/// ([`AckStore`]) and the usage of grants ([`UsageStore`]).
#[async_trait]
pub trait Ledger:
    SignalStore + AckStore + AnchorStore + UsageStore + Send + Sync + fmt::Debug + 'static
{
    /// Durably records one credential, its replay guard if any, its `issued` event and its
    /// usage ([`UsageStore`]), atomically. Returns the event's sequence once committed and
    /// fsynced, sharing the commit with any writes submitted concurrently. Fails with `Replay`
    /// if the guard is already stored, `Duplicate` if the id is already recorded
    /// (nothing is written in either case), `Closed` after [`Ledger::close`].
    async fn record(&self, params: RecordParams) -> Result<u64, LedgerError>;

    /// Durably stores a revocation rule and its `revoked` event; returns it with its sequence.
    async fn add_rule(&self, rule: NewRule) -> Result<RevocationRule, LedgerError>;

    /// Returns every stored rule, oldest first.
    async fn rules(&self) -> Result<Vec<RevocationRule>, LedgerError>;

    /// Returns up to `limit` events with a sequence greater than `since`, in order, each
    /// `issued`/`expired` one with its credential as stored now (`None` if swept since). Fails
    /// when the ledger cannot be read or holds an undecodable event or record (`Corrupt`).
    async fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>, LedgerError>;

    /// Returns the last sequence assigned (0 for an empty ledger).
    async fn last_sequence(&self) -> Result<u64, LedgerError>;

    /// Appends an `expired` event, in (expires_at, id) order, for at most `limit` of the
    /// credentials whose `expires_at` is before `now` and that have none yet; returns how many.
    /// Fewer than `limit` means none is left before `now`; `limit` means the caller calls
    /// again to write the rest (each call is one bounded write transaction).
    async fn expire(&self, now: i64, limit: usize) -> Result<u64, LedgerError>;

    /// Returns committed events as they are committed, in sequence order. A receiver that lags
    /// too far sees `RecvError::Lagged` and resumes from [`Ledger::events_since`].
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event>;

    /// Returns the record with this id, or `None` if it was never recorded or has been swept.
    async fn get(&self, credential_id: &str) -> Result<Option<CredentialRecord>, LedgerError>;

    /// Returns one page of records matching `params`, newest first.
    async fn list(&self, params: ListParams) -> Result<CredentialPage, LedgerError>;

    /// Returns up to `limit` records in id order after `after` (start-up rebuilds use this).
    async fn scan(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<CredentialRecord>, LedgerError>;

    /// Returns the live counts of every credential that expires after `now`, as persisted with
    /// the records (cost grows with distinct values times expiry seconds, not with records).
    /// Fails when the ledger cannot be read or holds a selector code it does not know.
    async fn live_counts(&self, now: i64) -> Result<LiveCounts, LedgerError>;

    /// Returns the records of X.509 credentials that expire after `after` (the CRL lists revoked
    /// ones until a period past expiry), in expiry order. Fails when the ledger cannot be read
    /// or a record is corrupt.
    async fn x509_records(&self, after: i64) -> Result<Vec<CredentialRecord>, LedgerError>;

    /// Returns one page of the records that carry a status list entry and expire after
    /// `scan.expires_after` (status lists are rebuilt from them at start), in (expires_at, id)
    /// order; reads no other record. Fails when the ledger cannot be read or a record is
    /// corrupt.
    async fn status_list_records(
        &self,
        scan: StatusScan,
    ) -> Result<Vec<CredentialRecord>, LedgerError>;

    /// Deletes expired records, old events, dead rules, replay guards and old usage days;
    /// returns how many records were deleted.
    async fn sweep(&self, params: SweepParams) -> Result<u64, LedgerError>;

    /// Returns how many records the ledger holds (live, revoked and not yet swept).
    async fn len(&self) -> Result<u64, LedgerError>;

    /// Returns the issue time in unix milliseconds of the newest record held
    /// ([`CredentialRecord::issued_at_ms`]), or `None` when it holds none: at start, so that a
    /// rule's cut-off is never before an issue already recorded, whatever the clock says.
    /// Reads only the records of the newest issue second.
    async fn newest_issue_ms(&self) -> Result<Option<i64>, LedgerError>;

    /// Returns true when other processes write to this ledger too (replicas on a shared
    /// database), so what this process has seen of it may lag behind it.
    fn is_shared(&self) -> bool {
        false
    }

    /// Checks that the ledger can serve now (for `/readyz`): an embedded ledger always can; a
    /// shared one answers a trivial query. Fails with `Storage` when it cannot.
    async fn ping(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    /// Returns true when the ledger holds no record.
    async fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.len().await? == 0)
    }

    /// Commits everything submitted so far, then refuses new writes (`Closed`); reads keep
    /// working. Idempotent.
    async fn close(&self) -> Result<(), LedgerError>;
}
