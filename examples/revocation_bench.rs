//! Revocation at scale (issue 5 benchmark): seeds a ledger with N live credentials of one
//! workload, starts the real server on it, then measures
//! - the time from sending `Admin/Revoke { workload }` to its reply (rule durable + enforced),
//! - the time until `POST /introspect` of one of those credentials says `active: false`,
//! - delivery latency from the Revoke call to 1, 100 and 1,000 `WatchRevocations` watchers.
//!
//! ```text
//! cargo run --release --example revocation_bench -- [COUNT]    # default 1000000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tessera_core::clock::{Clock, SharedClock, SystemClock};
use tessera_ledger::{
    CredentialKind, CredentialRecord, EvidenceKind, Ledger, RecordParams, RedbLedger, RedbOptions,
    Status,
};
use tessera_proto::admin_client::AdminClient;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{MintJwtRequest, RevokeRequest, WatchRevocationsRequest};
use tessera_server::config::Config;
use tessera_testkit::dev::{DevMaterial, WORKLOAD_ID};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn seed(path: &std::path::Path, count: usize, now: i64) -> Result<Duration, Error> {
    let started = Instant::now();
    let ledger = Arc::new(RedbLedger::open(
        path,
        RedbOptions {
            max_batch: 8192,
            durable: false,
            ..RedbOptions::default()
        },
    )?);
    let chunk = 20_000;
    for base in (0..count).step_by(chunk) {
        let tasks: Vec<_> = (base..(base + chunk).min(count))
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                tokio::spawn(async move {
                    let record = CredentialRecord {
                        credential_id: format!("seed-{i:08}"),
                        kind: CredentialKind::Jwt,
                        workload: WORKLOAD_ID.into(),
                        owner: "team-payments".into(),
                        destination: "https://ledger.example.org".into(),
                        purpose: "ledger:write".into(),
                        grant: "payments-api".into(),
                        evidence_kind: EvidenceKind::X509Svid,
                        evidence_hash: "00".repeat(32),
                        issued_at: now - 60,
                        expires_at: now + 3000 + (i % 600) as i64,
                        status: Status::Live,
                        ci: None,
                        status_list: None,
                    };
                    ledger
                        .record(RecordParams {
                            credential: record,
                            replay_guard: None,
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
    }
    ledger.close().await?;
    Ok(started.elapsed())
}

async fn channel(
    addr: std::net::SocketAddr,
    m: &DevMaterial,
    admin: bool,
) -> Result<Channel, Error> {
    let id = if admin { &m.admin } else { &m.workload };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&m.tls_ca.cert_pem))
        .identity(Identity::from_pem(&id.cert_pem, id.key_pem()))
        .domain_name("localhost");
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect()
        .await?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Opens `n` watchers (over a few connections) following revocations after `since`, revokes
/// `rounds` times, and returns every
/// watcher's delivery latency in milliseconds, measured from sending the Revoke call.
async fn delivery(
    addr: std::net::SocketAddr,
    m: &DevMaterial,
    since: u64,
    n: usize,
    rounds: usize,
) -> Result<Vec<f64>, Error> {
    let mut channels = Vec::new();
    for _ in 0..n.div_ceil(100) {
        channels.push(channel(addr, m, false).await?);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut streams = Vec::new();
    for i in 0..n {
        let mut client = BrokerClient::new(channels[i / 100].clone());
        let mut stream = client
            .watch_revocations(WatchRevocationsRequest {
                since_sequence: since,
            })
            .await?
            .into_inner();
        let tx = tx.clone();
        streams.push(tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                // The end-of-replay marker is not a revocation.
                if !event.caught_up {
                    let _ = tx.send((i, Instant::now()));
                }
            }
        }));
    }
    let mut admin = AdminClient::new(channel(addr, m, true).await?);
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let sent = Instant::now();
        let revoke = RevokeRequest {
            selector: Some(Selector::Purpose(format!("bench-{n}-{round}"))),
            reason: "bench".into(),
        };
        admin.revoke(revoke).await?;
        for _ in 0..n {
            let (_, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await?
                .ok_or("watchers closed")?;
            latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
        }
    }
    streams.iter().for_each(|s| s.abort());
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let now = SystemClock.unix_seconds();
    let material = DevMaterial::generate(time::OffsetDateTime::from_unix_timestamp(now)?)?;
    material.write(dir.path())?;
    let ledger_path = dir.path().join("ledger.redb");
    let seeded = seed(&ledger_path, count, now).await?;
    println!(
        "seeded {count} live credentials of {WORKLOAD_ID} in {:.1} s",
        seeded.as_secs_f64()
    );
    let size = std::fs::metadata(&ledger_path)?.len();
    println!(
        "ledger on disk: {:.0} MiB ({} bytes per credential, events included)",
        size as f64 / 1048576.0,
        size / count.max(1) as u64
    );

    let config_path = dir.path().join("bench.toml");
    std::fs::write(
        &config_path,
        material.config_toml(dir.path(), "127.0.0.1:0", "127.0.0.1:0", &ledger_path),
    )?;
    let config = Config::load(&config_path, &SystemClock)?;
    let started = Instant::now();
    let clock: SharedClock = Arc::new(SystemClock);
    let server = tessera_server::server::start(config, clock).await?;
    println!(
        "restart with {count} credentials: serving after {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // A real token of the workload, for introspection.
    let mut broker = BrokerClient::new(channel(server.grpc_addr(), &material, false).await?);
    let request = MintJwtRequest {
        destination: "https://ledger.example.org".into(),
        purpose: "ledger:write".into(),
        ttl_seconds: 300,
    };
    let token = broker.mint_jwt(request).await?.into_inner().token;
    let roots = vec![material.tls_ca.cert_der.clone().into()];
    let http = tessera_core::http_client::HttpsClient::new(&roots)?;
    let introspect_url = format!("https://localhost:{}/introspect", server.http_addr().port());

    let mut admin = AdminClient::new(channel(server.grpc_addr(), &material, true).await?);
    let sent = Instant::now();
    let reply = admin
        .revoke(RevokeRequest {
            selector: Some(Selector::Workload(WORKLOAD_ID.into())),
            reason: "bench".into(),
        })
        .await?
        .into_inner();
    let durable = sent.elapsed();
    let status = server_status(&material, &token, &introspect_url, &http).await;
    let flipped = sent.elapsed();
    println!(
        "revoke by workload covering {} live credentials: rule durable and enforced in {:.2} ms; introspection says {status} after {:.2} ms",
        reply.credentials_revoked,
        durable.as_secs_f64() * 1000.0,
        flipped.as_secs_f64() * 1000.0
    );

    let mut since = reply.sequence;
    for (n, rounds) in [(1, 50), (100, 10), (1000, 3)] {
        let l = delivery(server.grpc_addr(), &material, since, n, rounds).await?;
        since += rounds as u64;
        println!(
            "delivery to {n:>4} watchers ({} samples): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            percentile(&l, 0.50),
            percentile(&l, 0.99),
            l.last().copied().unwrap_or_default()
        );
    }
    server.shutdown().await?;
    Ok(())
}

/// Introspects `token` (authenticated with the dev workload's JWT-SVID) and returns the answer.
async fn server_status(
    m: &DevMaterial,
    token: &str,
    url: &str,
    http: &tessera_core::http_client::HttpsClient,
) -> String {
    let svid = m
        .jwt_svid_signer
        .svid(WORKLOAD_ID, "tessera", SystemClock.unix_seconds(), 60)
        .unwrap_or_default();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    match http.post_form_bearer(url, body, &svid).await {
        Ok(r) => String::from_utf8_lossy(&r.body).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}
