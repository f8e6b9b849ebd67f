//! `tessera bench`: an open-loop load generator against a running broker (or a peer OAuth
//! server), with the crypto ceiling measured in the same run.
//!
//! One run = one scenario: measure the single-thread crypto ceiling of what the scenario's
//! requests cannot avoid ([`ceiling`]), connect, then run steps at a constant arrival rate
//! ([`drive`]) — one rate, or a ramp that multiplies the rate until a step is not sustained —
//! and report each step's goodput, percentiles and the broker's memory ([`report`]).

pub mod ceiling;
pub mod drive;
pub mod error;
pub mod http1;
pub mod issuer;
pub mod report;
pub mod revoker;
pub mod target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use self::ceiling::{Ceiling, CryptoKind};
use self::drive::{Load, StepParams};
pub use self::error::BenchError;
use self::report::{Report, StepReport};
use self::target::{Exchange, GrpcMint, MintKind, Peer};
use tessera_core::clock::{Clock, SystemClock};
use tessera_proto::broker_client::BrokerClient;
use tessera_server::config::parse_duration;

/// What a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `MintJwt` with a JWT-SVID bearer token (verified per request).
    MintJwt,
    /// `MintJwt` over mTLS with the dev workload's X509-SVID (verified once per connection).
    MintJwtMtls,
    /// `MintX509` from a P-256 CSR, JWT-SVID bearer.
    MintX509,
    /// RFC 8693 exchange of a fresh ES256 CI token per request over HTTPS `/token`.
    Exchange,
    /// `MintJwt` over mTLS while an admin revokes minted credentials by id.
    Revoke,
    /// `client_credentials` + `private_key_jwt` against the peer in `bench/peer/`.
    Peer,
}

impl Scenario {
    /// Returns the crypto every request of this scenario cannot avoid.
    pub fn crypto(self) -> CryptoKind {
        match self {
            Scenario::MintJwt | Scenario::Exchange | Scenario::Peer => CryptoKind::Es256VerifySign,
            Scenario::MintJwtMtls | Scenario::Revoke => CryptoKind::Es256Sign,
            Scenario::MintX509 => CryptoKind::CsrVerifyCaSign,
        }
    }
}

/// Options of `tessera bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to send.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// The broker's gRPC address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub grpc_addr: String,
    /// The broker's HTTPS address (`/token`).
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub http_addr: String,
    /// Dev material: the TLS CA, the workload and admin SVIDs, the JWT-SVID key.
    #[arg(long, default_value = "certs-dev")]
    pub certs: PathBuf,
    /// Requests per second (the first step's, with --ramp).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Multiply the rate by this after each sustained step until one is not; 0 runs one step.
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// A step is sustained while its p99 stays within this many milliseconds.
    #[arg(long, default_value_t = 10)]
    pub p99_limit_ms: u64,
    /// Most steps of a ramp.
    #[arg(long, default_value_t = 12)]
    pub max_steps: usize,
    /// After a ramp, one step at half the peak sustained rate and one at this multiple of it
    /// (0: neither).
    #[arg(long, default_value_t = 0.0)]
    pub overload: f64,
    /// Measured time per step, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured lead-in per step at the same rate.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Most requests outstanding; later ones wait, their latency counted from their slot.
    #[arg(long, default_value_t = 1024)]
    pub concurrency: usize,
    /// HTTP/2 connections to the target's gRPC listener (each carries many requests at once).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// HTTP/1.1 keep-alive connections for the HTTP scenarios (`exchange`, `peer`). Each
    /// carries one request at a time, so a pool caps throughput at connections ÷ latency:
    /// 4 connections at 2 ms were 2,000/s, below the broker's peak.
    #[arg(long, default_value_t = 64)]
    pub http1_connections: usize,
    /// Where the `exchange` scenario serves its CI issuer (the broker's config names it).
    #[arg(long, default_value = "127.0.0.1:9555")]
    pub ci_issuer_addr: SocketAddr,
    /// Token endpoint of the peer (`peer` scenario).
    #[arg(long, default_value = "http://127.0.0.1:9600/token")]
    pub peer_url: String,
    /// Revocations per second in the `revoke` scenario.
    #[arg(long, default_value_t = 10.0)]
    pub revoke_rate: f64,
    /// The broker's pid, to report its memory (VmRSS, VmHWM) after each step.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// How long to measure the crypto ceiling.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub ceiling_time: Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print markdown rows (for `BENCHMARKS.md`) instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
    /// Print the broker configuration the `exchange` scenario needs (its CI issuer on
    /// `--ci-issuer-addr`, trusted through `<certs>/tls-ca.pem`, and a grant) and exit.
    #[arg(long)]
    pub print_broker_config: bool,
    /// Write the JWKS the peer server needs (`--client-jwks`) to this file and exit.
    #[arg(long)]
    pub write_peer_jwks: Option<PathBuf>,
}

/// Runs `tessera bench`: prints the report; refused requests are results, not failures.
///
/// Fails with the [`BenchError`] of [`measure`] when the target cannot be reached or the
/// ceiling cannot be measured, and with [`BenchError::AbsolutePath`], [`BenchError::Target`]
/// (the dev JWT-SVID key), [`BenchError::Write`], [`BenchError::Runtime`] or
/// [`BenchError::Json`] when `--print-broker-config`, `--write-peer-jwks`, the runtime or the
/// JSON report fails.
pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    if args.print_broker_config {
        let path = args.certs.join("tls-ca.pem");
        let ca = match std::path::absolute(&path) {
            Ok(ca) => ca,
            Err(source) => return Err(BenchError::AbsolutePath { path, source }),
        };
        print!("{}", issuer::broker_config(args.ci_issuer_addr, &ca));
        return Ok(());
    }
    if let Some(path) = &args.write_peer_jwks {
        let jwks = Peer::client_jwks(&Peer::signer(&args.certs)?);
        return std::fs::write(path, jwks.to_string()).map_err(|source| BenchError::Write {
            path: path.clone(),
            source,
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let report = runtime.block_on(measure(args))?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)?
    } else if args.markdown {
        report.markdown()
    } else {
        report.table()
    };
    println!("{text}");
    Ok(())
}

/// The load of `args.scenario`, connected, and the admin revoking alongside it for `revoke`.
///
/// Fails with [`BenchError::Target`] or [`BenchError::Key`] naming the file when dev material
/// cannot be read, [`BenchError::Target`], [`BenchError::Revoker`] or [`BenchError::Http1`]
/// naming the URL when the target cannot be reached or its URL is unusable,
/// [`BenchError::Issuer`] when the CI issuer cannot start, and [`BenchError::Svid`],
/// [`BenchError::BearerHeader`] or [`BenchError::Csr`] when a request's credentials cannot be
/// made.
async fn connect(
    args: &BenchArgs,
) -> Result<(Arc<dyn Load>, Option<revoker::Revoker>), BenchError> {
    let read = |name: &str| target::read_cert_file(&args.certs, name);
    let ca = read("tls-ca.pem")?;
    let grpc = format!("https://{}", args.grpc_addr);
    let bearer = || -> Result<_, BenchError> {
        let signer = target::dev_signer(&args.certs, tessera_testkit::dev::JWT_SVID_KID)?;
        let now = SystemClock.unix_seconds();
        let svid = signer
            .svid(tessera_testkit::dev::WORKLOAD_ID, "tessera", now, 3600)
            .map_err(BenchError::Svid)?;
        format!("Bearer {svid}")
            .parse()
            .map(Some)
            .map_err(BenchError::BearerHeader)
    };
    let mtls = || -> Result<_, BenchError> {
        Ok(Some((read("workload.pem")?, read("workload-key.pem")?)))
    };
    let mint = |kind, bearer, identity, minted| async move {
        let channels = target::channels(&grpc, &ca, identity, args.connections).await?;
        Ok::<_, BenchError>(target::shared(GrpcMint {
            clients: channels.into_iter().map(BrokerClient::new).collect(),
            bearer,
            kind,
            minted,
        }))
    };
    let load = match args.scenario {
        Scenario::MintJwt => mint(MintKind::Jwt, bearer()?, None, None).await,
        Scenario::MintJwtMtls => mint(MintKind::Jwt, None, mtls()?, None).await,
        Scenario::MintX509 => mint(MintKind::X509(csr()?), bearer()?, None, None).await,
        Scenario::Revoke => {
            let (load, revoker) = revoker::connect(args).await?;
            return Ok((load, Some(revoker)));
        }
        Scenario::Exchange => {
            let roots = tessera_core::keys::certificates(&args.certs.join("tls-ca.pem"))?;
            let cert = tessera_core::keys::certificates(&args.certs.join("server.pem"))?;
            let key = tessera_core::keys::private_key(&args.certs.join("server-key.pem"))?;
            let issuer =
                issuer::CiIssuer::start(args.ci_issuer_addr, cert, key.to_rustls(), "tessera")
                    .await?;
            let url = format!("https://{}/token", args.http_addr);
            Ok(target::shared(Exchange {
                pool: http1::Http1Pool::new(&url, args.http1_connections, &roots)?,
                issuer,
                destination: target::CI_DESTINATION.into(),
                purpose: target::CI_PURPOSE.into(),
            }))
        }
        Scenario::Peer => Ok(target::shared(Peer {
            pool: http1::Http1Pool::new(&args.peer_url, args.http1_connections, &[])?,
            signer: Peer::signer(&args.certs)?,
            token_url: args.peer_url.clone(),
        })),
    }?;
    Ok((load, None))
}

/// A fresh P-256 CSR (DER) for `MintX509`. Fails with rcgen's error if the key cannot be
/// generated or the request cannot be signed.
fn csr() -> Result<Vec<u8>, rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
    Ok(csr.der().to_vec())
}

/// Measures the crypto ceiling (first, on the calling thread, while the target is idle), then
/// runs the steps `args` asks for; returns the report.
///
/// Fails with [`BenchError::Ceiling`] when the ceiling cannot be measured and, as the steps
/// do, when the target cannot be reached.
pub async fn measure(args: &BenchArgs) -> Result<Report, BenchError> {
    let ceiling = ceiling::measure(args.scenario.crypto(), args.ceiling_time)?;
    run_steps(args, ceiling).await
}

/// Runs the steps `args` asks for and returns the report.
///
/// Fails as [`connect`] does when the target cannot be reached, and with
/// [`BenchError::Drive`], [`BenchError::Revoker`] or [`BenchError::RevokerTask`] when a
/// step or its revocations cannot be run.
async fn run_steps(args: &BenchArgs, ceiling: Ceiling) -> Result<Report, BenchError> {
    let (load, revoker) = connect(args).await?;
    let p99_limit = Duration::from_millis(args.p99_limit_ms);
    let step = |rate: f64| StepParams {
        rate,
        warmup: args.warmup,
        duration: args.duration,
        concurrency: args.concurrency,
        drain: Duration::from_secs(10),
    };
    let run = |rate: f64, label: &'static str| {
        let load = Arc::clone(&load);
        let revoker = revoker.clone();
        async move {
            let params = step(rate);
            let revokes = revoker.map(|r| tokio::spawn(r.run(args.revoke_rate, params)));
            let cpu_before = args.broker_pid.and_then(report::cpu_of);
            let result = drive::run_step(load, params).await?;
            let cpu = cpu_before
                .zip(args.broker_pid.and_then(report::cpu_of))
                .map(|(before, after)| before.per_request(&after, result.dispatched));
            let revoke = match revokes {
                Some(task) => Some(task.await??),
                None => None,
            };
            let memory = args.broker_pid.and_then(report::memory_of);
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BenchError>(StepReport {
                label,
                sustained: result.sustained(p99_limit),
                result,
                broker_memory: memory,
                broker_cpu_us: cpu,
                revoke,
            })
        }
    };
    let mut steps = Vec::new();
    let mut rate = args.rate;
    let mut retried = false;
    loop {
        let step = run(rate, "ramp").await?;
        let sustained = step.sustained;
        report::progress(&step);
        steps.push(step);
        if args.ramp <= 1.0 || steps.len() >= args.max_steps || (!sustained && retried) {
            break;
        }
        // One tail spike (a slow fsync on a shared disk) does not end the ramp: a rate that is
        // not sustained is run once more, and the ramp ends when it fails twice.
        retried = !sustained;
        if sustained {
            rate *= args.ramp;
        }
    }
    let peak_rate = steps
        .iter()
        .filter(|s| s.sustained && s.label == "ramp")
        .map(|s| s.result.offered_rate)
        .fold(0.0, f64::max);
    if args.ramp > 1.0 && args.overload > 0.0 && peak_rate > 0.0 {
        for (rate, label) in [
            (peak_rate / 2.0, "half"),
            (peak_rate * args.overload, "overload"),
        ] {
            let step = run(rate, label).await?;
            report::progress(&step);
            steps.push(step);
        }
    }
    Ok(Report::new(args, ceiling, steps, p99_limit))
}
