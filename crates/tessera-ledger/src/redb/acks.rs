//! The acknowledgements of the redb ledger ([`AckStore`]): one table, written in transactions
//! of their own without fsync (see [`crate::acks`]).

use ::redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use async_trait::async_trait;

use super::{RedbLedger, StorageContext};
use crate::LedgerError;
use crate::acks::{AckStore, Acknowledgement};

/// (revocation id, relying party) → unix ms of its first acknowledgement.
const ACKS: TableDefinition<(&str, &str), i64> = TableDefinition::new("revocation_acks");

/// Creates the table in `txn` (at open).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), LedgerError> {
    txn.open_table(ACKS)
        .ctx("creating the acknowledgements table")?;
    Ok(())
}

#[async_trait]
impl AckStore for RedbLedger {
    async fn acknowledge(&self, acks: Vec<Acknowledgement>) -> Result<u64, LedgerError> {
        const OP: &str = "storing acknowledgements";
        self.signal_write(false, move |txn| {
            let mut table = txn.open_table(ACKS).ctx(OP)?;
            let mut new = 0;
            for ack in &acks {
                let key = (ack.revocation_id.as_str(), ack.relying_party.as_str());
                if table.get(key).ctx(OP)?.is_none() {
                    table.insert(key, ack.at_ms).ctx(OP)?;
                    new += 1;
                }
            }
            Ok(new)
        })
        .await
    }

    async fn acknowledgements(
        &self,
        revocation_id: &str,
        limit: usize,
    ) -> Result<Vec<Acknowledgement>, LedgerError> {
        const OP: &str = "reading acknowledgements";
        let id = revocation_id.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().ctx(OP)?;
            let table = txn.open_table(ACKS).ctx(OP)?;
            let mut out = Vec::new();
            for entry in table.range((id.as_str(), "")..).ctx(OP)?.take(limit) {
                let (key, at) = entry.ctx(OP)?;
                let (rule, relying_party) = key.value();
                if rule != id {
                    break;
                }
                out.push(Acknowledgement {
                    revocation_id: id.clone(),
                    relying_party: relying_party.to_owned(),
                    at_ms: at.value(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn forget_acknowledgements(&self, before_ms: i64) -> Result<u64, LedgerError> {
        const OP: &str = "forgetting acknowledgements";
        self.signal_write(false, move |txn| {
            let mut table = txn.open_table(ACKS).ctx(OP)?;
            let before = table.len().ctx(OP)?;
            table.retain(|_, at| at >= before_ms).ctx(OP)?;
            Ok(before.saturating_sub(table.len().ctx(OP)?))
        })
        .await
    }
}
