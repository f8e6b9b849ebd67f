//! Replicas on PostgreSQL (issue 11 benchmark): two in-process replicas on one fresh database
//! on 127.0.0.1:5432, measuring
//! - restart: how long a replica takes to start serving with COUNT live credentials in the
//!   database;
//! - propagation: for REVOKES revokes by credential id on replica A while both replicas mint,
//!   the time from sending `Admin/Revoke` until (a) a `WatchRevocations` watcher on replica B
//!   receives the rule and (b) `POST /introspect` on replica B says `active: false`;
//! - scale: `Admin/Revoke { workload }` covering COUNT live credentials: the Revoke reply
//!   (durable) and B refusing a covered token.
//!
//! ```text
//! cargo run --release --example replica_bench -- [COUNT] [REVOKES]    # defaults 1000000 1000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tessera_client::mint::{ConnectParams, MintClient, MintParams, connect};
use tessera_core::clock::{SharedClock, SystemClock};
use tessera_core::http_client::HttpsClient;
use tessera_ledger::{
    CredentialKind, CredentialRecord, EvidenceKind, Ledger, PostgresLedger, PostgresOptions,
    RecordParams, Status,
};
use tessera_proto::WatchRevocationsRequest;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::revoke_request::Selector;
use tessera_server::config::Config;
use tessera_server::server::ServerHandle;
use tessera_testkit::dev::WORKLOAD_ID;
use tessera_testkit::harness::Fixture;
use tonic::transport::Channel;

type Error = Box<dyn std::error::Error + Send + Sync>;

const ADMIN_DB: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEST: &str = "https://ledger.example.org";
const PURPOSE: &str = "ledger:write";

/// Creates a fresh database; returns its URL.
async fn create_database(name: &str) -> Result<String, Error> {
    let (client, conn) = tokio_postgres::connect(ADMIN_DB, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok(format!(
        "postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable"
    ))
}

async fn drop_database(name: &str) -> Result<(), Error> {
    let (client, conn) = tokio_postgres::connect(ADMIN_DB, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// Records `count` live JWT credentials of the dev workload, concurrently (group commit).
/// Returns how long it took and the last event sequence.
async fn seed(url: &str, count: usize, now: i64) -> Result<(Duration, u64), Error> {
    let started = Instant::now();
    let ledger = Arc::new(PostgresLedger::connect(PostgresOptions::new(url)).await?);
    let chunk = 20_000;
    for base in (0..count).step_by(chunk) {
        let tasks: Vec<_> = (base..(base + chunk).min(count))
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                tokio::spawn(async move {
                    let credential = CredentialRecord {
                        credential_id: format!("seed-{i:08}"),
                        kind: CredentialKind::Jwt,
                        workload: WORKLOAD_ID.into(),
                        owner: "team-payments".into(),
                        destination: DEST.into(),
                        purpose: PURPOSE.into(),
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
                            credential,
                            replay_guard: None,
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
    }
    let last = ledger.last_sequence().await?;
    ledger.close().await?;
    Ok((started.elapsed(), last))
}

/// Writes a config for one replica: the fixture's, on `url`, with its own audit log.
fn replica_config(fx: &Fixture, url: &str, name: &str) -> Result<Config, Error> {
    let text = std::fs::read_to_string(&fx.config_path)?;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("path = ") && out.ends_with("[ledger]\n") {
            out.push_str(&format!("url = \"{url}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let audit = fx.path(&format!("audit-{name}.log"));
    out.push_str(&format!("\n[audit]\npath = \"{}\"\n", audit.display()));
    let path = fx.path(&format!("{name}.toml"));
    std::fs::write(&path, out)?;
    Ok(Config::load(&path, &SystemClock)?)
}

async fn channel(fx: &Fixture, server: &ServerHandle, admin: bool) -> Result<Channel, Error> {
    let who = if admin {
        &fx.material.admin
    } else {
        &fx.material.workload
    };
    Ok(connect(ConnectParams {
        url: format!("https://{}", server.grpc_addr()),
        ca_pem: fx.material.tls_ca.cert_pem.clone().into_bytes(),
        server_name: "localhost".into(),
        identity: Some((
            who.cert_pem.clone().into_bytes(),
            who.key.serialize_pem().into_bytes(),
        )),
    })
    .await?)
}

/// Introspects `token` on `server` until it is inactive; returns when that was seen.
async fn until_inactive(
    http: &HttpsClient,
    server: &ServerHandle,
    bearer: &str,
    token: &str,
) -> Result<Instant, Error> {
    let url = format!("https://{}/introspect", server.http_addr());
    loop {
        let form = format!("token={token}");
        let reply = http.post_form_bearer(&url, form, bearer).await?;
        let body: serde_json::Value = serde_json::from_slice(&reply.body)?;
        if body["active"] == false {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} |",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

/// Mints on `client` at about `per_second` until `stop`; counts the mints.
fn background_mints(
    mut client: MintClient,
    per_second: u64,
    stop: Arc<AtomicBool>,
) -> Arc<AtomicU64> {
    let minted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&minted);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second.max(1)));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let params = MintParams {
                destination: DEST,
                purpose: PURPOSE,
                ttl_seconds: 0,
            };
            if client.mint_jwt(params).await.is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    minted
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args.first().map_or(Ok(1_000_000), |s| s.parse())?;
    let revokes: usize = args.get(1).map_or(Ok(1000), |s| s.parse())?;
    let db = format!("tessera_bench_{}", std::process::id());
    let url = create_database(&db).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.unix_seconds();
    let (seeded, last_sequence) = seed(&url, count, now).await?;
    println!(
        "seeded {count} live credentials in {:.1} s",
        seeded.as_secs_f64()
    );

    let fx = Fixture::new();
    let started = Instant::now();
    let a =
        tessera_server::server::start(replica_config(&fx, &url, "a")?, Arc::clone(&clock)).await?;
    let restart = started.elapsed();
    let b =
        tessera_server::server::start(replica_config(&fx, &url, "b")?, Arc::clone(&clock)).await?;
    println!(
        "replica start with {count} live credentials: {:.0} ms",
        restart.as_secs_f64() * 1e3
    );

    let mut admin = AdminClient::new(channel(&fx, &a, true).await?);
    let mut mint_b = MintClient::new(channel(&fx, &b, false).await?);
    let mut watch = BrokerClient::new(channel(&fx, &b, false).await?)
        .watch_revocations(WatchRevocationsRequest {
            since_sequence: last_sequence,
        })
        .await?
        .into_inner();
    // B's watcher notes when each rule arrives, in its own task.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(event)) = watch.next().await {
            if !event.caught_up {
                let _ = arrived_tx.send((event.revocation_id, Instant::now()));
            }
        }
    });
    let roots = vec![rustls::pki_types::CertificateDer::from(
        fx.material.tls_ca.cert_der.clone(),
    )];
    let http = HttpsClient::new(&roots)?;
    let bearer = fx.jwt_svid(WORKLOAD_ID);
    let stop = Arc::new(AtomicBool::new(false));
    let load_a = background_mints(
        MintClient::new(channel(&fx, &a, false).await?),
        100,
        Arc::clone(&stop),
    );
    let load_b = background_mints(
        MintClient::new(channel(&fx, &b, false).await?),
        100,
        Arc::clone(&stop),
    );
    let (mut replies, mut watched, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..revokes {
        let params = MintParams {
            destination: DEST,
            purpose: PURPOSE,
            ttl_seconds: 0,
        };
        let jwt = mint_b.mint_jwt(params).await?;
        let sent = Instant::now();
        let reply = admin
            .revoke(tessera_proto::RevokeRequest {
                selector: Some(Selector::CredentialId(jwt.credential_id.clone())),
                reason: "replica bench".into(),
            })
            .await?
            .into_inner();
        replies.push(sent.elapsed().as_secs_f64() * 1e3);
        let inactive = until_inactive(&http, &b, &bearer, &jwt.token).await?;
        refused.push((inactive - sent).as_secs_f64() * 1e3);
        loop {
            let (id, at) = arrived.recv().await.ok_or("watch ended")?;
            if id == reply.revocation_id {
                watched.push((at - sent).as_secs_f64() * 1e3);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    println!(
        "\nbackground mints during the revokes: {} on A, {} on B\n",
        load_a.load(Ordering::Relaxed),
        load_b.load(Ordering::Relaxed)
    );
    println!("| from Revoke sent on A, to | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    report(
        "the Revoke reply on A (rule durable, enforced on A)",
        replies,
    );
    report("B's watcher receiving the rule", watched);
    report("B's introspection refusing the token", refused);

    // One rule covering every seeded credential (and the token minted just before it).
    let params = MintParams {
        destination: DEST,
        purpose: PURPOSE,
        ttl_seconds: 0,
    };
    let covered_token = mint_b.mint_jwt(params).await?;
    let sent = Instant::now();
    let reply = admin
        .revoke(tessera_proto::RevokeRequest {
            selector: Some(Selector::Workload(WORKLOAD_ID.into())),
            reason: "replica bench: everything".into(),
        })
        .await?
        .into_inner();
    let replied = sent.elapsed();
    let inactive = until_inactive(&http, &b, &bearer, &covered_token.token).await?;
    println!(
        "\nrevoke by workload covering {} live credentials: reply on A {:.1} ms, refused on B {:.1} ms after the send",
        reply.credentials_revoked,
        replied.as_secs_f64() * 1e3,
        (inactive - sent).as_secs_f64() * 1e3
    );
    a.shutdown().await?;
    b.shutdown().await?;
    drop_database(&db).await?;
    Ok(())
}
