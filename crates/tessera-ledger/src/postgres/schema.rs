//! Versioned migrations, embedded in the binary. `migrations` holds one row per applied
//! version; every migration not yet applied runs in one transaction under an advisory lock, so
//! replicas starting together apply each exactly once. A database whose newest version is
//! beyond this build's is refused ([`LedgerError::SchemaTooNew`]) and left untouched.

use tokio_postgres::Client;

use super::connect::StorageContext;
use crate::LedgerError;

/// The migrations of this build: version, then SQL. Versions start at 1 and have no gaps.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_status_list.sql")),
    (3, include_str!("migrations/0003_ssf.sql")),
    (4, include_str!("migrations/0004_acks.sql")),
    (5, include_str!("migrations/0005_usage.sql")),
    (6, include_str!("migrations/0006_audit_anchors.sql")),
];

/// The schema version this build creates and reads.
pub const SCHEMA_VERSION: u32 = 6;

/// Key of the advisory lock migrations hold (any constant shared by every build).
const MIGRATION_LOCK: i64 = 0x0074_6573_7365_7261; // "tessera"

const OP: &str = "migrating the ledger schema";

/// Brings the database to [`SCHEMA_VERSION`]; returns the version it had before (0 when new).
/// Fails with `SchemaTooNew` when a newer build migrated it, `Storage` when a statement fails
/// (nothing of the failed migration is kept).
pub(super) async fn apply(client: &mut Client) -> Result<u32, LedgerError> {
    let txn = client.transaction().await.ctx(OP)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .ctx(OP)?;
    // `SET LOCAL`: the NOTICE "already exists, skipping" of every start after the first is
    // not worth a log line.
    txn.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .ctx(OP)?;
    let row = txn
        .query_one("SELECT coalesce(max(version), 0) FROM migrations", &[])
        .await
        .ctx(OP)?;
    let found: i32 = row.try_get(0).ctx(OP)?;
    let found = u32::try_from(found).unwrap_or_default();
    if found > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tracing::info!(version, "applying a ledger schema migration");
        txn.batch_execute(sql).await.ctx(OP)?;
        let version = i32::try_from(*version).ctx(OP)?;
        txn.execute("INSERT INTO migrations (version) VALUES ($1)", &[&version])
            .await
            .ctx(OP)?;
    }
    txn.commit().await.ctx(OP)?;
    Ok(found)
}
