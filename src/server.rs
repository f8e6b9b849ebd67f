//! Wiring: builds the broker from a [`Config`], binds both TLS listeners, serves gRPC (broker,
//! health, reflection) and HTTPS, sweeps the ledger, and shuts down gracefully: stop accepting,
//! finish in-flight requests, flush the ledger.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::api::admin::AdminService;
use crate::api::grpc::BrokerService;
use crate::api::http::{HttpState, router};
use crate::attest::oidc::KeySource;
use crate::attest::{Attestor, AttestorParams, OidcVerifier};
use crate::audit::AuditLog;
use crate::broker::{Broker, BrokerParts};
use crate::clock::SharedClock;
use crate::config::{Config, LedgerBackend, MAX_GRANT_TTL};
use crate::http_client::HttpsClient;
use crate::ledger::CredentialKind;
use crate::ledger::{Ledger, LedgerError, RedbLedger, RedbOptions, SweepParams};
use crate::mint::crl::CRL_VALIDITY_SECS;
use crate::mint::{JwtMinter, MintCa, X509Minter};
use crate::policy::Policy;
use crate::proto;
use crate::tls::{self, AcceptParams, ServerConfigParams, TlsConn};

/// Largest gRPC request accepted, in bytes.
pub const MAX_GRPC_MESSAGE: usize = 64 * 1024;
/// Longest a gRPC request may take before it is cancelled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    /// Returns the bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Returns the bound HTTPS address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Returns a token that starts a graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server has stopped (after a shutdown) and the ledger is flushed.
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task
            .await
            .map_err(|e| ServerError::Setup(format!("server task failed: {e}")))?
    }
}

async fn open_ledger(config: &Config) -> Result<Arc<dyn Ledger>, ServerError> {
    match &config.ledger.backend {
        LedgerBackend::Redb(path) => {
            let path = path.clone();
            let options = RedbOptions {
                durable: config.ledger.fsync,
                cache_size: config.ledger.cache_size,
                ..RedbOptions::default()
            };
            if !options.durable {
                tracing::warn!(
                    "[ledger] fsync = false: credentials are handed out before they are durable \
                     (for benchmarks only)"
                );
            }
            let ledger = tokio::task::spawn_blocking(move || RedbLedger::open(&path, options))
                .await
                .map_err(|e| ServerError::Setup(format!("opening the ledger: {e}")))??;
            Ok(Arc::new(ledger))
        }
    }
}

/// Builds the broker from `config` with `ledger`. Fails when a key or bundle cannot be used,
/// or the mint CA does not chain to the bundle of a trust domain it mints for.
pub fn build_broker(
    config: &Config,
    ledger: Arc<dyn Ledger>,
    clock: SharedClock,
) -> Result<Broker, ServerError> {
    let attestor = Attestor::new(AttestorParams {
        domains: &config.trust_domains,
        audience: &config.server.audience,
        client_ca: config.server.tls_client_ca.as_deref(),
        oidc: oidc_verifier(config, &clock)?,
    })
    .map_err(ServerError::Setup)?;
    let jwt = JwtMinter::new(&config.server.issuer, &config.signing.jwt_key)
        .map_err(|e| ServerError::Setup(format!("signing.jwt_key: {e}")))?;
    let x509 = match (&config.signing.ca_cert, &config.signing.ca_key) {
        (Some(chain), Some(key)) => {
            let ca = MintCa::new(chain, key).map_err(|e| ServerError::Setup(e.to_string()))?;
            Some(X509Minter::new(ca))
        }
        _ => None,
    };
    let bundles = config
        .trust_domains
        .iter()
        .map(|td| {
            (
                td.name.as_str().to_owned(),
                td.x509_roots.iter().map(|c| c.to_vec()).collect(),
            )
        })
        .collect();
    let broker = Broker::new(BrokerParts {
        attestor,
        policy: Policy::new(config.grants.clone()),
        jwt,
        x509,
        bundles,
        admins: config.admin_ids.clone(),
        limits: crate::limits::Limits::new(config.server.max_in_flight, config.server.max_watchers),
        audit: Some(
            AuditLog::open(&config.audit_path)
                .map_err(|e| ServerError::Setup(format!("audit log: {e}")))?,
        ),
        ledger,
        clock,
    });
    let x509_domains: BTreeSet<&str> = config
        .grants
        .iter()
        .filter(|g| g.credentials.contains(&CredentialKind::X509))
        .map(|g| g.workload.trust_domain_name())
        .collect();
    for domain in x509_domains {
        broker.self_test_x509(domain).map_err(|e| {
            ServerError::Setup(format!(
                "signing.ca_cert: an X.509-SVID it signs for trust domain `{domain}` does not verify: {e}"
            ))
        })?;
    }
    Ok(broker)
}

/// Builds the CI token verifier: one HTTPS client per issuer (its `ca_file` added to the
/// Mozilla roots). Fails when a `ca_file` root is unusable.
fn oidc_verifier(config: &Config, clock: &SharedClock) -> Result<OidcVerifier, ServerError> {
    let mut sources = Vec::new();
    for issuer in &config.oidc_issuers {
        let http = HttpsClient::new(&issuer.extra_roots).map_err(|e| {
            ServerError::Setup(format!("oidc_issuer `{}`: {e}", issuer.verify.issuer))
        })?;
        sources.push(KeySource {
            issuer: issuer.verify.issuer.clone(),
            jwks_uri: issuer.jwks_uri.clone(),
            http,
        });
    }
    let issuers = config
        .oidc_issuers
        .iter()
        .map(|i| i.verify.clone())
        .collect();
    Ok(OidcVerifier::new(issuers, sources, Arc::clone(clock)))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Starts the server described by `config`; returns once both listeners are bound and the
/// ledger is open. Fails when a listener cannot bind, the ledger cannot open, or TLS material
/// is unusable.
pub async fn start(config: Config, clock: SharedClock) -> Result<ServerHandle, ServerError> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let ledger = open_ledger(&config).await?;
    let broker = Arc::new(build_broker(
        &config,
        Arc::clone(&ledger),
        Arc::clone(&clock),
    )?);
    broker.restore().await?;
    tokio::spawn(Arc::clone(&broker).follow_rules());
    let tls_for = |alpn: &[&[u8]]| {
        tls::server_config(ServerConfigParams {
            cert_chain: &config.server.tls_cert_chain,
            key: &config.server.tls_key,
            verifier: broker.attestor().x509(),
            alpn,
        })
    };
    let grpc_tls = TlsAcceptor::from(tls_for(&[b"h2"])?);
    let http_tls = TlsAcceptor::from(tls_for(&[b"h2", b"http/1.1"])?);
    let grpc_listener = bind(config.server.grpc_addr).await?;
    let http_listener = bind(config.server.http_addr).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: config.server.grpc_addr,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: config.server.http_addr,
            source,
        })?;
    let shutdown = broker.stopping().clone();
    let accept = |acceptor| AcceptParams {
        acceptor,
        broker: Arc::clone(&broker),
        clock: Arc::clone(&clock),
        shutdown: shutdown.clone(),
    };
    let grpc_conns = tls::accept(grpc_listener, accept(grpc_tls));
    let http_conns = tls::accept(http_listener, accept(http_tls));
    let ready = Arc::new(AtomicBool::new(false));
    let http_state = Arc::new(HttpState::new(
        Arc::clone(&broker),
        &config.server.issuer,
        Arc::clone(&ready),
    ));
    let grpc = tokio::spawn(serve_grpc(
        Arc::clone(&broker),
        grpc_conns,
        shutdown.clone(),
    ));
    let http = tokio::spawn(serve_http(router(http_state), http_conns, shutdown.clone()));
    let sweeper = tokio::spawn(sweep(
        Arc::clone(&broker),
        config.ledger.retain_expired,
        config.ledger.sweep_interval,
        shutdown.clone(),
    ));
    ready.store(true, Ordering::Release);
    tracing::info!(%grpc_addr, %http_addr, issuer = %config.server.issuer, config = %config.source.display(), "tessera serving");
    let grace = config.server.shutdown_grace;
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        token.cancelled().await;
        ready.store(false, Ordering::Release);
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let drained = tokio::time::timeout(grace, async { (grpc.await, http.await) }).await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "in-flight requests did not finish within the grace period"
            );
        }
        sweeper.abort();
        ledger.close().await?;
        let audited = Arc::clone(&broker);
        let _ = tokio::task::spawn_blocking(move || audited.flush_audit()).await;
        tracing::info!("ledger flushed; stopped");
        match drained {
            Ok((Ok(Err(e)), _)) => Err(e),
            _ => Ok(()),
        }
    });
    Ok(ServerHandle {
        grpc_addr,
        http_addr,
        shutdown,
        task,
    })
}

async fn serve_grpc(
    broker: Arc<Broker>,
    conns: tokio::sync::mpsc::Receiver<std::io::Result<TlsConn>>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<proto::broker_server::BrokerServer<BrokerService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Setup(format!("gRPC reflection: {e}")))?;
    health
        .set_serving::<proto::admin_server::AdminServer<AdminService>>()
        .await;
    let admin_service =
        proto::admin_server::AdminServer::new(AdminService::new(Arc::clone(&broker)))
            .max_decoding_message_size(MAX_GRPC_MESSAGE);
    // Requests are small (a CSR is at most 16 KiB); nothing needs tonic's 4 MiB default.
    let broker_service = proto::broker_server::BrokerServer::new(BrokerService::new(broker))
        .max_decoding_message_size(MAX_GRPC_MESSAGE);
    tonic::transport::Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .concurrency_limit_per_connection(256)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(broker_service)
        .add_service(admin_service)
        .serve_with_incoming_shutdown(ReceiverStream::new(conns), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

async fn serve_http(
    router: axum::Router,
    mut conns: tokio::sync::mpsc::Receiver<std::io::Result<TlsConn>>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A timer enables hyper's header-read timeout (slow clients cannot hold connections).
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    loop {
        let conn = tokio::select! {
            () = shutdown.cancelled() => break,
            conn = conns.recv() => match conn {
                Some(Ok(conn)) => conn,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let service = router.clone().layer(axum::Extension(conn.info().clone()));
        let connection =
            builder.serve_connection(TokioIo::new(conn), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Records swept per write transaction.
const SWEEP_BATCH: usize = 10_000;
/// How often `expired` events are recorded.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);

/// Records `expired` events every [`EXPIRE_EVERY`], and every `every` sweeps expired records,
/// old events and dead rules from the ledger and the revocation index.
async fn sweep(
    broker: Arc<Broker>,
    retain: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut expire_tick = tokio::time::interval(EXPIRE_EVERY);
    let mut sweep_tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    let retain = i64::try_from(retain.as_secs()).unwrap_or(i64::MAX);
    loop {
        let sweep_now = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = expire_tick.tick() => false,
            _ = sweep_tick.tick() => true,
        };
        let ledger = broker.ledger();
        let now = broker.clock().unix_seconds();
        match ledger.expire(now).await {
            Ok(n) => {
                crate::metrics::METRICS
                    .live_credentials
                    .dec_by(i64::try_from(n).unwrap_or(0));
            }
            Err(e) => tracing::warn!(error = %e, "recording expiries failed"),
        }
        if !sweep_now {
            continue;
        }
        // A rule can be dropped once everything it could cover has expired and left the CRL.
        let rules_before =
            now - i64::try_from(MAX_GRANT_TTL.as_secs()).unwrap_or(3600) - CRL_VALIDITY_SECS - 60;
        broker.revocations().prune(rules_before, now);
        crate::metrics::METRICS
            .revocation_rules
            .set(i64::try_from(broker.revocations().rule_count()).unwrap_or(0));
        // Events (revocations included) are kept at least as long as the rules they announce,
        // so a relying party that resumes late still learns every rule in force.
        let params = SweepParams {
            expired_before: now.saturating_sub(retain).min(rules_before),
            rules_before,
            limit: SWEEP_BATCH,
        };
        // Batches until the backlog is gone, bounded so one sweep cannot run forever.
        for _ in 0..100 {
            match ledger.sweep(params).await {
                Ok(n) if (n as usize) < SWEEP_BATCH => break,
                Ok(n) => tracing::info!(swept = n, "expired credentials swept from the ledger"),
                Err(e) => {
                    tracing::warn!(error = %e, "ledger sweep failed");
                    break;
                }
            }
        }
    }
}
