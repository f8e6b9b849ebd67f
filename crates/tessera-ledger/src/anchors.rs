//! Where the audit log's hash chain is anchored: the last line (sequence and hash) the broker
//! wrote to each audit log, kept in the ledger, so that lines deleted from the end of the file
//! — which leave a chain that still verifies — are detected (`tessera audit verify --config`).
//! An anchor only moves forward. It commits without an fsync: a crash may leave an older
//! anchor, which still proves everything up to it.

use async_trait::async_trait;

use crate::LedgerError;

/// The last line written to one audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditAnchor {
    /// The log's identity: the hash of its first line.
    pub log: String,
    /// The line's `seq`.
    pub seq: u64,
    /// The line's `hash`.
    pub hash: String,
    /// Unix milliseconds when it was anchored.
    pub at_ms: i64,
}

/// Keeps the anchors of audit logs.
#[async_trait]
pub trait AnchorStore: Send + Sync {
    /// Stores `anchor` unless the log's stored anchor is at the same or a later line. Fails
    /// with `Closed` after close.
    async fn anchor_audit(&self, anchor: AuditAnchor) -> Result<(), LedgerError>;

    /// Returns the anchor of the audit log `log` (the hash of its first line), if any.
    async fn audit_anchor(&self, log: &str) -> Result<Option<AuditAnchor>, LedgerError>;
}
