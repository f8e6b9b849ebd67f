//! A relying party for `https://ledger.example.org` against a running dev broker
//! (`cargo run -- serve --dev`): it verifies minted JWTs against the broker's JWKS and how they
//! are presented, follows `WatchRevocations`, and refuses a revoked token within milliseconds
//! of the revoke.
//!
//! The demo mints a token as the dev workload over mTLS (so the token is bound to the
//! workload's certificate), waits until the relying party has caught up with the broker,
//! accepts the token as if the workload presented it with its certificate, has the dev admin
//! revoke the workload, and prints how long the relying party took to start refusing it.
//!
//! ```text
//! cargo run --example relying_party
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_client::relying_party::{Presentation, RelyingParty, Verdict};
use tessera_core::clock::SystemClock;
use tessera_core::http_client::HttpsClient;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{MintJwtRequest, RevokeRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

type Error = Box<dyn std::error::Error + Send + Sync>;

const DESTINATION: &str = "https://ledger.example.org";
/// The purpose the demo endpoint serves.
const PURPOSE: &str = "ledger:write";

async fn channel(cert: &str, key: &str) -> Result<Channel, Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(
            "certs-dev/tls-ca.pem",
        )?))
        .identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ))
        .domain_name("localhost");
    Ok(Endpoint::from_static("https://127.0.0.1:8443")
        .tls_config(tls)?
        .connect()
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let roots = tessera_core::keys::certificates(std::path::Path::new("certs-dev/tls-ca.pem"))?;
    let jwks = HttpsClient::new(&roots)?
        .get("https://127.0.0.1:8444/.well-known/jwks.json")
        .await?;
    let rp = Arc::new(RelyingParty::new(
        "https://127.0.0.1:8444",
        DESTINATION,
        &serde_json::from_slice(&jwks.body)?,
        Arc::new(SystemClock),
    )?);

    // Follow revocations (as the relying party's own workload identity), reconnecting on error.
    let follower = Arc::clone(&rp);
    let mut watch =
        BrokerClient::new(channel("certs-dev/workload.pem", "certs-dev/workload-key.pem").await?);
    tokio::spawn(async move {
        loop {
            let why = follower.follow(&mut watch).await;
            eprintln!(
                "revocation stream ended ({why}); resuming from {}",
                follower.last_sequence()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // Until the stream has replayed what the broker had when it opened, tokens go to
    // introspection.
    let started = Instant::now();
    while !rp.is_following() {
        if started.elapsed() > Duration::from_secs(5) {
            return Err("the relying party did not catch up within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let mut workload =
        BrokerClient::new(channel("certs-dev/workload.pem", "certs-dev/workload-key.pem").await?);
    let request = MintJwtRequest {
        destination: DESTINATION.into(),
        purpose: PURPOSE.into(),
        ttl_seconds: 120,
    };
    let token = workload.mint_jwt(request).await?.into_inner().token;
    // The workload's client certificate, as the relying party's TLS layer would see it.
    let certificate =
        tessera_core::keys::certificates(std::path::Path::new("certs-dev/workload.pem"))?;
    let certificate = certificate
        .first()
        .ok_or("certs-dev/workload.pem is empty")?;
    let presented = Presentation::mtls(certificate.as_ref(), PURPOSE);
    println!("before revoke: {:?}", short(&rp.check(&token, presented)));

    let mut admin =
        AdminClient::new(channel("certs-dev/admin.pem", "certs-dev/admin-key.pem").await?);
    let revoke = RevokeRequest {
        selector: Some(Selector::Workload(
            "spiffe://example.org/ns/payments/sa/api".into(),
        )),
        reason: "relying party demo".into(),
    };
    let reply = admin.revoke(revoke).await?.into_inner();
    let revoked_at = Instant::now();
    while matches!(rp.check(&token, presented), Verdict::Accept(_)) {
        if revoked_at.elapsed() > Duration::from_secs(5) {
            return Err("the revocation did not arrive within 5 s".into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    println!(
        "after revoke {} (sequence {}): {:?}, {:.2} ms after the Revoke reply",
        reply.revocation_id,
        reply.sequence,
        short(&rp.check(&token, presented)),
        revoked_at.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

fn short(v: &Verdict) -> String {
    match v {
        Verdict::Accept(_) => "accepted".into(),
        Verdict::Refuse(why) => format!("refused: {why}"),
        Verdict::Introspect(_) => "needs introspection".into(),
    }
}
