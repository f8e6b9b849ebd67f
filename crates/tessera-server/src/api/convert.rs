//! Domain → wire types for credentials, rules and events.

use tessera_core::domain::{CredentialRecord, Event, RevocationRule, Status};
use tessera_proto as proto;

/// A credential as the Admin API shows it, with its current `status`.
pub fn credential(record: &CredentialRecord, status: Status) -> proto::Credential {
    proto::Credential {
        credential_id: record.credential_id.clone(),
        kind: record.kind.as_str().to_owned(),
        workload: record.workload.clone(),
        owner: record.owner.clone(),
        destination: record.destination.clone(),
        purpose: record.purpose.clone(),
        issued_at: record.issued_at,
        expires_at: record.expires_at,
        status: status.as_str().to_owned(),
    }
}

/// A revocation rule as watchers see it.
pub fn revocation(rule: &RevocationRule) -> proto::RevocationEvent {
    proto::RevocationEvent {
        sequence: rule.sequence,
        revocation_id: rule.rule.revocation_id.clone(),
        selector: rule.rule.selector.as_str().to_owned(),
        value: rule.rule.value.clone(),
        effective_at: rule.rule.effective_at,
        reason: rule.rule.reason.clone(),
        caught_up: false,
    }
}

/// The marker that ends a revocation stream's replay: every event up to `sequence` was sent.
pub fn caught_up(sequence: u64) -> proto::RevocationEvent {
    proto::RevocationEvent {
        sequence,
        caught_up: true,
        ..proto::RevocationEvent::default()
    }
}

/// An event; `status_of` gives the credential's status as of now.
pub fn event(e: &Event, status_of: impl Fn(&CredentialRecord) -> Status) -> proto::Event {
    proto::Event {
        sequence: e.sequence,
        kind: e.kind.as_str().to_owned(),
        at: e.at,
        credential: e.credential.as_ref().map(|c| credential(c, status_of(c))),
        revocation: e.revocation.as_ref().map(revocation),
    }
}
