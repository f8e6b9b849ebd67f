//! Domain → wire types for credentials, rules and events.

use tessera_core::domain::{CredentialRecord, Event, RevocationRule, Status};

use tessera_ledger::Acknowledgement;

use crate::enforcement::EnforcementReport;
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
        grant: record.grant.clone(),
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
        effective_at_ms: rule.rule.cutoff_ms(),
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

/// The evidence of a rule's enforcement, as `Admin/GetRevocation` answers it at `now` (unix
/// seconds).
pub fn evidence(rule: &RevocationRule, found: Evidence, now: i64) -> proto::GetRevocationResponse {
    let scope = rule.rule.scope.unwrap_or_default();
    let cutoff_ms = rule.rule.cutoff_ms();
    let acknowledgements = found
        .acknowledgements
        .into_iter()
        .map(|ack| proto::Acknowledgement {
            relying_party: ack.relying_party,
            acknowledged_at_ms: ack.at_ms,
            after_ms: ack.at_ms.saturating_sub(cutoff_ms).max(0),
        })
        .collect();
    let report = found.report;
    let access_ends_at = scope.access_ends_at.unwrap_or_default();
    proto::GetRevocationResponse {
        rule: Some(revocation(rule)),
        revoked_by: rule.rule.revoked_by.clone(),
        credentials_covered: scope.covered,
        access_ends_at,
        acknowledgements,
        crl_fetches_after: report.crl_fetches_after,
        status_list_fetches_after: report.status_list_fetches_after,
        introspections_refused: report.introspections_refused,
        introspections_accepted: report.introspections_accepted,
        accepted_credential_ids: report.accepted_credential_ids,
        // Unknown for a rule stored before its scope was kept: never claimed to have ended.
        access_ended: rule.rule.scope.is_some() && access_ends_at <= now,
    }
}

/// What the broker knows of a rule's enforcement: the acknowledgements in the ledger and what
/// this replica counted.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub acknowledgements: Vec<Acknowledgement>,
    pub report: EnforcementReport,
}

/// Returns the reply to a reload that was applied.
pub fn reload_report(report: crate::reload::ReloadReport) -> proto::ReloadResponse {
    proto::ReloadResponse {
        generation: report.generation,
        offboarded: report
            .offboarded
            .into_iter()
            .map(|o| proto::Offboarded {
                grant: o.grant,
                reason: o.reason,
                revocation_id: o.revocation_id,
                credentials_revoked: o.covered,
            })
            .collect(),
        restart_required: report.restart_required,
        warnings: report.warnings,
    }
}
