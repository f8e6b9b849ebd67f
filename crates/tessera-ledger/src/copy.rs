//! Moving an embedded (redb) ledger into an empty PostgreSQL database, for users who outgrow
//! one machine (`tessera ledger copy`). Nothing is lost and nothing is renumbered: records
//! (with their `expired` flags), live counts, replay guards, rules, events with their
//! original sequences, the usage of grants, and the last sequence — so watchers resume where
//! they were, and the next record takes the sequence after the source's last.
//!
//! The source is read through [`RedbLedger`] (opened exclusively: a broker that has the file
//! open makes [`open_source`] fail) and written through [`PostgresImport`], one transaction
//! per [`CHUNK`] rows; the target must be empty and stay quiescent until the copy is done
//! (see [`PostgresImport`]: a broker writing to it meanwhile is detected).

use std::path::{Path, PathBuf};

use crate::{
    ImportBatch, ImportError, ImportedCredential, Ledger, LedgerError, PostgresImport,
    PostgresOptions, RedbLedger, RedbOptions, UsageQuery, UsageStore,
};

/// Rows read and written per step (and per target transaction).
const CHUNK: usize = 2000;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("no embedded ledger at {0}")]
    SourceMissing(PathBuf),
    #[error(
        "{0} is in use (redb locks the file): stop the broker that has it open, then copy again"
    )]
    SourceInUse(PathBuf),
    #[error("reading the embedded ledger: {0}")]
    Source(LedgerError),
    #[error(transparent)]
    Target(#[from] ImportError),
}

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub records: u64,
    pub rules: u64,
    pub events: u64,
    pub replay_guards: u64,
    pub live_counts: u64,
    /// Usage keys (grant, destination, purpose, kind), each with its days.
    pub usage: u64,
    pub last_sequence: u64,
}

/// Opens the embedded ledger at `path` to copy it (with the default options; a file of an
/// older schema version is upgraded, as a broker would). Fails with `SourceMissing` when
/// there is no file, `SourceInUse` when another process (a running broker) has it open,
/// `Source` when it is not a ledger this build reads.
pub fn open_source(path: &Path) -> Result<RedbLedger, CopyError> {
    if !path.is_file() {
        return Err(CopyError::SourceMissing(path.to_owned()));
    }
    // Probe the lock first: `RedbLedger::open` reports it only as a storage error.
    match ::redb::Database::builder().open(path) {
        Ok(db) => drop(db),
        Err(::redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(CopyError::SourceInUse(path.to_owned()));
        }
        Err(e) => {
            return Err(CopyError::Source(LedgerError::Storage(format!(
                "opening {}: {e}",
                path.display()
            ))));
        }
    }
    RedbLedger::open(path, RedbOptions::default()).map_err(CopyError::Source)
}

/// Copies everything `source` holds into the empty database of `target` (migrating it
/// first); calls `on_records(copied, total)` after each chunk of records. Returns what was
/// copied. Fails with `Target(NotEmpty)` when the target holds a credential, event or rule
/// (nothing is written), `Target(Changed)` when something else wrote to it meanwhile,
/// `Source` or `Target(Ledger)` when either side fails — then the target holds part of the
/// copy: empty it (or re-create the database) before copying again.
pub async fn copy_redb_to_postgres(
    source: &RedbLedger,
    target: &PostgresOptions,
    on_records: &mut dyn FnMut(u64, u64),
) -> Result<CopyReport, CopyError> {
    let src = CopyError::Source;
    let last_sequence = source.last_sequence().await.map_err(src)?;
    let total = source.len().await.map_err(src)?;
    let mut import = PostgresImport::start(target).await?;
    let mut report = CopyReport {
        last_sequence,
        ..CopyReport::default()
    };
    report.records = copy_records(source, &mut import, total, on_records).await?;
    let live_counts = source.live_count_rows().await.map_err(src)?;
    let replay_guards = source.replay_guards().await.map_err(src)?;
    let rules = source.rules().await.map_err(src)?;
    report.live_counts = live_counts.len() as u64;
    report.replay_guards = replay_guards.len() as u64;
    report.rules = rules.len() as u64;
    for chunk in live_counts.chunks(CHUNK) {
        let live_counts = chunk.to_vec();
        import
            .import(&batch(|b| b.live_counts = live_counts))
            .await?;
    }
    for chunk in replay_guards.chunks(CHUNK) {
        let replay_guards = chunk.to_vec();
        import
            .import(&batch(|b| b.replay_guards = replay_guards))
            .await?;
    }
    for chunk in rules.chunks(CHUNK) {
        let rules = chunk.to_vec();
        import.import(&batch(|b| b.rules = rules)).await?;
    }
    report.events = copy_events(source, &mut import).await?;
    let usage = source
        .usage(UsageQuery {
            since_day: i64::MIN,
        })
        .await
        .map_err(src)?;
    report.usage = usage.len() as u64;
    for chunk in usage.chunks(CHUNK) {
        let usage = chunk.to_vec();
        import.import(&batch(|b| b.usage = usage)).await?;
    }
    import.finish(last_sequence).await?;
    Ok(report)
}

/// Returns an [`ImportBatch`] holding what `fill` puts in an empty one.
fn batch(fill: impl FnOnce(&mut ImportBatch)) -> ImportBatch {
    let mut batch = ImportBatch::default();
    fill(&mut batch);
    batch
}

/// Copies every record, [`CHUNK`] at a time, each `expired` exactly when the source already
/// emitted (or will never emit) its `expired` event; returns how many.
async fn copy_records(
    source: &RedbLedger,
    import: &mut PostgresImport,
    total: u64,
    on_records: &mut dyn FnMut(u64, u64),
) -> Result<u64, CopyError> {
    let cursor = source.expired_cursor().await.map_err(CopyError::Source)?;
    let mut copied = 0u64;
    let mut after = None;
    on_records(0, total);
    loop {
        let records = source
            .scan(after.take(), CHUNK)
            .await
            .map_err(CopyError::Source)?;
        let Some(last) = records.last() else {
            return Ok(copied);
        };
        after = Some(last.credential_id.clone());
        copied += records.len() as u64;
        let credentials = records
            .into_iter()
            .map(|record| ImportedCredential {
                // Ids are never empty: (t, id) <= (at, "") exactly when t < at.
                expired: (record.expires_at, record.credential_id.as_str())
                    <= (cursor.0, cursor.1.as_str()),
                record,
            })
            .collect();
        import
            .import(&batch(|b| b.credentials = credentials))
            .await?;
        on_records(copied, total.max(copied));
    }
}

/// Copies every event, [`CHUNK`] at a time, with its sequence; returns how many.
async fn copy_events(source: &RedbLedger, import: &mut PostgresImport) -> Result<u64, CopyError> {
    let mut copied = 0u64;
    let mut since = 0;
    loop {
        let events = source
            .event_rows(since, CHUNK)
            .await
            .map_err(CopyError::Source)?;
        let Some(last) = events.last() else {
            return Ok(copied);
        };
        since = last.sequence;
        copied += events.len() as u64;
        import.import(&batch(|b| b.events = events)).await?;
    }
}
