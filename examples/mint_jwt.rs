//! Mints a JWT from a running dev broker (`cargo run -- serve --dev`) with the dev workload's
//! X509-SVID over mTLS, or with a JWT-SVID as bearer token (`--jwt-svid`), then verifies it
//! against the broker's JWKS the way a relying party would.
//!
//! ```text
//! cargo run --example mint_jwt                      # mTLS with certs-dev/workload.pem
//! cargo run --example mint_jwt -- --jwt-svid        # bearer JWT-SVID signed by certs-dev/jwt-svid-key.pem
//! cargo run --example mint_jwt -- https://ledger.example.org ledger:read 120
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use tessera_client::mint::{ConnectParams, MintClient, MintParams, connect};
use tessera_testkit::dev::{JWT_SVID_KID, JwtSvidSigner, WORKLOAD_ID};

const GRPC: &str = "https://127.0.0.1:8443";
const JWKS: &str = "https://127.0.0.1:8444/.well-known/jwks.json";

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let use_jwt_svid = args.iter().any(|a| a == "--jwt-svid");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let destination = positional
        .first()
        .map_or("https://ledger.example.org", |s| s.as_str());
    let purpose = positional.get(1).map_or("ledger:write", |s| s.as_str());
    let ttl_seconds = positional.get(2).map_or(Ok(0), |s| s.parse())?;

    let identity = if use_jwt_svid {
        None
    } else {
        Some((
            std::fs::read("certs-dev/workload.pem")?,
            std::fs::read("certs-dev/workload-key.pem")?,
        ))
    };
    let channel = connect(ConnectParams {
        url: GRPC.to_owned(),
        ca_pem: std::fs::read("certs-dev/tls-ca.pem")?,
        server_name: "localhost".to_owned(),
        identity,
    })
    .await?;
    let mut client = MintClient::new(channel);
    if use_jwt_svid {
        let signer = JwtSvidSigner::from_pkcs8_pem(
            &std::fs::read_to_string("certs-dev/jwt-svid-key.pem")?,
            JWT_SVID_KID,
        )?;
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
        let svid = signer.svid(WORKLOAD_ID, "tessera", now, 60)?;
        client = client.with_bearer(&svid)?;
    }
    let reply = client
        .mint_jwt(MintParams {
            destination,
            purpose,
            ttl_seconds,
        })
        .await?;
    println!("credential_id: {}", reply.credential_id);
    println!("expires_at:    {}", reply.expires_at);
    println!("token:         {}", reply.token);

    // What a relying party does: fetch the JWKS, pick the key by kid, verify aud and exp.
    let roots = tessera_core::keys::certificates(std::path::Path::new("certs-dev/tls-ca.pem"))?;
    let jwks: JwkSet = serde_json::from_slice(
        &tessera_core::http_client::HttpsClient::new(&roots)?
            .get(JWKS)
            .await?
            .body,
    )?;
    let header = decode_header(&reply.token)?;
    let kid = header.kid.ok_or("token has no kid")?;
    let jwk = jwks.find(&kid).ok_or("kid not in JWKS")?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[destination]);
    validation.set_issuer(&["https://127.0.0.1:8444"]);
    let claims =
        decode::<serde_json::Value>(&reply.token, &DecodingKey::from_jwk(jwk)?, &validation)?
            .claims;
    println!(
        "verified claims: {}",
        serde_json::to_string_pretty(&claims)?
    );
    Ok(())
}
