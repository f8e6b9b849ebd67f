//! Ledger maintenance: `tessera ledger migrate` (apply the PostgreSQL schema migrations) and
//! `tessera ledger copy` (move an embedded ledger into an empty PostgreSQL database).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use tessera_core::clock::SystemClock;
use tessera_ledger::{
    CopyError, CopyReport, Ledger, LedgerError, POSTGRES_SCHEMA_VERSION, PostgresOptions,
};
use tessera_server::config::{Config, DatabaseUrl, LedgerBackend};
use tessera_server::metrics::Metrics;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Applies the PostgreSQL ledger's schema migrations (as `serve` does at start) and prints
    /// the schema version.
    Migrate {
        /// Configuration file (TOML) whose `[ledger] url` names the database.
        #[arg(long)]
        config: PathBuf,
    },
    /// Copies an embedded (redb) ledger into an empty PostgreSQL database: records, rules,
    /// events with their sequences, replay guards. Stop the broker using the file first.
    Copy {
        /// The embedded ledger file (`[ledger] path`).
        #[arg(long)]
        from: PathBuf,
        /// The target database, `postgres://user[:password]@host[:port]/database`.
        #[arg(long)]
        to: String,
        /// Roots the database's TLS certificate must chain to (PEM), as `[ledger] ca_file`.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

/// Why a ledger command failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerCmdError {
    #[error("{0}")]
    Config(#[from] tessera_server::config::ConfigError),
    #[error("nothing to migrate: [ledger] path is an embedded ledger ({0})")]
    Embedded(PathBuf),
    #[error("--to: {0}")]
    BadUrl(String),
    #[error("--ca-file: {0}")]
    CaFile(#[from] tessera_core::keys::KeyError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Copy(#[from] CopyError),
}

/// Runs `command`; fails with what went wrong, never showing a database password.
pub fn run(command: LedgerCommand) -> Result<(), LedgerCmdError> {
    let runtime = tokio::runtime::Runtime::new().map_err(LedgerCmdError::Runtime)?;
    match command {
        LedgerCommand::Migrate { config } => runtime.block_on(migrate(&config)),
        LedgerCommand::Copy { from, to, ca_file } => {
            runtime.block_on(copy(&from, &to, ca_file.as_deref()))
        }
    }
}

/// Migrates the PostgreSQL ledger of the configuration at `path` and prints its schema
/// version. Fails on an unreadable config, an embedded ledger, a database that cannot be
/// reached, or one migrated by a newer build (`SchemaTooNew`).
async fn migrate(path: &Path) -> Result<(), LedgerCmdError> {
    let config = Config::load(path, &SystemClock)?;
    let target = match &config.ledger.backend {
        LedgerBackend::Redb(file) => return Err(LedgerCmdError::Embedded(file.clone())),
        LedgerBackend::Postgres(target) => target,
    };
    let options = tessera_server::server::postgres_options(target, &Metrics::new());
    let before = tessera_ledger::migrate_with(&options).await?;
    let url = target.url.redacted();
    if before == POSTGRES_SCHEMA_VERSION {
        println!("{url}: ledger schema already at version {POSTGRES_SCHEMA_VERSION}");
    } else {
        println!(
            "{url}: ledger schema migrated from version {before} to {POSTGRES_SCHEMA_VERSION}"
        );
    }
    Ok(())
}

/// Copies the embedded ledger at `from` into the database at `to` and prints the counts;
/// shows a progress bar over the records when stderr is a terminal. Fails as
/// [`tessera_ledger::copy_redb_to_postgres`] does, or on a bad URL or CA file.
async fn copy(from: &Path, to: &str, ca_file: Option<&Path>) -> Result<(), LedgerCmdError> {
    let url = DatabaseUrl::parse(to).map_err(LedgerCmdError::BadUrl)?;
    let mut options = PostgresOptions::new(url.expose());
    if let Some(ca_file) = ca_file {
        options.ca_certs = tessera_core::keys::certificates(ca_file)?;
    }
    let source = tessera_ledger::open_source(from)?;
    let bar = std::io::stderr().is_terminal().then(progress_bar);
    let mut on_records = |done: u64, total: u64| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let copied = tessera_ledger::copy_redb_to_postgres(&source, &options, &mut on_records).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = copied?;
    source.close().await?;
    print_report(from, &url, &report);
    Ok(())
}

/// Returns the bar shown over the records while they are copied.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} records ({eta} left)") {
        bar.set_style(style);
    }
    bar
}

fn print_report(from: &Path, to: &DatabaseUrl, report: &CopyReport) {
    println!("copied {} to {}", from.display(), to.redacted());
    println!("records: {}", report.records);
    println!("rules: {}", report.rules);
    println!("events: {}", report.events);
    println!("replay guards: {}", report.replay_guards);
    println!("usage keys: {}", report.usage);
    println!("last sequence: {}", report.last_sequence);
}
