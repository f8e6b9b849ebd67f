//! Renewal load (issue 15 benchmark), results in BENCHMARKS.md, "Renewal load: 10,000 agents":
//!
//! ```text
//! cargo run --release --example renewal_bench -- --agents 10000 --ttl 60 --seconds 360 --mode both
//! cargo run --release --example renewal_bench -- --pool 64 --seconds 40 --series
//! ```
//! The first line spells out the defaults; the second pushes the cold start past the broker's
//! `max_in_flight`. `--mode jitter|fixed|both`, `--pool N` (gRPC connections shared by the
//! agents), `--series` (also print mints per second as CSV).
//!
//! N simulated agents keep a JWT fresh against one broker core, all started at the same
//! moment (a cold start after a deploy), with and without renewal jitter. Prints the cold-start
//! burst; the mint rate per 1-s bucket and its flatness (max ÷ mean) once the first renewal
//! cycle is over, and over the last three cycles; one row per renewal cycle; mint latency
//! (p50, p99); the CPU of the broker's threads and of the agents; the load average.
//!
//! - The broker: the real server (TLS, gRPC, redb ledger with fsync on — the defaults), dev
//!   material in a temp dir, started on its own OS thread with a `current_thread` tokio runtime:
//!   one thread runs every connection and request handler; the ledger and audit writers are
//!   the broker's own threads, as always. A fresh ledger per mode.
//! - The agents: N [`JwtSource`]s for the dev grant (destination https://ledger.example.org,
//!   purpose ledger:write, the dev workload SVID files as attestor) on a separate
//!   multi-thread runtime, spawned in one loop. They share `--pool` [`GrpcBroker`]s
//!   round-robin (one HTTP/2 connection each) instead of opening N connections, and do not
//!   follow revocations: N watch streams of one identity would exceed its share of the watch
//!   pool (`max_watchers_per_identity`).
//! - `--mode jitter`: [`RandomJitter`] (renew uniformly in 40–60 % of the lifetime, the
//!   default); `fixed`: [`FixedJitter`]`(0.5)` (always at half-life; retries unjittered too).
//! - Time is scaled: `--ttl 60` is 5× faster than the grant's 5-minute default. Each agent
//!   renews once per mean renewal point × TTL (0.5 × TTL in both modes), so the steady rate is
//!   N / (0.5 × TTL): 333 mints/s for 10,000 agents and 60 s.
//! - Mints are timed around the `Broker` call (the gRPC round trip) and bucketed by the second
//!   they complete in. "Cycle k" is the window of ±TTL/4 around k × TTL/2 after the start, in
//!   which each agent renews about once; the steady window starts at cycle 2.
//! - With more than 16 connections the cold start exceeds the broker's `max_in_flight` (4,096,
//!   256 per connection): the refusals (`RESOURCE_EXHAUSTED`) are counted per second.
//!
//! Prints figures only; asserts nothing about time.

mod record;
mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tessera_client::source::{
    Broker, BrokerAddress, FixedJitter, GrpcBroker, Jitter, JwtSource, RandomJitter, SourceParams,
    X509SvidFiles,
};
use tessera_core::clock::{Clock, SystemClock};
use tessera_server::config::Config;
use tessera_testkit::dev::DevMaterial;

use self::record::{Recorded, Second, Stats};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Linux's `USER_HZ`: the unit of `utime`/`stime` in `/proc/self/task/*/stat`.
const TICKS_PER_SEC: f64 = 100.0;

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Args {
    agents: usize,
    ttl: u32,
    seconds: u64,
    pool: usize,
    modes: Vec<Mode>,
    series: bool,
}

/// How agents pick their renewal point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `RandomJitter`: uniformly in 40–60 % of the lifetime.
    Jitter,
    /// `FixedJitter(0.5)`: always at half-life.
    Fixed,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Jitter => "jitter (RandomJitter, 40–60 %)",
            Mode::Fixed => "no jitter (FixedJitter(0.5))",
        }
    }

    fn jitter(self) -> Arc<dyn Jitter> {
        match self {
            Mode::Jitter => Arc::new(RandomJitter),
            Mode::Fixed => Arc::new(FixedJitter(0.5)),
        }
    }
}

/// Returns the arguments. Fails on an unknown flag or an unparsable value.
fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        agents: 10_000,
        ttl: 60,
        seconds: 360,
        pool: 16,
        modes: vec![Mode::Jitter, Mode::Fixed],
        series: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--series" {
            args.series = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--agents" => args.agents = value.parse()?,
            "--ttl" => args.ttl = value.parse()?,
            "--seconds" => args.seconds = value.parse()?,
            "--pool" => args.pool = value.parse::<usize>()?.max(1),
            "--mode" => {
                args.modes = match value.as_str() {
                    "jitter" => vec![Mode::Jitter],
                    "fixed" => vec![Mode::Fixed],
                    "both" => vec![Mode::Jitter, Mode::Fixed],
                    other => return Err(format!("--mode {other}: jitter, fixed or both").into()),
                }
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

/// The broker serving on its own thread.
struct BrokerThread {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), Error>>,
}

/// Starts the server of `config_path` on a new OS thread named `broker`, driven by a
/// `current_thread` runtime; returns once it listens. Fails when it cannot start.
async fn start_broker(config_path: PathBuf) -> Result<BrokerThread, Error> {
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread =
        std::thread::Builder::new()
            .name("broker".into())
            .spawn(move || -> Result<(), Error> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("broker-blocking")
                    .build()?;
                runtime.block_on(async move {
                    let started = async {
                        let config = Config::load(&config_path, &SystemClock)?;
                        Ok::<_, Error>(
                            tessera_server::server::start(config, Arc::new(SystemClock)).await?,
                        )
                    };
                    let server = match started.await {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e.to_string()));
                            return Err(e);
                        }
                    };
                    let _ = addr_tx.send(Ok(server.grpc_addr()));
                    let _ = stop_rx.await;
                    Ok(server.shutdown().await?)
                })
            })?;
    let addr = addr_rx
        .await?
        .map_err(|e| format!("the broker did not start: {e}"))?;
    Ok(BrokerThread { addr, stop, thread })
}

impl BrokerThread {
    /// Shuts the server down and waits for its thread. Fails as its shutdown fails.
    async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        tokio::task::spawn_blocking(move || self.thread.join())
            .await?
            .map_err(|_| "the broker thread panicked")?
    }
}

/// Returns the CPU seconds (user + system) of the broker's threads and of the rest of the
/// process (the agents), from `/proc/self/task/*/stat`. Fails when it cannot be read.
fn cpu_split() -> Result<(f64, f64), Error> {
    let (mut broker, mut rest) = (0u64, 0u64);
    for task in std::fs::read_dir("/proc/self/task")? {
        // A thread may end between listing and reading.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
            continue;
        };
        let (head, tail) = stat.rsplit_once(')').ok_or("unreadable stat")?;
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let fields: Vec<&str> = tail.split_whitespace().collect();
        let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
            + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
        let is_broker = ["broker", "ledger-writer", "audit-writer"]
            .iter()
            .any(|prefix| comm.starts_with(prefix));
        *if is_broker { &mut broker } else { &mut rest } += ticks;
    }
    Ok((broker as f64 / TICKS_PER_SEC, rest as f64 / TICKS_PER_SEC))
}

/// Returns the 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// What one mode's run measured.
#[derive(Debug)]
struct Run {
    mode: Mode,
    seconds: Vec<Second>,
    /// Seconds until every agent held its first credential.
    cold_start: Option<f64>,
    peak_in_flight: usize,
    /// CPU seconds (broker, agents) sampled at each whole second.
    cpu: Vec<(f64, f64)>,
    first_failure: Option<String>,
    source_failures: u64,
    load: (String, String),
}

/// Runs one mode against a fresh broker and ledger in `dir`. Fails when the broker cannot
/// start or stop.
async fn run_mode(
    mode: Mode,
    args: &Args,
    material: &DevMaterial,
    dir: &Path,
) -> Result<Run, Error> {
    let ledger = dir.join(format!("ledger-{mode:?}.redb"));
    let config_path = dir.join(format!("broker-{mode:?}.toml"));
    std::fs::write(
        &config_path,
        material.config_toml(dir, "127.0.0.1:0", "127.0.0.1:0", &ledger),
    )?;
    let broker = start_broker(config_path).await?;
    let load_before = load_average();
    let origin = Instant::now();
    let stats = Arc::new(Stats::new(origin, args.seconds)?);
    let recorded = Arc::new(pool(args, material, dir, broker.addr, Arc::clone(&stats)));
    let mut params = SourceParams::new("https://ledger.example.org", "ledger:write");
    params.ttl_seconds = args.ttl;
    params.follow_revocations = false;
    params.jitter = mode.jitter();
    let sources: Vec<JwtSource> = (0..args.agents)
        .map(|_| JwtSource::spawn(params.clone(), Arc::clone(&recorded) as Arc<dyn Broker>))
        .collect();
    let (cold_start, cpu) = observe(&sources, origin, args.seconds).await?;
    let source_failures = sources.iter().map(JwtSource::failures).sum();
    drop(sources);
    let load_after = load_average();
    broker.stop().await?;
    let peak_in_flight = stats.peak_in_flight.load(Ordering::Relaxed);
    let first_failure = stats
        .first_failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let seconds =
        std::mem::take(&mut *stats.seconds.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(Run {
        mode,
        seconds,
        cold_start,
        peak_in_flight,
        cpu,
        first_failure,
        source_failures,
        load: (load_before, load_after),
    })
}

/// Returns `args.pool` gRPC brokers to `addr` presenting the dev workload SVID, recording
/// into `stats`.
fn pool(
    args: &Args,
    material: &DevMaterial,
    dir: &Path,
    addr: std::net::SocketAddr,
    stats: Arc<Stats>,
) -> Recorded {
    let attestor = Arc::new(X509SvidFiles {
        cert: dir.join("workload.pem"),
        key: dir.join("workload-key.pem"),
    });
    let pool = (0..args.pool)
        .map(|_| {
            let address = BrokerAddress {
                url: format!("https://{addr}"),
                ca_pem: material.tls_ca.cert_pem.clone().into_bytes(),
                server_name: "localhost".into(),
            };
            GrpcBroker::new(address, Arc::clone(&attestor) as _)
        })
        .collect();
    Recorded {
        pool,
        next: AtomicUsize::new(0),
        stats,
    }
}

/// Watches the agents for `seconds`: returns when they all held a first credential, and the
/// CPU split at each whole second. Prints progress every 30 s. Fails when `/proc` is
/// unreadable.
async fn observe(
    sources: &[JwtSource],
    origin: Instant,
    seconds: u64,
) -> Result<(Option<f64>, Vec<(f64, f64)>), Error> {
    let mut cold_start = None;
    let mut cpu = vec![cpu_split()?];
    let mut tick = tokio::time::interval_at(origin.into(), Duration::from_millis(100));
    for step in 1..=seconds * 10 {
        tick.tick().await;
        if cold_start.is_none() && sources.iter().all(|s| s.renewals() >= 1) {
            cold_start = Some(origin.elapsed().as_secs_f64());
        }
        if step % 10 == 0 {
            cpu.push(cpu_split()?);
        }
        if step % 300 == 0 {
            let renewals: u64 = sources.iter().map(JwtSource::renewals).sum();
            eprintln!("  {:>4} s: {renewals} credentials minted", step / 10);
        }
    }
    Ok((cold_start, cpu))
}

/// Runs every mode asked for and prints the tables.
async fn run(args: Args) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let now = SystemClock.unix_seconds();
    let material = DevMaterial::generate(time::OffsetDateTime::from_unix_timestamp(now)?)?;
    material.write(dir.path())?;
    println!(
        "{} agents, TTL {} s (time scaled {:.1}× against 300 s), {} s per mode, {} gRPC \
         connections; broker on one current_thread runtime, redb with fsync; {} CPUs",
        args.agents,
        args.ttl,
        300.0 / f64::from(args.ttl.max(1)),
        args.seconds,
        args.pool,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let mut runs = Vec::new();
    for &mode in &args.modes {
        eprintln!(
            "{}: {} agents for {} s",
            mode.name(),
            args.agents,
            args.seconds
        );
        runs.push(run_mode(mode, &args, &material, dir.path()).await?);
    }
    report::report(&args, &runs)
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    // The agents' runtime: two workers (the machine's cores), named so that their CPU is told
    // apart from the broker's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agents")
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}
