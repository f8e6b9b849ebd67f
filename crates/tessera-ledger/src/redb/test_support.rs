//! Test helpers of the redb ledger, shared by `tests.rs` and `tests_restore.rs`: a ledger in a
//! temporary directory, sample records and rules, and the sweeps and listings tests repeat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::{CredentialKind, EvidenceKind, Selector, Status};

/// Returns a live JWT record `id` of workload `spiffe://example.org/w` (owner `team`, purpose
/// `read`), issued 100 s before `expires_at`.
pub(super) fn sample(id: &str, expires_at: i64) -> CredentialRecord {
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
    }
}

/// Returns [`sample`] as an X.509 record of workload `spiffe://example.org/x`.
pub(super) fn x509(id: &str, expires_at: i64) -> CredentialRecord {
    let mut record = sample(id, expires_at);
    record.kind = CredentialKind::X509;
    record.workload = "spiffe://example.org/x".into();
    record
}

/// Returns the params that record `record` without a replay guard.
pub(super) fn plain(record: CredentialRecord) -> RecordParams {
    RecordParams {
        credential: record,
        replay_guard: None,
    }
}

/// Returns a revocation rule `id` on `selector` = `value`, effective at `at`.
pub(super) fn rule(id: &str, selector: Selector, value: &str, at: i64) -> NewRule {
    NewRule {
        revocation_id: id.into(),
        selector,
        value: value.into(),
        effective_at: at,
        reason: "test".into(),
        revoked_by: "spiffe://example.org/ops/admin".into(),
    }
}

/// Returns the path of the ledger file in `dir`.
pub(super) fn ledger_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("ledger.redb")
}

/// Opens (creating it if missing) the ledger file in `dir` with default options.
pub(super) fn open(dir: &tempfile::TempDir) -> RedbLedger {
    RedbLedger::open(&ledger_path(dir), RedbOptions::default()).unwrap()
}

/// Returns a fresh temporary directory and a new ledger in it; the ledger lives as long as
/// the directory is kept.
pub(super) fn temp_ledger() -> (tempfile::TempDir, RedbLedger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    (dir, ledger)
}

/// Sweeps what expired before `expired_before` (no rules, up to 100); returns how many
/// records went.
pub(super) async fn sweep_expired(ledger: &RedbLedger, expired_before: i64) -> u64 {
    let params = SweepParams {
        expired_before,
        rules_before: 0,
        limit: 100,
    };
    ledger.sweep(params).await.unwrap()
}

/// Returns the first page (up to 10, newest first) of every credential.
pub(super) async fn first_page(ledger: &RedbLedger) -> Vec<CredentialRecord> {
    let params = ListParams {
        page_size: 10,
        scan_limit: 100,
        ..Default::default()
    };
    ledger.list(params).await.unwrap().credentials
}
