//! The usage of grants in the PostgreSQL ledger ([`UsageStore`], the tables of migration 5;
//! see [`crate::usage`]). A batch writes what its records added in one statement, sent with
//! the live counts' (pipelined on the batch's connection: no round trip of its own), one row
//! per distinct key and day, in key order (so that replicas lock rows in the same order).

use deadpool_postgres::Transaction;

use super::PostgresLedger;
use super::connect::StorageContext;
use super::rows::{bigint, column};
use crate::LedgerError;
use crate::usage::{
    UsageBatch, UsageDay, UsageKey, UsageQuery, UsageRow, UsageStore, assemble, kind_code, kind_of,
};

/// Adds first/last/total (`$1`–`$7`, one element per key) to `grant_usage`, and the hourly
/// counts (days `$8`, keys `$9`–`$12`, hours `$13`: 24 per day row, flattened) to
/// `grant_usage_days`, hour by hour.
const FLUSH_SQL: &str = "WITH u AS (
    INSERT INTO grant_usage (grant_name, destination, purpose, kind, first_ms, last_ms, total)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bigint[],
        $6::bigint[], $7::bigint[])
    ON CONFLICT (grant_name, destination, purpose, kind) DO UPDATE SET
        first_ms = least(grant_usage.first_ms, EXCLUDED.first_ms),
        last_ms = greatest(grant_usage.last_ms, EXCLUDED.last_ms),
        total = grant_usage.total + EXCLUDED.total
)
INSERT INTO grant_usage_days (day, grant_name, destination, purpose, kind, hours)
SELECT x.day, x.g, x.dst, x.p, x.k, ($13::bigint[])[(x.o - 1) * 24 + 1 : x.o * 24]
FROM unnest($8::bigint[], $9::text[], $10::text[], $11::text[], $12::smallint[])
    WITH ORDINALITY AS x(day, g, dst, p, k, o)
ON CONFLICT (day, grant_name, destination, purpose, kind) DO UPDATE SET
    hours = ARRAY(
        SELECT t.a + t.b
        FROM unnest(grant_usage_days.hours, EXCLUDED.hours) WITH ORDINALITY AS t(a, b, i)
        ORDER BY t.i
    )";

/// The parameters of [`FLUSH_SQL`].
#[derive(Default)]
struct Columns {
    grants: Vec<String>,
    destinations: Vec<String>,
    purposes: Vec<String>,
    kinds: Vec<i16>,
    firsts: Vec<i64>,
    lasts: Vec<i64>,
    totals: Vec<i64>,
    days: Vec<(i64, UsageKey, [u64; 24])>,
}

impl Columns {
    /// Returns the columns of `batch`: one element per key, and its day rows in table order.
    fn of(batch: UsageBatch) -> Self {
        let mut c = Columns::default();
        for (key, sum) in batch.keys {
            c.grants.push(key.grant.clone());
            c.destinations.push(key.destination.clone());
            c.purposes.push(key.purpose.clone());
            c.kinds.push(i16::from(kind_code(key.kind)));
            c.firsts.push(sum.first_ms);
            c.lasts.push(sum.last_ms);
            c.totals.push(bigint(sum.total));
            c.days.extend(
                sum.days
                    .into_iter()
                    .map(|(day, hours)| (day, key.clone(), hours)),
            );
        }
        // Key order of the table: day first.
        c.days.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        c
    }
}

/// Adds what `batch` counted to the stored usage, in `txn`. Fails when the statement fails.
pub(super) async fn flush(
    txn: &Transaction<'_>,
    batch: UsageBatch,
) -> Result<(), tokio_postgres::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let c = Columns::of(batch);
    let day_numbers: Vec<i64> = c.days.iter().map(|d| d.0).collect();
    let day_grants: Vec<&str> = c.days.iter().map(|d| d.1.grant.as_str()).collect();
    let day_destinations: Vec<&str> = c.days.iter().map(|d| d.1.destination.as_str()).collect();
    let day_purposes: Vec<&str> = c.days.iter().map(|d| d.1.purpose.as_str()).collect();
    let day_kinds: Vec<i16> = c
        .days
        .iter()
        .map(|d| i16::from(kind_code(d.1.kind)))
        .collect();
    let hours: Vec<i64> = c
        .days
        .iter()
        .flat_map(|d| d.2.iter().map(|n| bigint(*n)))
        .collect();
    // Prepared once per connection: a batch is on the mint path.
    let statement = txn.prepare_cached(FLUSH_SQL).await?;
    txn.execute(
        &statement,
        &[
            &c.grants,
            &c.destinations,
            &c.purposes,
            &c.kinds,
            &c.firsts,
            &c.lasts,
            &c.totals,
            &day_numbers,
            &day_grants,
            &day_destinations,
            &day_purposes,
            &day_kinds,
            &hours,
        ],
    )
    .await?;
    Ok(())
}

/// Deletes the day rows of days before `before_day`, in `txn`.
pub(super) async fn sweep_days(
    txn: &Transaction<'_>,
    before_day: i64,
) -> Result<(), tokio_postgres::Error> {
    txn.execute(
        "DELETE FROM grant_usage_days WHERE day < $1",
        &[&before_day],
    )
    .await?;
    Ok(())
}

/// Returns the key in columns `at`.. of `row` (grant, destination, purpose, kind). Fails with
/// `Corrupt` on an unknown kind, `Storage` on a column of another type.
fn key_at(row: &tokio_postgres::Row, at: usize) -> Result<UsageKey, LedgerError> {
    Ok(UsageKey {
        grant: column(row, at)?,
        destination: column(row, at + 1)?,
        purpose: column(row, at + 2)?,
        kind: kind_of(i64::from(column::<i16>(row, at + 3)?))?,
    })
}

/// Returns the 24 hourly counts of a stored day row. Fails with `Corrupt` when it holds
/// another number of hours.
fn hours_of(stored: Vec<i64>) -> Result<[u64; 24], LedgerError> {
    let hours: Vec<u64> = stored
        .into_iter()
        .map(|n| u64::try_from(n).unwrap_or(0))
        .collect();
    <[u64; 24]>::try_from(hours).map_err(|h| {
        LedgerError::Corrupt(format!("usage day with {} hourly counts, not 24", h.len()))
    })
}

#[async_trait::async_trait]
impl UsageStore for PostgresLedger {
    async fn usage(&self, query: UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
        const OP: &str = "reading usage";
        self.read(OP, |c| async move {
            let keys = c
                .query(
                    "SELECT grant_name, destination, purpose, kind, first_ms, last_ms, total
                     FROM grant_usage",
                    &[],
                )
                .await
                .ctx(OP)?;
            let summaries = keys
                .iter()
                .map(|row| {
                    Ok(UsageRow {
                        key: key_at(row, 0)?,
                        first_ms: column(row, 4)?,
                        last_ms: column(row, 5)?,
                        total: u64::try_from(column::<i64>(row, 6)?).unwrap_or(0),
                        days: Vec::new(),
                    })
                })
                .collect::<Result<Vec<_>, LedgerError>>()?;
            let days = c
                .query(
                    "SELECT day, grant_name, destination, purpose, kind, hours
                     FROM grant_usage_days WHERE day >= $1 ORDER BY day",
                    &[&query.since_day],
                )
                .await
                .ctx(OP)?;
            let days = days
                .iter()
                .map(|row| {
                    let day = UsageDay {
                        day: column(row, 0)?,
                        hours: hours_of(column(row, 5)?)?,
                    };
                    Ok((key_at(row, 1)?, day))
                })
                .collect::<Result<Vec<_>, LedgerError>>()?;
            Ok(assemble(summaries, days))
        })
        .await
    }
}
