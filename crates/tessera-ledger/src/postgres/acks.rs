//! The acknowledgements of the PostgreSQL ledger ([`AckStore`], the table of migration 4):
//! statements on pooled connections, committed without waiting for the WAL flush (see
//! [`crate::acks`]). Every replica writes and reads the same table, so every replica shows
//! every relying party's acknowledgement.

use async_trait::async_trait;

use super::PostgresLedger;
use super::connect::StorageContext;
use super::rows::column;
use crate::LedgerError;
use crate::acks::{AckStore, Acknowledgement};

#[async_trait]
impl AckStore for PostgresLedger {
    async fn acknowledge(&self, acks: Vec<Acknowledgement>) -> Result<u64, LedgerError> {
        const OP: &str = "storing acknowledgements";
        self.check_open()?;
        if acks.is_empty() {
            return Ok(0);
        }
        self.read(OP, |mut c| async move {
            let ids: Vec<&str> = acks.iter().map(|a| a.revocation_id.as_str()).collect();
            let parties: Vec<&str> = acks.iter().map(|a| a.relying_party.as_str()).collect();
            let at: Vec<i64> = acks.iter().map(|a| a.at_ms).collect();
            let txn = c.transaction().await.ctx(OP)?;
            txn.batch_execute("SET LOCAL synchronous_commit = off")
                .await
                .ctx(OP)?;
            let n = txn
                .execute(
                    "INSERT INTO revocation_acks (revocation_id, relying_party, at_ms)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
                     ON CONFLICT DO NOTHING",
                    &[&ids, &parties, &at],
                )
                .await
                .ctx(OP)?;
            txn.commit().await.ctx(OP)?;
            Ok(n)
        })
        .await
    }

    async fn acknowledgements(
        &self,
        revocation_id: &str,
        limit: usize,
    ) -> Result<Vec<Acknowledgement>, LedgerError> {
        const OP: &str = "reading acknowledgements";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(OP, |c| async move {
            let rows = c
                .query(
                    "SELECT relying_party, at_ms FROM revocation_acks
                     WHERE revocation_id = $1 ORDER BY relying_party LIMIT $2",
                    &[&revocation_id, &limit],
                )
                .await
                .ctx(OP)?;
            rows.iter()
                .map(|row| {
                    Ok(Acknowledgement {
                        revocation_id: revocation_id.to_owned(),
                        relying_party: column(row, 0)?,
                        at_ms: column(row, 1)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn forget_acknowledgements(&self, before_ms: i64) -> Result<u64, LedgerError> {
        const OP: &str = "forgetting acknowledgements";
        self.read(OP, |c| async move {
            c.execute(
                "DELETE FROM revocation_acks WHERE at_ms < $1",
                &[&before_ms],
            )
            .await
            .ctx(OP)
        })
        .await
    }
}
