//! Shared Signals push latency (issue 12 benchmark): starts the real server (TLS, gRPC, HTTPS,
//! redb ledger with fsync) and RECEIVERS local HTTPS push receivers, one SSF stream each, then
//! sends `Admin/Revoke { owner }` ROUNDS times, one after the other, and measures the time from
//! sending each Revoke to each receiver getting its SET (a CAEP session-revoked).
//!
//! ```text
//! cargo run --release --example ssf_bench -- [RECEIVERS] [ROUNDS]    # default 100 50
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tessera_proto::RevokeRequest;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::revoke_request::Selector;
use tessera_testkit::harness::{Env, Fixture, https_request_as};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Starts one receiver on 127.0.0.1 with the fixture's `localhost` certificate; every SET it
/// accepts sends the time it arrived on `arrivals`. Returns its port.
async fn receiver(fx: &Fixture, arrivals: mpsc::UnboundedSender<Instant>) -> Result<u16, Error> {
    let cert = rustls::pki_types::CertificateDer::from(fx.material.server.cert_der.clone());
    let key = rustls::pki_types::PrivateKeyDer::try_from(fx.material.server.key.serialize_der())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, arrivals) = (acceptor.clone(), arrivals.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        let _ = request.into_body().collect().await;
                        let _ = arrivals.send(Instant::now());
                        hyper::Response::builder()
                            .status(202)
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    Ok(port)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let receivers: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(50), |a| a.parse())?;
    let fx = Fixture::new();
    let ca = fx.path("tls-ca.pem");
    fx.append_config(&format!(
        "\n[ssf]\nca_file = \"{}\"\nmax_streams_per_identity = {receivers}\n",
        ca.display()
    ));
    let env = Env::start_fixture(fx).await;
    let (tx, mut arrivals) = mpsc::unbounded_channel();
    let rp = "spiffe://example.org/ns/bench/sa/rp";
    for _ in 0..receivers {
        let port = receiver(&env.fx, tx.clone()).await?;
        let body = json!({"delivery": {"method": "urn:ietf:rfc:8935",
            "endpoint_url": format!("https://localhost:{port}/events")}});
        let bearer = env.fx.jwt_svid(rp);
        let reply = https_request_as(
            &env,
            "POST",
            "/ssf/streams",
            Some(body.to_string()),
            Some(&bearer),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let mut admin = AdminClient::new(env.channel(Some(&env.fx.material.admin)).await);
    let mut samples = Vec::with_capacity(receivers * rounds);
    let mut lasts = Vec::with_capacity(rounds);
    let mut replies = Vec::with_capacity(rounds);
    for round in 0..rounds + 3 {
        let sent = Instant::now();
        admin
            .revoke(RevokeRequest {
                selector: Some(Selector::Owner(format!("bench-{round}"))),
                reason: "ssf bench".into(),
            })
            .await?;
        let replied = sent.elapsed();
        let mut got = Vec::with_capacity(receivers);
        while got.len() < receivers {
            let at = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                .await?
                .ok_or("receivers stopped")?;
            got.push(at.duration_since(sent));
        }
        if round >= 3 {
            // The first rounds warm connections up (TLS handshakes) and are not counted.
            lasts.push(got.iter().copied().max().unwrap_or_default());
            samples.extend(got);
            replies.push(replied);
        }
    }
    samples.sort();
    lasts.sort();
    replies.sort();
    println!(
        "receivers: {receivers}, rounds: {rounds}, samples: {}",
        samples.len()
    );
    println!(
        "revoke sent -> reply: p50 {} p99 {}",
        ms(percentile(&replies, 0.5)),
        ms(percentile(&replies, 0.99))
    );
    println!(
        "revoke sent -> SET received, each receiver: p50 {} p99 {} max {}",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
    println!(
        "revoke sent -> SET received by all {receivers}: p50 {} p99 {}",
        ms(percentile(&lasts, 0.5)),
        ms(percentile(&lasts, 0.99))
    );
    let mut env = env;
    env.shutdown().await;
    Ok(())
}
