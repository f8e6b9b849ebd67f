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
//! - reserved for revocation: `rules` (rule id → rule) and `events` (sequence → event), written
//!   through the same group-commit path as credentials.

mod counts;
mod redb;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::counts::{BUCKET_SECS, COUNTED, LiveCounts, bucket as count_bucket};
pub use self::redb::{RedbLedger, RedbOptions};

/// What kind of credential a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    Jwt,
    X509,
}

impl CredentialKind {
    /// The wire and config name: `jwt` or `x509`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::X509 => "x509",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialKind {
    type Err = UnknownName;

    /// Parses `jwt` or `x509`; fails with the offending name otherwise.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jwt" => Ok(CredentialKind::Jwt),
            "x509" => Ok(CredentialKind::X509),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A name that is not one of an enumeration's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// How the caller proved its identity when the credential was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceKind {
    /// An X509-SVID presented as TLS client certificate.
    X509Svid,
    /// A JWT-SVID presented as bearer token.
    JwtSvid,
    /// A CI or Kubernetes OIDC ID token.
    Oidc,
}

impl EvidenceKind {
    /// `x509-svid`, `jwt-svid` or `oidc`.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::X509Svid => "x509-svid",
            EvidenceKind::JwtSvid => "jwt-svid",
            EvidenceKind::Oidc => "oidc",
        }
    }
}

/// The stored status of a credential. `Expired` is derived from `expires_at` when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Live,
    Revoked,
    Expired,
}

impl Status {
    /// `live`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
        }
    }
}

/// One issued credential, as the ledger keeps it. Holds no secret: neither the token nor the
/// evidence, only a SHA-256 of the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// JWT `jti`, or the certificate serial in lowercase hex.
    pub credential_id: String,
    pub kind: CredentialKind,
    /// The workload SPIFFE ID the credential was minted for (its `sub`).
    pub workload: String,
    pub owner: String,
    pub destination: String,
    pub purpose: String,
    /// Name of the grant that allowed the issuance.
    pub grant: String,
    pub evidence_kind: EvidenceKind,
    /// Lowercase hex SHA-256 of the evidence (the presented token or certificate).
    pub evidence_hash: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    pub status: Status,
    /// Who the CI token named, when the evidence was a CI / Kubernetes OIDC token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<CiEvidence>,
}

/// The CI identity behind a credential minted for an OIDC token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiEvidence {
    pub issuer: String,
    pub subject: String,
    /// The run / pipeline / pod the token belongs to, when the platform says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// A one-time-use marker stored with a record: a second record carrying the same key is
/// refused with [`LedgerError::Replay`] until the marker is swept after `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayGuard {
    /// Opaque key, e.g. a hash of (token, destination, purpose).
    pub key: String,
    /// Unix seconds after which the guarded token is dead anyway.
    pub expires_at: i64,
}

/// Parameters of [`Ledger::record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordParams {
    pub credential: CredentialRecord,
    pub replay_guard: Option<ReplayGuard>,
}

impl CredentialRecord {
    /// The status as of `now` (unix seconds): a live record past `expires_at` reads as expired.
    pub fn status_at(&self, now: i64) -> Status {
        match self.status {
            Status::Live if self.expires_at <= now => Status::Expired,
            other => other,
        }
    }
}

/// What a revocation rule selects by (DESIGN.md invariant 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    CredentialId,
    Workload,
    Destination,
    Purpose,
    Owner,
}

impl Selector {
    /// Every selector, in the order credentials are checked against rules.
    pub const ALL: [Selector; 5] = [
        Selector::CredentialId,
        Selector::Workload,
        Selector::Destination,
        Selector::Purpose,
        Selector::Owner,
    ];

    /// `credential_id`, `workload`, `destination`, `purpose` or `owner`.
    pub fn as_str(self) -> &'static str {
        match self {
            Selector::CredentialId => "credential_id",
            Selector::Workload => "workload",
            Selector::Destination => "destination",
            Selector::Purpose => "purpose",
            Selector::Owner => "owner",
        }
    }

    /// Returns the one-byte code the ledger stores for this selector: its position in
    /// [`Selector::ALL`].
    pub fn code(self) -> u8 {
        match self {
            Selector::CredentialId => 0,
            Selector::Workload => 1,
            Selector::Destination => 2,
            Selector::Purpose => 3,
            Selector::Owner => 4,
        }
    }

    /// Returns the selector stored as `code`, or `None` for a code no selector has.
    pub fn from_code(code: u8) -> Option<Selector> {
        Selector::ALL.get(usize::from(code)).copied()
    }

    /// Returns the value of this selector for `record`.
    pub fn value_of(self, record: &CredentialRecord) -> &str {
        match self {
            Selector::CredentialId => &record.credential_id,
            Selector::Workload => &record.workload,
            Selector::Destination => &record.destination,
            Selector::Purpose => &record.purpose,
            Selector::Owner => &record.owner,
        }
    }
}

/// A revocation rule to store: every credential whose `selector` value is `value` and that was
/// issued at or before `effective_at` is revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRule {
    pub revocation_id: String,
    pub selector: Selector,
    pub value: String,
    /// Unix seconds.
    pub effective_at: i64,
    pub reason: String,
    /// Who revoked (an admin SPIFFE ID, or the workload revoking its own token).
    pub revoked_by: String,
}

/// A stored revocation rule with its event sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRule {
    #[serde(flatten)]
    pub rule: NewRule,
    pub sequence: u64,
}

/// What happened, in the order of [`Event::sequence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Issued,
    Revoked,
    Expired,
}

impl EventKind {
    /// `issued`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Issued => "issued",
            EventKind::Revoked => "revoked",
            EventKind::Expired => "expired",
        }
    }
}

/// One event of the ledger's sequence (DESIGN.md invariant 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub sequence: u64,
    pub kind: EventKind,
    /// Unix seconds.
    pub at: i64,
    /// The credential of an `issued` or `expired` event. Stored events only name it: read
    /// back ([`Ledger::events_since`]) it is the record as the ledger holds it then, or `None`
    /// once the record has been swept (its event is about to be swept too). Live events
    /// ([`Ledger::subscribe`]) always carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRecord>,
    /// The rule of a `revoked` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationRule>,
    /// When the event's batch was committed, for live delivery latency; not stored.
    #[serde(skip)]
    pub committed: Option<std::time::Instant>,
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
            && self.kind.is_none_or(|k| k == record.kind)
    }
}

/// Parameters of [`Ledger::sweep`].
#[derive(Clone, Copy, Debug)]
pub struct SweepParams {
    /// Records whose `expires_at` is strictly before this unix time are deleted, and events
    /// that happened before it.
    pub expired_before: i64,
    /// Rules whose `effective_at` is strictly before this unix time are deleted (everything
    /// they could cover has expired).
    pub rules_before: i64,
    /// At most this many records are deleted in one call (bounds the write transaction).
    pub limit: usize,
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
}

/// The durable record of issued credentials, revocation rules and events.
#[async_trait]
pub trait Ledger: Send + Sync + fmt::Debug + 'static {
    /// Durably records one credential, its replay guard if any, and its `issued` event,
    /// atomically. Returns the event's sequence once committed and fsynced, sharing the commit
    /// with any writes submitted concurrently. Fails with `Replay` if the guard's key is already
    /// stored, `Duplicate` if the id is already recorded (nothing is written in either case),
    /// `Closed` after [`Ledger::close`].
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

    /// Appends an `expired` event for every credential whose `expires_at` passed since the
    /// last call, up to `now`; returns how many.
    async fn expire(&self, now: i64) -> Result<u64, LedgerError>;

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

    /// Deletes expired records, old events, dead rules and replay guards; returns how many
    /// records were deleted.
    async fn sweep(&self, params: SweepParams) -> Result<u64, LedgerError>;

    /// Returns how many records the ledger holds (live, revoked and not yet swept).
    async fn len(&self) -> Result<u64, LedgerError>;

    /// Returns true when the ledger holds no record.
    async fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.len().await? == 0)
    }

    /// Commits everything submitted so far, then refuses new writes (`Closed`); reads keep
    /// working. Idempotent.
    async fn close(&self) -> Result<(), LedgerError>;
}
