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
