//! Records and rules that every ledger test builds (redb, PostgreSQL, the conformance suite):
//! one definition of each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{
    CredentialKind, CredentialRecord, EvidenceKind, NewRule, RecordParams, ReplayGuard, Selector,
    Status,
};

/// Returns a live JWT record `id` of workload `spiffe://example.org/w` (owner `team`, purpose
/// `read`), issued 100 s before `expires_at`.
pub(crate) fn sample(id: &str, expires_at: i64) -> CredentialRecord {
    CredentialRecord {
        credential_id: id.to_owned(),
        kind: CredentialKind::Jwt,
        workload: "spiffe://example.org/w".into(),
        owner: "team".into(),
        destination: "https://d".into(),
        purpose: "read".into(),
        grant: "g".into(),
        evidence_kind: EvidenceKind::JwtSvid,
        evidence_hash: "00".repeat(32),
        issued_at: expires_at - 100,
        expires_at,
        status: Status::Live,
        ci: None,
        status_list: None,
    }
}

/// Returns [`sample`] as an X.509 record of workload `spiffe://example.org/x`.
pub(crate) fn x509(id: &str, expires_at: i64) -> CredentialRecord {
    let mut record = sample(id, expires_at);
    record.kind = CredentialKind::X509;
    record.workload = "spiffe://example.org/x".into();
    record
}

/// Returns the params that record `record` without a replay guard.
pub(crate) fn plain(record: CredentialRecord) -> RecordParams {
    RecordParams {
        credential: record,
        replay_guard: None,
    }
}

/// Returns the params that record `record` with replay guard `key`, kept until unix 500.
pub(crate) fn guarded(record: CredentialRecord, key: &str) -> RecordParams {
    RecordParams {
        credential: record,
        replay_guard: Some(ReplayGuard {
            key: key.into(),
            expires_at: 500,
        }),
    }
}

/// Returns a revocation rule `id` on `selector` = `value`, effective at `at` (its cut-off 7 ms
/// into that second, so a store that drops the milliseconds is caught).
pub(crate) fn rule(id: &str, selector: Selector, value: &str, at: i64) -> NewRule {
    NewRule {
        revocation_id: id.into(),
        selector,
        value: value.into(),
        effective_at: at,
        effective_at_ms: Some(at * 1000 + 7),
        reason: "test".into(),
        revoked_by: "spiffe://example.org/ops/admin".into(),
        scope: Some(tessera_core::domain::RuleScope {
            covered: 3,
            access_ends_at: Some(at + 600),
        }),
    }
}
