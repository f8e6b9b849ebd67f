//! The audit anchors of the redb ledger ([`AnchorStore`]): one table, written in transactions
//! of their own without fsync (see [`crate::anchors`]).

use ::redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use async_trait::async_trait;

use super::{RedbLedger, StorageContext};
use crate::LedgerError;
use crate::anchors::{AnchorStore, AuditAnchor};

/// Log id → (seq, hash, unix ms).
const ANCHORS: TableDefinition<&str, (u64, &str, i64)> = TableDefinition::new("audit_anchors");

/// Creates the table in `txn` (at open).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), LedgerError> {
    txn.open_table(ANCHORS)
        .ctx("creating the audit anchors table")?;
    Ok(())
}

#[async_trait]
impl AnchorStore for RedbLedger {
    async fn anchor_audit(&self, anchor: AuditAnchor) -> Result<(), LedgerError> {
        const OP: &str = "anchoring the audit log";
        self.signal_write(false, move |txn| {
            let mut table = txn.open_table(ANCHORS).ctx(OP)?;
            let stored = table.get(anchor.log.as_str()).ctx(OP)?.map(|v| v.value().0);
            if stored.is_none_or(|seq| seq < anchor.seq) {
                let value = (anchor.seq, anchor.hash.as_str(), anchor.at_ms);
                table.insert(anchor.log.as_str(), value).ctx(OP)?;
            }
            Ok(())
        })
        .await
    }

    async fn audit_anchor(&self, log: &str) -> Result<Option<AuditAnchor>, LedgerError> {
        const OP: &str = "reading the audit anchor";
        let log = log.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(ANCHORS).ctx(OP)?;
            Ok(table.get(log.as_str()).ctx(OP)?.map(|v| {
                let (seq, hash, at_ms) = v.value();
                AuditAnchor {
                    log: log.clone(),
                    seq,
                    hash: hash.to_owned(),
                    at_ms,
                }
            }))
        })
        .await
    }
}
