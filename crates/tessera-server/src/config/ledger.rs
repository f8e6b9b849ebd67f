//! `[ledger]`, checked: the embedded redb file or a shared PostgreSQL database, and how it is
//! used (fsync, cache, retention, sweeps, pool).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::{Checker, ConfigError, file};

/// Where the ledger lives.
#[derive(Debug, Clone)]
pub enum LedgerBackend {
    /// The embedded redb file (`[ledger] path`).
    Redb(PathBuf),
    /// A PostgreSQL database shared by replicas (`[ledger] url`).
    Postgres(PostgresTarget),
}

/// `[ledger] url`, `pool_size` and `connect_timeout`, checked.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    pub url: DatabaseUrl,
    /// Connections kept to the database (`[ledger] pool_size`, default 16).
    pub pool_size: usize,
    /// How long connecting may take before an operation fails (`[ledger] connect_timeout`).
    pub connect_timeout: Duration,
    /// Roots the database's TLS certificate must chain to (`[ledger] ca_file`); empty means
    /// the Mozilla roots. TLS is used as the URL's `sslmode` says.
    pub ca_certs: Vec<CertificateDer<'static>>,
}

/// A `postgres://` URL. It may carry a password, so `Debug` and `Display` show it without one.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Parses a `postgres://` or `postgresql://` URL; fails naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("postgres://")
            .or_else(|| text.strip_prefix("postgresql://"))
            .ok_or("must start with postgres:// or postgresql://")?;
        if rest.split(['/', '?']).next().is_none_or(str::is_empty) {
            return Err("names no host".into());
        }
        Ok(DatabaseUrl(text.to_owned()))
    }

    /// Returns the URL as written, password included: for connecting only, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns the URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".into();
        };
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                let masked = if userinfo.contains(':') { ":***" } else { "" };
                format!("{scheme}://{user}{masked}@{host}{tail}")
            }
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `[ledger]`, checked.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub backend: LedgerBackend,
    pub retain_expired: Duration,
    pub sweep_interval: Duration,
    /// Fsync every commit (`[ledger] fsync`, default true). `false` is for measuring what
    /// durability costs: a crash may lose credentials that were already handed out.
    pub fsync: bool,
    /// Make redb batches durable through the journal beside the ledger file (`[ledger]
    /// journal`, default true), checkpointing redb every 250 ms; `false` fsyncs every redb
    /// commit instead. No effect on PostgreSQL.
    pub journal: bool,
    /// Longest time between redb checkpoints while journaling (`[ledger] checkpoint_interval`,
    /// default 250 ms, 10 ms to 60 s): each holds the writer for one durable redb commit.
    pub checkpoint_interval: Duration,
    /// Bytes of redb page cache (`[ledger] cache_size`).
    pub cache_size: usize,
    /// Group commit window (`[ledger] commit_linger`, default 1 ms): while mints arrive
    /// concurrently, how long the writer waits for more before one commit carries them all.
    /// Longer means fewer commits (less CPU per credential) and more latency per mint.
    pub commit_linger: Duration,
}

/// Default of `[ledger] pool_size`.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Default of `[ledger] commit_linger`.
pub const DEFAULT_COMMIT_LINGER: Duration = Duration::from_millis(1);
/// Longest `[ledger] commit_linger` accepted.
const MAX_COMMIT_LINGER: Duration = Duration::from_millis(100);

/// Default of `[ledger] cache_size`: 64 MiB.
pub const DEFAULT_LEDGER_CACHE: usize = 64 << 20;

/// Default of `[ledger] checkpoint_interval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Returns `[ledger] checkpoint_interval`, checked: 10 ms to 60 s.
fn checkpoint_interval(
    check: &Checker<'_>,
    s: &file::LedgerSection,
) -> Result<Duration, ConfigError> {
    const KEY: &str = "ledger.checkpoint_interval";
    let interval = check.duration(
        KEY,
        s.checkpoint_interval.as_deref(),
        DEFAULT_CHECKPOINT_INTERVAL,
    )?;
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&interval) {
        return Err(check.invalid(
            KEY,
            "must be 10ms to 60s: the journal replayed after a crash holds up to this much",
        ));
    }
    Ok(interval)
}

/// Returns `[ledger]`, checked; fails naming the key that is wrong.
pub(super) fn ledger(
    check: &Checker<'_>,
    s: &file::LedgerSection,
) -> Result<LedgerConfig, ConfigError> {
    let backend = match (&s.path, &s.url) {
        (Some(path), None) => LedgerBackend::Redb(PathBuf::from(path)),
        (None, None) => LedgerBackend::Redb(PathBuf::from("tessera-data/ledger.redb")),
        (Some(_), Some(_)) => {
            return Err(check.invalid("ledger", "set exactly one of `path` and `url`"));
        }
        (None, Some(url)) => LedgerBackend::Postgres(PostgresTarget {
            // The URL may hold a password: the message never repeats it.
            url: DatabaseUrl::parse(url).map_err(|m| check.invalid("ledger.url", m))?,
            pool_size: match s.pool_size {
                None => DEFAULT_POOL_SIZE,
                Some(0) => return Err(check.invalid("ledger.pool_size", "must be at least 1")),
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            },
            connect_timeout: check.duration(
                "ledger.connect_timeout",
                s.connect_timeout.as_deref(),
                Duration::from_secs(5),
            )?,
            ca_certs: match &s.ca_file {
                Some(path) => check.certs("ledger.ca_file", path)?,
                None => Vec::new(),
            },
        }),
    };
    Ok(LedgerConfig {
        backend,
        retain_expired: check.duration(
            "ledger.retain_expired",
            s.retain_expired.as_deref(),
            Duration::from_secs(3600),
        )?,
        sweep_interval: check.duration(
            "ledger.sweep_interval",
            s.sweep_interval.as_deref(),
            Duration::from_secs(60),
        )?,
        fsync: s.fsync.unwrap_or(true),
        journal: s.journal.unwrap_or(true),
        checkpoint_interval: checkpoint_interval(check, s)?,
        cache_size: check.size(
            "ledger.cache_size",
            s.cache_size.as_ref(),
            DEFAULT_LEDGER_CACHE,
        )?,
        commit_linger: match check.duration(
            "ledger.commit_linger",
            s.commit_linger.as_deref(),
            DEFAULT_COMMIT_LINGER,
        )? {
            linger if linger > MAX_COMMIT_LINGER => {
                return Err(check.invalid(
                    "ledger.commit_linger",
                    "must be at most 100ms: every concurrent mint waits it",
                ));
            }
            linger => linger,
        },
    })
}
