//! Wiring: builds the broker from a [`Config`], binds both TLS listeners, serves gRPC (broker,
//! health, reflection) and HTTPS, sweeps the ledger, and shuts down gracefully: stop accepting,
//! finish in-flight requests, flush the ledger.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tessera_core::clock::SharedClock;
use tessera_ledger::{
    Ledger, LedgerError, PostgresLedger, PostgresOptions, RedbLedger, RedbOptions,
};
use tessera_proto as proto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::api::admin::AdminService;
use crate::api::grpc::BrokerService;
use crate::api::http::{HttpParts, router};
use crate::api::introspect::IntrospectEndpoint;
use crate::api::status_list::StatusListEndpoint;
use crate::api::token::TokenEndpoint;
use crate::api::watch::Watches;
use crate::assemble::{AssembleError, Services};
use crate::audit::Audit;
use crate::config::{Config, LedgerBackend, PostgresTarget};
use crate::conns::Gate;
use crate::expiry::{ExpiryParts, ExpiryWatch};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::readiness::Readiness;
use crate::reload::{ReloadError, ReloadReport, Reloader};
use crate::tls::{self, AcceptParams, ServerConfigParams, TlsConn};
use crate::workload_api::WorkloadApi;

/// Largest gRPC request accepted, in bytes.
pub const MAX_GRPC_MESSAGE: usize = 64 * 1024;
/// Longest a gRPC request may take before it is cancelled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    #[error("{what} failed: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
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
    #[error("shared signals: {0}")]
    Ssf(#[from] crate::ssf::TransmitterError),
    #[error(transparent)]
    WorkloadApi(#[from] crate::workload_api::WorkloadApiError),
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    reloader: Arc<Reloader>,
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

    /// Reloads the configuration file, as SIGHUP does; `by` says who asked (audited).
    /// Returns what the reload did; fails as [`Reloader::reload`].
    pub async fn reload(&self, by: &str) -> Result<ReloadReport, ReloadError> {
        self.reloader.reload(by).await
    }

    /// Returns the reloader of the configuration file (for a signal handler).
    pub fn reloader(&self) -> Arc<Reloader> {
        Arc::clone(&self.reloader)
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
        self.task.await.map_err(|source| ServerError::Task {
            what: "the server task",
            source,
        })?
    }
}

/// Opens the configured ledger, recording into `metrics`. Fails when it cannot be opened: the
/// redb file is unusable, or the database cannot be reached or has a newer schema.
pub async fn open_ledger(
    config: &Config,
    metrics: &Metrics,
) -> Result<Arc<dyn Ledger>, ServerError> {
    match &config.ledger.backend {
        LedgerBackend::Redb(path) => {
            let path = path.clone();
            let options = RedbOptions {
                durable: config.ledger.fsync,
                journal: config.ledger.journal,
                checkpoint_every: config.ledger.checkpoint_interval,
                cache_size: config.ledger.cache_size,
                linger: config.ledger.commit_linger,
                metrics: metrics.ledger.clone(),
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
                .map_err(|source| ServerError::Task {
                    what: "opening the ledger",
                    source,
                })??;
            Ok(Arc::new(ledger))
        }
        LedgerBackend::Postgres(target) => {
            let options = PostgresOptions {
                linger: config.ledger.commit_linger,
                ..postgres_options(target, metrics)
            };
            let ledger = PostgresLedger::connect(options).await?;
            tracing::info!(url = %target.url, "connected to the PostgreSQL ledger");
            Ok(Arc::new(ledger))
        }
    }
}

/// Returns the options of the PostgreSQL ledger at `target`, recording into `metrics`.
pub fn postgres_options(target: &PostgresTarget, metrics: &Metrics) -> PostgresOptions {
    PostgresOptions {
        pool_size: target.pool_size,
        connect_timeout: target.connect_timeout,
        ca_certs: target.ca_certs.clone(),
        metrics: metrics.ledger.clone(),
        ..PostgresOptions::new(target.url.expose())
    }
}

/// Binds `addr`; returns the listener and the address it is bound to (the port, for `:0`).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bind_error = |source| ServerError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// Runs every check start-up runs on `config` that needs no ledger, no audit log and no port:
/// keys, bundles, OIDC issuer roots, the mint CA self-test, and the TLS certificate and key of
/// both listeners (what `tessera check` answers). Fails naming what is wrong.
pub fn check(config: &Config, clock: &SharedClock) -> Result<(), ServerError> {
    let hits = prometheus_client::metrics::counter::Counter::default();
    let material = crate::assemble::material(config, clock, &hits)?;
    crate::assemble::start_signing(config, clock)?;
    for alpn in [&[b"h2".as_slice()][..], &[b"h2", b"http/1.1"]] {
        tls::server_config(ServerConfigParams {
            cert_chain: &config.server.tls_cert_chain,
            key: &config.server.tls_key,
            verifier: material.attestor.x509(),
            alpn,
        })?;
    }
    Ok(())
}

/// Starts the server described by `config`; returns once the trust bundles of its Workload-API
/// trust domains have come, both listeners are bound and the ledger is open. Fails when a
/// Workload API sends no bundles in time, a listener cannot bind, the ledger cannot open, or
/// TLS material is unusable.
pub async fn start(config: Config, clock: SharedClock) -> Result<ServerHandle, ServerError> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let shutdown = CancellationToken::new();
    // Whatever start-up spawned stops if it fails half-way.
    let stop_on_failure = shutdown.clone().drop_guard();
    let (config, services, reloader) = assemble(config, clock, &shutdown).await?;
    follow(&services, &shutdown).await?;
    tokio::spawn(crate::audit_anchor::follow(
        services.audit.clone(),
        Arc::clone(&services.ledger),
        Arc::clone(&services.clock),
        shutdown.clone(),
    ));
    let listener = Listener {
        config: &config,
        services: &services,
        shutdown: &shutdown,
    };
    let (grpc_conns, grpc_addr) = listener.listen(config.server.grpc_addr, &[b"h2"]).await?;
    let (http_conns, http_addr) = listener
        .listen(config.server.http_addr, &[b"h2", b"http/1.1"])
        .await?;
    let ready = Readiness::new();
    let ssf = transmitter(&services, &config, &shutdown)?;
    let ssf_tasks = ssf.tasks();
    let http_router = router(http_parts(&services, &config, Arc::clone(&ready), ssf));
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(crate::readiness::watch_ledger(
        Arc::clone(&ready),
        Arc::clone(&services.ledger),
        health,
        GRPC_SERVICES,
        shutdown.clone(),
    ));
    let grpc = tokio::spawn(serve_grpc(
        grpc_services(&services, &shutdown, Arc::clone(&reloader)),
        health_service,
        grpc_conns,
        shutdown.clone(),
    ));
    let idle = config.server.http_idle_timeout;
    let http = tokio::spawn(
        crate::https_conns::serve(http_router, http_conns, idle, shutdown.clone()).map(Ok),
    );
    let sweeper = tokio::spawn(crate::sweeper::sweep(
        Arc::clone(&services.revoker),
        config.ledger.retain_expired,
        config.ledger.sweep_interval,
        shutdown.clone(),
    ));
    ready.set_serving(true);
    tracing::info!(%grpc_addr, %http_addr, issuer = %config.server.issuer, config = %config.source.display(), "tessera serving");
    let task = tokio::spawn(stop_when_cancelled(StopParams {
        shutdown: shutdown.clone(),
        grace: config.server.shutdown_grace,
        ready,
        serving: (grpc, http),
        sweeper,
        background: ssf_tasks,
        ledger: Arc::clone(&services.ledger),
        audit: services.audit.clone(),
        clock: Arc::clone(&services.clock),
    }));
    stop_on_failure.disarm();
    Ok(ServerHandle {
        grpc_addr,
        http_addr,
        reloader,
        shutdown,
        task,
    })
}

/// Takes the bundles of `config`'s Workload-API trust domains (waiting for the first ones),
/// opens the ledger and builds the services and the reloader, which follows bundle rotations
/// until `shutdown`. Returns the configuration with those bundles, the services and the
/// reloader. Fails when no bundles come, the ledger cannot open, or the material is unusable.
async fn assemble(
    config: Config,
    clock: SharedClock,
    shutdown: &CancellationToken,
) -> Result<(Config, Services, Arc<Reloader>), ServerError> {
    let metrics = Arc::new(Metrics::new());
    let workload_api = WorkloadApi::new(metrics.workload_api.clone(), shutdown.clone());
    let (filled, bundles) = workload_api.configure(&config).await?;
    let ledger = open_ledger(&filled, &metrics).await?;
    let services = crate::assemble::services(&filled, ledger, metrics, clock)?;
    services.revoker.restore().await?;
    let reloader = Arc::new(Reloader::of(config, bundles, &services, workload_api));
    tokio::spawn(Arc::clone(&reloader).follow_bundles(shutdown.clone()));
    Ok((filled, services, reloader))
}

/// Starts what keeps the services current until `shutdown`: rules committed anywhere, the ends
/// of grants, the status lists. Fails when the status lists cannot be rebuilt.
async fn follow(services: &Services, shutdown: &CancellationToken) -> Result<(), ServerError> {
    tokio::spawn(Arc::clone(&services.revoker).follow_rules(shutdown.clone()));
    let expiry = Arc::new(ExpiryWatch::new(ExpiryParts {
        settings: Arc::clone(&services.settings),
        revoker: Arc::clone(&services.revoker),
        metrics: Arc::clone(&services.metrics),
        audit: services.audit.clone(),
        clock: Arc::clone(&services.clock),
    }));
    tokio::spawn(expiry.run(shutdown.clone()));
    crate::status_list::start(Arc::clone(&services.status_lists), shutdown.clone()).await?;
    Ok(())
}

/// Connections ready to serve, after their TLS handshake.
type Conns = tokio::sync::mpsc::Receiver<std::io::Result<TlsConn>>;

/// What binding a listener needs.
struct Listener<'a> {
    config: &'a Config,
    services: &'a Services,
    shutdown: &'a CancellationToken,
}

impl Listener<'_> {
    /// Binds `addr` and accepts TLS connections on it (offering `alpn`) until shutdown,
    /// verifying client certificates with the bundles in force. Returns the connections and
    /// the bound address; fails when the TLS material is unusable or `addr` cannot be bound.
    async fn listen(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> Result<(Conns, SocketAddr), ServerError> {
        let tls = tls::server_config(ServerConfigParams {
            cert_chain: &self.config.server.tls_cert_chain,
            key: &self.config.server.tls_key,
            verifier: self.services.settings.load().attestor.x509(),
            alpn,
        })?;
        let (listener, bound) = bind(addr).await?;
        let settings = Arc::clone(&self.services.settings);
        let params = AcceptParams {
            acceptor: TlsAcceptor::from(tls),
            verifier: Arc::new(move || settings.x509_verifier()),
            clock: Arc::clone(&self.services.clock),
            shutdown: self.shutdown.clone(),
            gate: Gate::new(
                self.config.server.connections,
                self.services.metrics.connections_shed.clone(),
            ),
        };
        Ok((tls::accept(listener, params), bound))
    }
}

/// A task serving one listener until shutdown.
type Serving = JoinHandle<Result<(), ServerError>>;

/// What a graceful stop waits for and closes.
struct StopParams {
    shutdown: CancellationToken,
    grace: Duration,
    ready: Arc<Readiness>,
    /// The gRPC and HTTPS serving tasks.
    serving: (Serving, Serving),
    sweeper: JoinHandle<()>,
    /// Background tasks that end once `shutdown` fires (the Shared Signals transmitter's).
    background: tokio_util::task::TaskTracker,
    ledger: Arc<dyn Ledger>,
    audit: Audit,
    clock: SharedClock,
}

/// Waits for `shutdown`, then stops gracefully: not ready, no new connections, in-flight
/// requests finish (up to `grace`), the ledger is flushed and closed, the audit log written.
/// Fails when the gRPC server failed or the ledger cannot close.
async fn stop_when_cancelled(p: StopParams) -> Result<(), ServerError> {
    p.shutdown.cancelled().await;
    p.ready.set_serving(false);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let (grpc, http) = p.serving;
    let drained = tokio::time::timeout(p.grace, async { (grpc.await, http.await) }).await;
    if drained.is_err() {
        tracing::warn!(grace = ?p.grace, "in-flight requests did not finish within the grace period");
    }
    p.sweeper.abort();
    p.background.close();
    if tokio::time::timeout(p.grace, p.background.wait())
        .await
        .is_err()
    {
        tracing::warn!("shared signals tasks did not stop within the grace period");
    }
    // The audit log is written out and its last line anchored before the ledger closes.
    let audit = p.audit.clone();
    let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    if let Err(e) = crate::audit_anchor::anchor(&p.audit, p.ledger.as_ref(), &p.clock).await {
        tracing::warn!(error = %e, "anchoring the audit log at shutdown failed");
    }
    p.ledger.close().await?;
    tracing::info!("ledger flushed; stopped");
    match drained {
        Ok((Ok(Err(e)), _)) => Err(e),
        _ => Ok(()),
    }
}

/// Starts the Shared Signals transmitter of `s` (it stops with `shutdown`). Fails when
/// `[ssf] ca_file` is unusable.
fn transmitter(
    s: &Services,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<crate::ssf::Transmitter, ServerError> {
    Ok(crate::ssf::Transmitter::start(
        crate::ssf::TransmitterParts {
            config: &config.ssf,
            issuer: config.server.issuer.clone(),
            jwt: Arc::clone(&s.signing.jwt),
            cas: Arc::clone(&s.signing.cas),
            ledger: Arc::clone(&s.ledger),
            callers: s.callers.clone(),
            audit: s.audit.clone(),
            metrics: Arc::clone(&s.metrics),
            clock: Arc::clone(&s.clock),
            stopping: shutdown.clone(),
        },
    )?)
}

/// Returns what the HTTPS router serves, each endpoint with only what it uses.
fn http_parts(
    s: &Services,
    config: &Config,
    ready: Arc<Readiness>,
    ssf: crate::ssf::Transmitter,
) -> HttpParts {
    HttpParts {
        token: TokenEndpoint {
            issuer: Arc::clone(&s.issuer),
            limits: s.limits.clone(),
            audit: s.audit.clone(),
            metrics: Arc::clone(&s.metrics),
        },
        introspect: IntrospectEndpoint {
            callers: s.callers.clone(),
            jwt: Arc::clone(&s.signing.jwt),
            ledger: Arc::clone(&s.ledger),
            revoker: Arc::clone(&s.revoker),
            enforcement: Arc::clone(&s.enforcement),
            revoke_rate: Arc::new(RateLimiter::new(
                config.server.revoke_rate,
                "revocations",
                Arc::clone(&s.clock),
            )),
            metrics: Arc::clone(&s.metrics),
            clock: Arc::clone(&s.clock),
        },
        revoker: Arc::clone(&s.revoker),
        status_lists: StatusListEndpoint {
            lists: Arc::clone(&s.status_lists),
            enforcement: Arc::clone(&s.enforcement),
            clock: Arc::clone(&s.clock),
        },
        jwt: Arc::clone(&s.signing.jwt),
        issuer: config.server.issuer.clone(),
        metrics: Arc::clone(&s.metrics),
        ready,
        ssf,
    }
}

/// Returns the Broker and Admin gRPC services, each with only what it uses.
fn grpc_services(
    s: &Services,
    shutdown: &CancellationToken,
    reloader: Arc<Reloader>,
) -> (BrokerService, AdminService) {
    let watches = Watches {
        watchers: s.watchers.clone(),
        ledger: Arc::clone(&s.ledger),
        rules: Arc::clone(&s.rules),
        stopping: shutdown.clone(),
        metrics: Arc::clone(&s.metrics),
    };
    let broker = BrokerService {
        issuer: Arc::clone(&s.issuer),
        callers: s.callers.clone(),
        watches: watches.clone(),
        limits: s.limits.clone(),
        audit: s.audit.clone(),
        metrics: Arc::clone(&s.metrics),
        enforcement: Arc::clone(&s.enforcement),
        acks: Arc::clone(&s.ledger) as Arc<dyn tessera_ledger::AckStore>,
        clock: Arc::clone(&s.clock),
    };
    let admin = AdminService {
        callers: s.callers.clone(),
        revoker: Arc::clone(&s.revoker),
        ledger: Arc::clone(&s.ledger),
        watches,
        metrics: Arc::clone(&s.metrics),
        enforcement: Arc::clone(&s.enforcement),
        reloader,
        settings: Arc::clone(&s.settings),
        clock: Arc::clone(&s.clock),
    };
    (broker, admin)
}

/// The gRPC services whose health follows readiness ("" is the server as a whole).
const GRPC_SERVICES: &[&str] = &["", "tessera.v1.Broker", "tessera.v1.Admin"];

async fn serve_grpc(
    (broker, admin): (BrokerService, AdminService),
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    conns: tokio::sync::mpsc::Receiver<std::io::Result<TlsConn>>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    // v1 for grpcurl and grpcui; v1alpha for grpcio-reflection (Python), older grpcurl, Postman.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) =
        (reflection().build_v1()?, reflection().build_v1alpha()?);
    // Requests are small (a CSR is at most 16 KiB); nothing needs tonic's 4 MiB default.
    let admin_service =
        proto::admin_server::AdminServer::new(admin).max_decoding_message_size(MAX_GRPC_MESSAGE);
    let broker_service =
        proto::broker_server::BrokerServer::new(broker).max_decoding_message_size(MAX_GRPC_MESSAGE);
    tonic::transport::Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .concurrency_limit_per_connection(256)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(broker_service)
        .add_service(admin_service)
        .serve_with_incoming_shutdown(ReceiverStream::new(conns), shutdown.cancelled_owned())
        .await?;
    Ok(())
}
