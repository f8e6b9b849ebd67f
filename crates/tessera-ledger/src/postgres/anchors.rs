//! The audit anchors of the PostgreSQL ledger ([`AnchorStore`], the table of migration 6):
//! one upsert that only moves an anchor forward, committed without waiting for the WAL flush
//! (see [`crate::anchors`]). Each replica anchors its own audit log.

use async_trait::async_trait;

use super::PostgresLedger;
use super::connect::StorageContext;
use super::rows::{bigint, column};
use crate::LedgerError;
use crate::anchors::{AnchorStore, AuditAnchor};

#[async_trait]
impl AnchorStore for PostgresLedger {
    async fn anchor_audit(&self, anchor: AuditAnchor) -> Result<(), LedgerError> {
        const OP: &str = "anchoring the audit log";
        self.check_open()?;
        self.read(OP, |mut c| async move {
            let txn = c.transaction().await.ctx(OP)?;
            txn.batch_execute("SET LOCAL synchronous_commit = off")
                .await
                .ctx(OP)?;
            txn.execute(
                "INSERT INTO audit_anchors (log, seq, hash, at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (log) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash,
                     at_ms = EXCLUDED.at_ms
                 WHERE audit_anchors.seq < EXCLUDED.seq",
                &[
                    &anchor.log,
                    &bigint(anchor.seq),
                    &anchor.hash,
                    &anchor.at_ms,
                ],
            )
            .await
            .ctx(OP)?;
            txn.commit().await.ctx(OP)?;
            Ok(())
        })
        .await
    }

    async fn audit_anchor(&self, log: &str) -> Result<Option<AuditAnchor>, LedgerError> {
        const OP: &str = "reading the audit anchor";
        self.read(OP, |c| async move {
            let row = c
                .query_opt(
                    "SELECT seq, hash, at_ms FROM audit_anchors WHERE log = $1",
                    &[&log],
                )
                .await
                .ctx(OP)?;
            row.map(|row| {
                let seq: i64 = column(&row, 0)?;
                Ok(AuditAnchor {
                    log: log.to_owned(),
                    seq: u64::try_from(seq).unwrap_or_default(),
                    hash: column(&row, 1)?,
                    at_ms: column(&row, 2)?,
                })
            })
            .transpose()
        })
        .await
    }
}
