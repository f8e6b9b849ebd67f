//! Revocation rules and the event sequence (DESIGN.md invariants 2 and 3).

use serde::{Deserialize, Serialize};

use super::{CredentialRecord, Selector};

/// A revocation rule to store: every credential whose `selector` value is `value` and that was
/// issued at or before the rule's cut-off ([`NewRule::cutoff_ms`]) is revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRule {
    pub revocation_id: String,
    pub selector: Selector,
    pub value: String,
    /// Unix seconds: the second of the cut-off (what sweeping and older clients compare).
    pub effective_at: i64,
    /// The cut-off in unix milliseconds; `None` in rules stored before millisecond cut-offs,
    /// which cover their whole second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at_ms: Option<i64>,
    pub reason: String,
    /// Who revoked (an admin SPIFFE ID, or the workload revoking its own token).
    pub revoked_by: String,
    /// What the rule covered when it took effect; `None` in rules stored before this was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RuleScope>,
}

/// What a rule covered when it took effect: the evidence of how far access reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleScope {
    /// Live credentials the rule covered.
    pub covered: u64,
    /// Unix seconds no covered credential could be valid after, even where the rule were not
    /// enforced (their latest `exp`, to the end of its minute); `None` when none was live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_ends_at: Option<i64>,
}

impl NewRule {
    /// Returns the cut-off in unix milliseconds: credentials issued at or before it are covered.
    /// A rule from before millisecond cut-offs covers the whole of its second.
    pub fn cutoff_ms(&self) -> i64 {
        self.effective_at_ms
            .unwrap_or_else(|| self.effective_at.saturating_mul(1000).saturating_add(999))
    }

    /// Returns true when this rule's cut-off covers a credential issued at `issued_ms`.
    pub fn covers_issued(&self, issued_ms: i64) -> bool {
        issued_ms <= self.cutoff_ms()
    }
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
