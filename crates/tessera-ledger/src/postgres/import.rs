//! Importing a whole ledger into an empty PostgreSQL database ([`PostgresImport`]), keeping
//! every sequence as it was: records, live counts, replay guards, rules, events and usage are
//! written as given (never through the writer, which would assign new sequences), then the
//! counter is set to the source's last sequence.
//!
//! # Quiescence
//! The import runs in several transactions (one per [`ImportBatch`], a few thousand rows
//! each), so it cannot hold the counter row lock from start to end: **the target must be
//! quiescent** — no broker may use it until the import has finished. This is checked, not
//! assumed: [`PostgresImport::start`] refuses a database that holds any credential, event
//! or rule; every batch transaction locks the counter row (`FOR UPDATE`) and fails with
//! [`ImportError::Changed`] unless it is still 0 (a broker's first record or revoke takes a
//! sequence from it); and [`PostgresImport::finish`] sets it only if it is still 0. A broker
//! that wrote meanwhile is therefore detected at the next batch (its write is blocked while a
//! batch holds the lock).

use std::pin::pin;

use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::connect::{self, StorageContext, timed};
use super::rows::{self, RecordValues, credential_columns};
use super::{PostgresOptions, schema};
use crate::usage::kind_code;
use crate::{
    CredentialRecord, EventKind, LedgerError, ReplayGuard, RevocationRule, Selector, UsageRow,
};

/// A credential to import, with whether its `expired` event was already emitted (then an
/// expiry on the target does not emit another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedCredential {
    pub record: CredentialRecord,
    pub expired: bool,
}

/// A persisted live count: how many credentials with `selector` = `value` expire in the
/// bucket `expires_at` ([`crate::count_bucket`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveCountRow {
    pub expires_at: i64,
    pub selector: Selector,
    pub value: String,
    pub n: u64,
}

/// An event as stored: an `issued` or `expired` one names its credential, a `revoked` one
/// carries its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub sequence: u64,
    pub kind: EventKind,
    pub at: i64,
    pub credential_id: Option<String>,
    pub rule: Option<RevocationRule>,
}

/// Rows written in one transaction of [`PostgresImport::import`]; any part may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportBatch {
    pub credentials: Vec<ImportedCredential>,
    pub live_counts: Vec<LiveCountRow>,
    pub replay_guards: Vec<ReplayGuard>,
    /// Rules with the sequences of their `revoked` events.
    pub rules: Vec<RevocationRule>,
    pub events: Vec<EventRow>,
    /// Usage of grants, each key with its days.
    pub usage: Vec<UsageRow>,
}

/// Why an import could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The target already holds a ledger (or part of one).
    #[error(
        "the target database is not empty ({credentials} credentials, {events} events, \
         {rules} rules): copy into a new, empty database (a copy that failed part-way leaves \
         one behind: drop and re-create the database, then copy again)"
    )]
    NotEmpty {
        credentials: u64,
        events: u64,
        rules: u64,
    },
    /// Something else took a sequence from the target during the import.
    #[error(
        "the target database was written during the import (its event sequence is at \
         {found}): stop every broker using it, then empty it and copy again"
    )]
    Changed { found: u64 },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// An import in progress into one database, on one connection of its own (see the module
/// doc for what it requires of the target).
#[derive(Debug)]
pub struct PostgresImport {
    client: Client,
    driver: JoinHandle<Result<(), tokio_postgres::Error>>,
    query_timeout: std::time::Duration,
}

const OP: &str = "importing into the ledger database";

impl PostgresImport {
    /// Connects to the database of `options`, applies the migrations of this build and checks
    /// that it holds no credential, event or rule. Fails with `NotEmpty` when it does,
    /// `Ledger(SchemaTooNew)` when a newer build migrated it, `Ledger(Storage)` when it cannot
    /// be reached within `connect_timeout` or a statement fails.
    pub async fn start(options: &PostgresOptions) -> Result<PostgresImport, ImportError> {
        let config = connect::pg_config(&options.url, options.connect_timeout)?;
        let tls = connect::tls(&options.ca_certs)?;
        let (mut client, connection) = timed(options.connect_timeout, OP, async {
            config
                .connect(tls)
                .await
                .ctx("connecting to the ledger database")
        })
        .await?;
        let driver = tokio::spawn(connection);
        timed(options.query_timeout, OP, schema::apply(&mut client)).await?;
        let import = PostgresImport {
            client,
            driver,
            query_timeout: options.query_timeout,
        };
        import.check_empty().await?;
        Ok(import)
    }

    /// Fails with `NotEmpty` when the database holds any credential, event or rule.
    async fn check_empty(&self) -> Result<(), ImportError> {
        let row = timed(self.query_timeout, OP, async {
            self.client
                .query_one(
                    "SELECT (SELECT count(*) FROM credentials), (SELECT count(*) FROM events),
                        (SELECT count(*) FROM rules)",
                    &[],
                )
                .await
                .ctx(OP)
        })
        .await?;
        let count = |i| rows::column::<i64>(&row, i).map(|n| u64::try_from(n).unwrap_or(0));
        let (credentials, events, rules) = (count(0)?, count(1)?, count(2)?);
        if credentials + events + rules > 0 {
            return Err(ImportError::NotEmpty {
                credentials,
                events,
                rules,
            });
        }
        Ok(())
    }

    /// Writes `batch` in one transaction, holding the counter row lock. Fails with `Changed`
    /// when the counter is no longer 0, `Ledger(Storage)` when a row is refused (e.g. an id
    /// or a sequence already imported) or the database fails; nothing of the batch is kept
    /// then.
    pub async fn import(&mut self, batch: &ImportBatch) -> Result<(), ImportError> {
        let limit = self.query_timeout;
        let txn = self.client.transaction().await.ctx(OP)?;
        let found = timed(limit, OP, async {
            let row = txn
                .query_one("SELECT last FROM ledger_sequence FOR UPDATE", &[])
                .await
                .ctx(OP)?;
            let found = rows::sequence(rows::column(&row, 0)?)?;
            if found == 0 {
                copy_credentials(&txn, &batch.credentials).await?;
                copy_live_counts(&txn, &batch.live_counts).await?;
                copy_replay_guards(&txn, &batch.replay_guards).await?;
                copy_rules(&txn, &batch.rules).await?;
                copy_events(&txn, &batch.events).await?;
                copy_usage(&txn, &batch.usage).await?;
            }
            Ok(found)
        })
        .await?;
        if found != 0 {
            return Err(ImportError::Changed { found }); // dropping `txn` rolls it back
        }
        txn.commit().await.ctx(OP)?;
        Ok(())
    }

    /// Sets the counter to `last_sequence` (new sequences continue after it) and closes the
    /// connection. Fails with `Changed` when the counter is no longer 0, `Ledger(Storage)`
    /// when the database fails.
    pub async fn finish(self, last_sequence: u64) -> Result<(), ImportError> {
        let last = rows::bigint(last_sequence);
        let updated = timed(self.query_timeout, OP, async {
            self.client
                .execute(
                    "UPDATE ledger_sequence SET last = $1 WHERE last = 0",
                    &[&last],
                )
                .await
                .ctx(OP)
        })
        .await?;
        if updated != 1 {
            let found = timed(self.query_timeout, OP, async {
                let row = self
                    .client
                    .query_one("SELECT last FROM ledger_sequence", &[])
                    .await
                    .ctx(OP)?;
                rows::sequence(rows::column(&row, 0)?)
            })
            .await?;
            return Err(ImportError::Changed { found });
        }
        drop(self.client);
        let _ = self.driver.await; // ends once the client is dropped
        Ok(())
    }
}

/// Writes `rows` into `columns` of `table` with COPY (binary); the column types are the
/// table's own. Fails with `Storage` when a row is refused.
async fn copy_rows<'r>(
    txn: &tokio_postgres::Transaction<'_>,
    table: &str,
    columns: &str,
    rows: impl IntoIterator<Item = Vec<&'r (dyn ToSql + Sync)>>,
) -> Result<(), LedgerError> {
    let probe = txn
        .prepare(&format!("SELECT {columns} FROM {table} LIMIT 0"))
        .await
        .ctx(OP)?;
    let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
    let sink = txn
        .copy_in(&format!("COPY {table} ({columns}) FROM STDIN BINARY"))
        .await
        .ctx(OP)?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for row in rows {
        writer.as_mut().write(&row).await.ctx(OP)?;
    }
    writer.finish().await.ctx(OP)?;
    Ok(())
}

async fn copy_credentials(
    txn: &tokio_postgres::Transaction<'_>,
    credentials: &[ImportedCredential],
) -> Result<(), LedgerError> {
    if credentials.is_empty() {
        return Ok(());
    }
    let values: Vec<(RecordValues, &bool)> = credentials
        .iter()
        .map(|c| (RecordValues::of(&c.record), &c.expired))
        .collect();
    let rows = values.iter().map(|(v, expired)| {
        let mut row = Vec::with_capacity(19);
        row.extend(v.params());
        row.push(*expired as &(dyn ToSql + Sync));
        row
    });
    let columns = concat!(credential_columns!(), ", expired");
    copy_rows(txn, "credentials", columns, rows).await
}

async fn copy_live_counts(
    txn: &tokio_postgres::Transaction<'_>,
    counts: &[LiveCountRow],
) -> Result<(), LedgerError> {
    if counts.is_empty() {
        return Ok(());
    }
    let values: Vec<(i16, i64)> = counts
        .iter()
        .map(|c| (i16::from(c.selector.code()), rows::bigint(c.n)))
        .collect();
    let rows = counts.iter().zip(&values).map(|(c, (code, n))| {
        let row: Vec<&(dyn ToSql + Sync)> = vec![&c.expires_at, code, &c.value, n];
        row
    });
    copy_rows(txn, "live_counts", "expires_at, selector, value, n", rows).await
}

async fn copy_replay_guards(
    txn: &tokio_postgres::Transaction<'_>,
    guards: &[ReplayGuard],
) -> Result<(), LedgerError> {
    if guards.is_empty() {
        return Ok(());
    }
    let rows = guards.iter().map(|g| {
        let row: Vec<&(dyn ToSql + Sync)> = vec![&g.key, &g.expires_at];
        row
    });
    copy_rows(txn, "replay", "key, expires_at", rows).await
}

/// Returns the JSON a rule is kept as (its sequence is kept in a column of its own). Fails
/// with `Storage` when it does not encode.
fn rule_json(rule: &RevocationRule) -> Result<String, LedgerError> {
    serde_json::to_string(&rule.rule)
        .map_err(|e| LedgerError::Storage(format!("encoding a rule: {e}")))
}

async fn copy_rules(
    txn: &tokio_postgres::Transaction<'_>,
    rules: &[RevocationRule],
) -> Result<(), LedgerError> {
    if rules.is_empty() {
        return Ok(());
    }
    let values = rules
        .iter()
        .map(|r| Ok((rows::bigint(r.sequence), rule_json(r)?)))
        .collect::<Result<Vec<(i64, String)>, LedgerError>>()?;
    let rows = rules.iter().zip(&values).map(|(r, (sequence, json))| {
        let row: Vec<&(dyn ToSql + Sync)> =
            vec![&r.rule.revocation_id, sequence, &r.rule.effective_at, json];
        row
    });
    copy_rows(
        txn,
        "rules",
        "revocation_id, sequence, effective_at, rule",
        rows,
    )
    .await
}

async fn copy_events(
    txn: &tokio_postgres::Transaction<'_>,
    events: &[EventRow],
) -> Result<(), LedgerError> {
    if events.is_empty() {
        return Ok(());
    }
    let values = events
        .iter()
        .map(|e| {
            let json = e.rule.as_ref().map(rule_json).transpose()?;
            Ok((rows::bigint(e.sequence), rows::event_code(e.kind), json))
        })
        .collect::<Result<Vec<(i64, i16, Option<String>)>, LedgerError>>()?;
    let rows = events
        .iter()
        .zip(&values)
        .map(|(e, (sequence, kind, json))| {
            let row: Vec<&(dyn ToSql + Sync)> = vec![sequence, kind, &e.at, &e.credential_id, json];
            row
        });
    copy_rows(
        txn,
        "events",
        "sequence, kind, at, credential_id, rule",
        rows,
    )
    .await
}

async fn copy_usage(
    txn: &tokio_postgres::Transaction<'_>,
    usage: &[UsageRow],
) -> Result<(), LedgerError> {
    if usage.is_empty() {
        return Ok(());
    }
    let values: Vec<(i16, i64)> = usage
        .iter()
        .map(|u| (i16::from(kind_code(u.key.kind)), rows::bigint(u.total)))
        .collect();
    let keys = usage.iter().zip(&values).map(|(u, (kind, total))| {
        let row: Vec<&(dyn ToSql + Sync)> = vec![
            &u.key.grant,
            &u.key.destination,
            &u.key.purpose,
            kind,
            &u.first_ms,
            &u.last_ms,
            total,
        ];
        row
    });
    let columns = "grant_name, destination, purpose, kind, first_ms, last_ms, total";
    copy_rows(txn, "grant_usage", columns, keys).await?;
    let hours: Vec<Vec<i64>> = usage
        .iter()
        .flat_map(|u| &u.days)
        .map(|d| d.hours.iter().map(|n| rows::bigint(*n)).collect())
        .collect();
    let days = usage
        .iter()
        .zip(&values)
        .flat_map(|(u, (kind, _))| u.days.iter().map(move |d| (u, kind, d)))
        .zip(&hours)
        .map(|((u, kind, d), hours)| {
            let row: Vec<&(dyn ToSql + Sync)> = vec![
                &d.day,
                &u.key.grant,
                &u.key.destination,
                &u.key.purpose,
                kind,
                hours,
            ];
            row
        });
    let columns = "day, grant_name, destination, purpose, kind, hours";
    copy_rows(txn, "grant_usage_days", columns, days).await
}
