//! The usage of grants in the redb ledger ([`UsageStore`], see [`crate::usage`]): two tables,
//! written by the writer thread in the transaction of the batch that stores the records, one
//! read and one write per distinct key (and day) of the batch.

use ::redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use async_trait::async_trait;

use super::{RedbLedger, StorageContext};
use crate::LedgerError;
use crate::usage::{
    UsageBatch, UsageDay, UsageKey, UsageQuery, UsageRow, UsageStore, add_hours, assemble,
    kind_code, kind_of,
};

/// (grant, destination, purpose, kind code): what usage is counted by.
type Key<'a> = (&'a str, &'a str, &'a str, u8);
/// (UTC day, grant, destination, purpose, kind code).
type DayKey<'a> = (i64, &'a str, &'a str, &'a str, u8);

/// [`Key`] → (first issue ms, last issue ms, total).
const USAGE: TableDefinition<Key, (i64, i64, u64)> = TableDefinition::new("grant_usage");
/// [`DayKey`] → issues per hour of that day. The day comes first, so that a read from a day
/// on, and the sweep of old days, are ranges.
const USAGE_DAYS: TableDefinition<DayKey, [u64; 24]> = TableDefinition::new("grant_usage_days");

/// Creates the tables in `txn` (at open). Files from before hold no usage: they start empty.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), LedgerError> {
    const OP: &str = "creating the usage tables";
    txn.open_table(USAGE).ctx(OP)?;
    txn.open_table(USAGE_DAYS).ctx(OP)?;
    Ok(())
}

/// Adds what `batch` counted to the stored usage, inside `txn`. Fails with `Storage` when the
/// tables cannot be written.
pub(super) fn flush(txn: &WriteTransaction, batch: UsageBatch) -> Result<(), LedgerError> {
    const OP: &str = "storing usage";
    if batch.is_empty() {
        return Ok(());
    }
    let mut usage = txn.open_table(USAGE).ctx(OP)?;
    let mut days = txn.open_table(USAGE_DAYS).ctx(OP)?;
    for (key, sum) in batch.keys {
        let code = kind_code(key.kind);
        let k = (
            key.grant.as_str(),
            key.destination.as_str(),
            key.purpose.as_str(),
            code,
        );
        let stored = usage.get(k).ctx(OP)?.map(|v| v.value());
        let value = match stored {
            Some((first, last, total)) => (
                first.min(sum.first_ms),
                last.max(sum.last_ms),
                total.saturating_add(sum.total),
            ),
            None => (sum.first_ms, sum.last_ms, sum.total),
        };
        usage.insert(k, value).ctx(OP)?;
        for (day, hours) in sum.days {
            let dk = (day, k.0, k.1, k.2, code);
            let stored = days.get(dk).ctx(OP)?.map(|v| v.value());
            let value = stored.map_or(hours, |s| add_hours(s, &hours));
            days.insert(dk, value).ctx(OP)?;
        }
    }
    Ok(())
}

/// Deletes the day rows of days before `before_day`, inside `txn`.
pub(super) fn sweep_days(txn: &WriteTransaction, before_day: i64) -> Result<(), LedgerError> {
    const OP: &str = "sweeping usage days";
    let mut days = txn.open_table(USAGE_DAYS).ctx(OP)?;
    days.retain_in(..(before_day, "", "", "", 0u8), |_, _| false)
        .ctx(OP)?;
    Ok(())
}

/// Returns the key of the stored `(grant, destination, purpose, kind code)`. Fails with
/// `Corrupt` on an unknown kind code.
fn key_of(
    grant: &str,
    destination: &str,
    purpose: &str,
    code: u8,
) -> Result<UsageKey, LedgerError> {
    Ok(UsageKey {
        grant: grant.to_owned(),
        destination: destination.to_owned(),
        purpose: purpose.to_owned(),
        kind: kind_of(i64::from(code))?,
    })
}

/// Reads [`UsageStore::usage`] from `db`.
fn read_usage(db: &::redb::Database, query: UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
    const OP: &str = "reading usage";
    let txn = db.begin_read().ctx(OP)?;
    let usage = txn.open_table(USAGE).ctx(OP)?;
    let mut summaries = Vec::new();
    for entry in usage.iter().ctx(OP)? {
        let (k, v) = entry.ctx(OP)?;
        let (grant, destination, purpose, code) = k.value();
        let (first_ms, last_ms, total) = v.value();
        summaries.push(UsageRow {
            key: key_of(grant, destination, purpose, code)?,
            first_ms,
            last_ms,
            total,
            days: Vec::new(),
        });
    }
    let days_table = txn.open_table(USAGE_DAYS).ctx(OP)?;
    let mut days = Vec::new();
    for entry in days_table
        .range((query.since_day, "", "", "", 0u8)..)
        .ctx(OP)?
    {
        let (k, hours) = entry.ctx(OP)?;
        let (day, grant, destination, purpose, code) = k.value();
        let key = key_of(grant, destination, purpose, code)?;
        days.push((
            key,
            UsageDay {
                day,
                hours: hours.value(),
            },
        ));
    }
    Ok(assemble(summaries, days))
}

#[async_trait]
impl UsageStore for RedbLedger {
    async fn usage(&self, query: UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
        self.read(move |db| read_usage(db, query)).await
    }
}
