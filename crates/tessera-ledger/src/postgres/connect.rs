//! Connections to the database: the parsed URL with the session settings every connection
//! gets, TLS through rustls (aws-lc-rs), the pool, and the time bounds on every use of them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PostgresOptions;
use crate::LedgerError;

/// Session settings of every connection: a commit returns only once it is flushed to disk
/// (invariant 1), whatever the server's default.
const SESSION_OPTIONS: &str = "-c synchronous_commit=on";

/// `map_err` to [`LedgerError::Storage`] naming the operation.
pub(super) trait StorageContext<T> {
    fn ctx(self, operation: &'static str) -> Result<T, LedgerError>;
}

impl<T, E: std::error::Error> StorageContext<T> for Result<T, E> {
    fn ctx(self, operation: &'static str) -> Result<T, LedgerError> {
        self.map_err(|e| LedgerError::Storage(format!("{operation}: {}", chain(&e))))
    }
}

/// Returns `e` and its sources, joined by ": " (the driver's errors say what failed only in
/// their source: "db error", then the server's message).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Returns the connection settings of `url` with the session settings, timeouts and TCP
/// keepalives of the ledger. Fails with `Storage` when the URL does not parse.
pub(super) fn pg_config(
    url: &str,
    connect_timeout: Duration,
) -> Result<tokio_postgres::Config, LedgerError> {
    let mut config: tokio_postgres::Config = url.parse().ctx("parsing the ledger url")?;
    let options = match config.get_options() {
        Some(given) => format!("{given} {SESSION_OPTIONS}"),
        None => SESSION_OPTIONS.to_owned(),
    };
    config
        .options(options)
        .connect_timeout(connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("tessera");
    }
    Ok(config)
}

/// Returns the TLS connector: server certificates must chain to `ca_certs` when given, else
/// to the Web PKI roots. Whether TLS is used follows the URL's `sslmode` (`prefer` by
/// default). Fails with `Storage` when a given root is not a usable certificate.
pub(super) fn tls(ca_certs: &[CertificateDer<'static>]) -> Result<MakeRustlsConnect, LedgerError> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_certs.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for cert in ca_certs {
            roots
                .add(cert.clone())
                .ctx("adding a database CA certificate")?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ctx("configuring TLS to the database")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Returns a pool of at most `pool_size` connections whose waits, connects and recycles are
/// each bounded by `connect_timeout`. Connections are made lazily. Fails with `Storage` when
/// the URL or the TLS settings are unusable.
pub(super) fn pool(options: &PostgresOptions) -> Result<Pool, LedgerError> {
    let config = pg_config(&options.url, options.connect_timeout)?;
    let manager = Manager::from_config(
        config,
        tls(&options.ca_certs)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let bound = Some(options.connect_timeout);
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(bound)
        .create_timeout(bound)
        .recycle_timeout(bound)
        .build()
        .ctx("creating the database pool")
}

/// Returns a pooled connection. Fails with `Storage` when none can be had within the pool's
/// timeouts (the database is down or every connection is busy).
pub(super) async fn client(pool: &Pool, operation: &'static str) -> Result<Object, LedgerError> {
    pool.get().await.map_err(|e| {
        LedgerError::Storage(format!(
            "{operation}: no database connection: {}",
            chain(&e)
        ))
    })
}

/// Returns what `work` returns, or fails with `Storage` once `limit` has passed (the future is
/// dropped, with whatever connection it held).
pub(super) async fn timed<T>(
    limit: Duration,
    operation: &'static str,
    work: impl Future<Output = Result<T, LedgerError>>,
) -> Result<T, LedgerError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(LedgerError::Storage(format!(
            "{operation}: the database did not answer within {limit:?}"
        )))
    })
}
