//! Revocation rules and the event sequence (DESIGN.md invariants 2 and 3).

use serde::{Deserialize, Serialize};

use super::{CredentialRecord, Selector};

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
