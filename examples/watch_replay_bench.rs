//! Cost of resuming `WatchRevocations` (issue 12 benchmark): seeds a ledger with ISSUED
//! `issued` events and RULES revocation rules, starts the real server on it (TLS, gRPC), then
//! opens REPLAYS streams from `since_sequence = 0` one after another, each read until its
//! `caught_up` marker, and prints the CPU time the process spent (server and client: the client
//! only decodes RULES messages per stream) and the wall time per replay.
//!
//! ```text
//! cargo run --release --example watch_replay_bench -- [ISSUED] [RULES] [REPLAYS]
//! ```
//! Defaults: 68,000 issued events, 100 rules, 50 replays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tessera_core::clock::{Clock, SharedClock, SystemClock};
use tessera_ledger::{
    CredentialKind, CredentialRecord, EvidenceKind, Ledger, NewRule, RecordParams, RedbLedger,
    RedbOptions, Selector, Status,
};
use tessera_proto::WatchRevocationsRequest;
use tessera_proto::broker_client::BrokerClient;
use tessera_server::config::Config;
use tessera_testkit::dev::{DevMaterial, WORKLOAD_ID};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Linux's `USER_HZ`: the unit of `utime`/`stime` in `/proc/self/stat`.
const TICKS_PER_SEC: f64 = 100.0;

/// Returns the CPU time this process has used so far (user + system), in seconds.
fn cpu_seconds() -> Result<f64, Error> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let (_, rest) = stat.rsplit_once(')').ok_or("unreadable /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let system: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok((user + system) as f64 / TICKS_PER_SEC)
}

/// The `i`th seeded credential: one of 100 workloads, live for the next hour.
fn record(i: usize, now: i64) -> CredentialRecord {
    CredentialRecord {
        credential_id: format!("seed-{i:08}"),
        kind: CredentialKind::Jwt,
        workload: format!("spiffe://example.org/ns/bench/sa/w{}", i % 100),
        owner: "team-bench".into(),
        destination: "https://ledger.example.org".into(),
        purpose: "ledger:write".into(),
        grant: "bench".into(),
        evidence_kind: EvidenceKind::X509Svid,
        evidence_hash: "00".repeat(32),
        issued_at: now - 60,
        expires_at: now + 3000 + (i % 600) as i64,
        status: Status::Live,
        ci: None,
        status_list: None,
    }
}

/// Writes `issued` records and `rules` rules (one rule after every `issued / rules` records)
/// into a new ledger at `path`.
async fn seed(path: &std::path::Path, issued: usize, rules: usize, now: i64) -> Result<(), Error> {
    let ledger = Arc::new(RedbLedger::open(
        path,
        RedbOptions {
            max_batch: 8192,
            durable: false,
            ..RedbOptions::default()
        },
    )?);
    let every = issued / rules.max(1);
    let mut added = 0;
    for base in (0..issued).step_by(every.max(1)) {
        let tasks: Vec<_> = (base..(base + every.max(1)).min(issued))
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                tokio::spawn(async move {
                    ledger
                        .record(RecordParams {
                            credential: record(i, now),
                            replay_guard: None,
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        if added < rules {
            ledger
                .add_rule(NewRule {
                    revocation_id: format!("{added:032x}"),
                    selector: Selector::Purpose,
                    value: format!("bench:{added}"),
                    effective_at: now - 30,
                    reason: "bench".into(),
                    revoked_by: "bench".into(),
                    effective_at_ms: None,
                    scope: None,
                })
                .await?;
            added += 1;
        }
    }
    ledger.close().await?;
    Ok(())
}

async fn channel(addr: std::net::SocketAddr, m: &DevMaterial) -> Result<Channel, Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&m.tls_ca.cert_pem))
        .identity(Identity::from_pem(
            &m.workload.cert_pem,
            m.workload.key_pem(),
        ))
        .domain_name("localhost");
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect()
        .await?)
}

/// Opens one stream from 0 and reads it up to its `caught_up` marker; returns how many rules
/// it replayed.
async fn replay(client: &mut BrokerClient<Channel>) -> Result<usize, Error> {
    let mut stream = client
        .watch_revocations(WatchRevocationsRequest { since_sequence: 0 })
        .await?
        .into_inner();
    let mut rules = 0;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(120), stream.next())
            .await?
            .ok_or("the stream ended before caught_up")??;
        if event.caught_up {
            return Ok(rules);
        }
        rules += 1;
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let arg = |n: usize, default: usize| -> Result<usize, Error> {
        Ok(std::env::args().nth(n).map_or(Ok(default), |s| s.parse())?)
    };
    let (issued, rules, replays) = (arg(1, 68_000)?, arg(2, 100)?, arg(3, 50)?);
    let dir = tempfile::tempdir()?;
    let now = SystemClock.unix_seconds();
    let material = DevMaterial::generate(time::OffsetDateTime::from_unix_timestamp(now)?)?;
    material.write(dir.path())?;
    let ledger_path = dir.path().join("ledger.redb");
    seed(&ledger_path, issued, rules, now).await?;
    println!("seeded {issued} issued events and {rules} rules of {WORKLOAD_ID}'s trust domain");

    let config_path = dir.path().join("bench.toml");
    std::fs::write(
        &config_path,
        material.config_toml(dir.path(), "127.0.0.1:0", "127.0.0.1:0", &ledger_path),
    )?;
    let config = Config::load(&config_path, &SystemClock)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let server = tessera_server::server::start(config, clock).await?;
    let mut client = BrokerClient::new(channel(server.grpc_addr(), &material).await?);
    replay(&mut client).await?; // warm-up: connection, caches

    let (cpu_before, started) = (cpu_seconds()?, Instant::now());
    let mut replayed = 0;
    for _ in 0..replays {
        replayed = replay(&mut client).await?;
    }
    let (cpu, wall) = (cpu_seconds()? - cpu_before, started.elapsed());
    println!(
        "{replays} replays from 0 ({replayed} rules each): {cpu:.2} CPU-seconds, \
         {:.2} ms wall per replay",
        wall.as_secs_f64() * 1000.0 / replays.max(1) as f64
    );
    server.shutdown().await?;
    Ok(())
}
