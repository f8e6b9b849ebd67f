//! Relying parties' acknowledgements of revocation rules: the evidence, shared by every replica,
//! of who enforces each rule and since when (`Admin/GetRevocation`). The first acknowledgement
//! of a rule by a relying party is kept; later ones change nothing. Acknowledgements commit
//! without an fsync (a crash may lose the last few; the rules themselves are durable) and are
//! forgotten once everything their rule covered has expired.

use async_trait::async_trait;

use crate::LedgerError;

/// One relying party's acknowledgement of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub revocation_id: String,
    /// SPIFFE ID of the relying party.
    pub relying_party: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// Keeps acknowledgements of rules.
#[async_trait]
pub trait AckStore: Send + Sync {
    /// Stores each acknowledgement unless that relying party already acknowledged that rule;
    /// returns how many were new. Fails with `Closed` after close.
    async fn acknowledge(&self, acks: Vec<Acknowledgement>) -> Result<u64, LedgerError>;

    /// Returns up to `limit` acknowledgements of rule `revocation_id`, by relying party.
    async fn acknowledgements(
        &self,
        revocation_id: &str,
        limit: usize,
    ) -> Result<Vec<Acknowledgement>, LedgerError>;

    /// Forgets acknowledgements made before `before_ms` (their rules are gone or about to go);
    /// returns how many.
    async fn forget_acknowledgements(&self, before_ms: i64) -> Result<u64, LedgerError>;
}
