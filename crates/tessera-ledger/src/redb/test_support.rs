//! Test helpers of the redb ledger, shared by `tests.rs` and `tests_restore.rs`: a ledger in a
//! temporary directory, sample records and rules, and the sweeps and listings tests repeat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

pub(super) use crate::test_records::{plain, rule, sample, x509};

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
