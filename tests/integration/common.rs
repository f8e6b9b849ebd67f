//! Shared fixtures: the test kit's real-server harness (a fresh PKI, config and running server
//! per test), under the name the tests import it by.

pub use tessera_testkit::harness::*;

/// Returns the `tessera` binary with `args`, connecting to the broker at `grpc` with `env`'s
/// admin SVID and TLS CA (`--server`, `--cert`, `--key`, `--ca`).
pub fn admin_cli(env: &Env, grpc: std::net::SocketAddr, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args(args)
        .args(["--server", &format!("https://{grpc}")])
        .arg("--cert")
        .arg(env.fx.path("admin.pem"))
        .arg("--key")
        .arg(env.fx.path("admin-key.pem"))
        .arg("--ca")
        .arg(env.fx.path("tls-ca.pem"));
    command
}

/// Runs `command` to its end off the test's runtime (the server runs on that runtime); returns
/// its output.
pub async fn run_cli(mut command: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Returns the status (`live`, `revoked`) the broker lists for the dev workload's credential
/// `credential_id`; the test fails when it is not listed.
pub async fn listed_status(env: &Env, credential_id: &str) -> String {
    let listed = env
        .admin_client()
        .await
        .list_credentials(tessera_proto::ListCredentialsRequest {
            workload: tessera_testkit::dev::WORKLOAD_ID.into(),
            ..tessera_proto::ListCredentialsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    listed
        .credentials
        .into_iter()
        .find(|c| c.credential_id == credential_id)
        .map(|c| c.status)
        .unwrap_or_else(|| panic!("{credential_id} is not listed"))
}

/// Returns a compact JWT's claims, unverified (the tests that need it check signatures
/// elsewhere); the test fails when it is not a JWT.
pub fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("a compact JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}
