//! A service that embeds a `JwtSource`: it always holds a fresh JWT for one destination and
//! purpose from a running dev broker (`cargo run -- serve --dev`), renewed at about half of
//! each lifetime, renewed at once when revoked, and kept while the broker is unreachable. The
//! "service" here sends a request every few seconds with the token held, and prints every
//! renewal and its status; stop it with Ctrl-C. Try revoking the credential it holds
//! (`cargo run -- revoke --credential-id <id> --reason test`, as the dev admin) or stopping the
//! broker for a while, and watch what it prints.
//!
//! ```text
//! cargo run --example credential_source                        # mTLS with certs-dev/workload.pem
//! cargo run --example credential_source -- --token-file FILE   # a JWT-SVID / CI token from FILE
//! cargo run --example credential_source -- --ttl 60            # 60 s JWTs: renewals every ~30 s
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tessera_client::source::{
    Attestor, BrokerAddress, GrpcBroker, JwtSource, SourceParams, TokenFile, X509SvidFiles,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Returns the value after `flag` among the arguments, if any.
fn flag(args: &[String], flag: &str) -> Option<String> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let attestor: Arc<dyn Attestor> = match flag(&args, "--token-file") {
        Some(path) => Arc::new(TokenFile {
            path: PathBuf::from(path),
        }),
        None => Arc::new(X509SvidFiles {
            cert: "certs-dev/workload.pem".into(),
            key: "certs-dev/workload-key.pem".into(),
        }),
    };
    let broker = GrpcBroker::new(
        BrokerAddress {
            url: "https://127.0.0.1:8443".into(),
            ca_pem: std::fs::read("certs-dev/tls-ca.pem")?,
            server_name: "localhost".into(),
        },
        attestor,
    );
    let mut params = SourceParams::new("https://ledger.example.org", "ledger:write");
    params.ttl_seconds = flag(&args, "--ttl").map_or(Ok(60), |s| s.parse())?;

    // Refused for good (no grant, evidence missing or refused): say why and exit non-zero.
    // Unreachable: keep waiting, as a service starting before its broker would.
    let source = match JwtSource::start(params, Arc::new(broker)).await {
        Ok(source) => source,
        Err(e) => {
            eprintln!("cannot get a credential: {e}");
            std::process::exit(1);
        }
    };

    // Print every change of the credential held.
    let mut changes = source.subscribe();
    tokio::spawn(async move {
        loop {
            if let Some(credential) = changes.borrow_and_update().clone() {
                let issued = credential.issued();
                println!(
                    "credential {} for {} ({}), expires at {}",
                    issued.credential_id, issued.destination, issued.purpose, issued.expires_at
                );
            } else {
                println!("no credential held (revoked, and the broker has not replaced it yet)");
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });

    // The service's own work: each request takes whatever credential is held now.
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let status = source.status();
        match source.current() {
            Some(credential) => println!(
                "request with a {}-byte token: expires in {:.0} s, stale: {}, renewals: {} \
                 ({} after a revocation), failures: {}, following revocations: {}",
                credential.token().len(),
                source.seconds_to_expiry().unwrap_or_default(),
                status.stale,
                source.renewals(),
                source.revocation_renewals(),
                source.failures(),
                status.following_revocations,
            ),
            None => println!("no credential to send this request with"),
        }
        if let Some(error) = &status.last_error {
            println!("  last error: {error}");
        }
    }
}
