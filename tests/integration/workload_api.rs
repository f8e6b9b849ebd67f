//! Trust bundles from the SPIFFE Workload API (`[[trust_domain]] workload_api`): the real broker
//! takes its X.509 and JWT bundles from the test kit's Workload API server on a Unix socket (the
//! bundle files are deleted first), follows their rotation without a restart — the next TLS
//! handshake and the next JWT-SVID use the new bundles — keeps the last bundles while the agent
//! is away, takes federated bundles for the trust domains it names, and refuses to start
//! without a Workload API, naming its socket.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tessera_testkit::dev::{Certified, JwtSvidSigner, WORKLOAD_ID, pki};
use tessera_testkit::workload_api::{WorkloadApiMaterial, WorkloadApiServer, jwks};
use tonic::Code;

use crate::common::{DEST, Env, Fixture, PURPOSE, https_get, mint, now, offset_now, run_cli};

/// A fixture whose trust domain takes its bundles from a Workload API server serving the
/// fixture's own bundles (`workload_api` set to its address, or to `env` when `from_env`), the
/// bundle files deleted; returns both.
async fn fixture_with_agent(from_env: bool) -> (Fixture, WorkloadApiServer) {
    let fx = Fixture::new();
    let agent = WorkloadApiServer::start(
        &fx.path("agent.sock"),
        WorkloadApiMaterial::of_dev(&fx.material),
    )
    .await;
    let endpoint = if from_env {
        "env".to_owned()
    } else {
        agent.endpoint()
    };
    fx.use_workload_api(&endpoint);
    for file in ["spiffe-bundle.pem", "spiffe-jwks.json"] {
        std::fs::remove_file(fx.path(file)).unwrap();
    }
    (fx, agent)
}

/// Starts the broker on [`fixture_with_agent`].
async fn start() -> (Env, WorkloadApiServer) {
    let (fx, agent) = fixture_with_agent(false).await;
    (Env::start_fixture(fx).await, agent)
}

/// Returns a new root CA of trust domain `td` (`example.org`).
fn root_ca(td: &str, name: &str) -> Certified {
    let now = offset_now();
    let (from, to) = (
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    );
    pki::ca(name, Some(&format!("spiffe://{td}")), None, from, to).unwrap()
}

/// Mints a JWT on a new connection presenting `svid`; returns the refusal's code.
pub(crate) async fn mint_as(env: &Env, svid: &Certified) -> Result<(), Code> {
    let mut client = env.client(Some(svid)).await;
    let minted = mint(&mut client, DEST, PURPOSE, 60, None).await;
    minted.map(|_| ()).map_err(|s| s.code())
}

/// Mints a JWT with `token` as bearer, on a connection without a client certificate; returns
/// the refusal's code.
pub(crate) async fn mint_with(env: &Env, token: &str) -> Result<(), Code> {
    let mut client = env.client(None).await;
    let minted = mint(&mut client, DEST, PURPOSE, 60, Some(token)).await;
    minted.map(|_| ()).map_err(|s| s.code())
}

/// Polls `check` until it returns true (at most 20 s); the test fails if it never does.
pub(crate) async fn until<'a, Fut>(check: impl Fn() -> Fut + 'a)
where
    Fut: Future<Output = bool> + 'a,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the broker never showed what was expected");
}

/// Waits until a mint on a new connection presenting `svid` ends with `expected`.
async fn until_mint_as(env: &Env, svid: &Certified, expected: Result<(), Code>) {
    until(|| async move { mint_as(env, svid).await == expected }).await;
}

/// Waits until a mint with bearer `token` ends with `expected`.
async fn until_mint_with(env: &Env, token: &str, expected: Result<(), Code>) {
    until(|| async move { mint_with(env, token).await == expected }).await;
}

/// Waits until `/metrics` holds `needle`.
async fn until_metric(env: &Env, needle: &str) {
    until(|| async move { metrics(env).await.contains(needle) }).await;
}

/// Returns the `/metrics` text.
async fn metrics(env: &Env) -> String {
    String::from_utf8(https_get(env, "/metrics").await.2).unwrap()
}

/// Returns the audit lines of `env` (after its shutdown) whose event is `event`.
fn audited(env: &Env, event: &str) -> Vec<Value> {
    let log = std::fs::read_to_string(env.fx.path("data/audit.log")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == event)
        .collect()
}

#[tokio::test]
async fn the_broker_starts_with_the_bundles_of_the_workload_api_and_accepts_svids_of_its_ca() {
    let (mut env, agent) = start().await;
    assert_eq!(mint_as(&env, &env.fx.material.workload).await, Ok(()));
    let token = env.fx.jwt_svid(WORKLOAD_ID);
    assert_eq!(mint_with(&env, &token).await, Ok(()));
    let text = metrics(&env).await;
    assert!(
        text.contains(
            r#"tessera_trust_bundle_updated_timestamp_seconds{trust_domain="example.org"}"#
        ),
        "{text}"
    );
    let connected = format!(
        "tessera_workload_api_connected{{endpoint=\"{}\"}} 1",
        agent.endpoint()
    );
    assert!(text.contains(&connected), "{text}");
    env.shutdown().await;
    agent.stop().await;
}

#[tokio::test]
async fn after_the_x509_bundle_rotates_new_connections_accept_the_new_ca_and_refuse_the_removed_one()
 {
    let (mut env, agent) = start().await;
    let old = &env.fx.material.workload;
    let new_ca = root_ca("example.org", "rotated root");
    let of_new = pki::leaf(&Fixture::svid_spec(WORKLOAD_ID), &new_ca).unwrap();
    assert_eq!(mint_as(&env, &of_new).await, Err(Code::Unauthenticated));
    // The new CA is added beside the old one, then the old one is removed.
    let both = vec![
        env.fx.material.spiffe_ca.cert_der.clone(),
        new_ca.cert_der.clone(),
    ];
    agent.rotate_x509_bundle("example.org", both);
    until_mint_as(&env, &of_new, Ok(())).await;
    assert_eq!(mint_as(&env, old).await, Ok(()));
    let mut open_with_old = env.client(Some(old)).await;
    assert!(
        mint(&mut open_with_old, DEST, PURPOSE, 60, None)
            .await
            .is_ok()
    );
    agent.rotate_x509_bundle("example.org", vec![new_ca.cert_der.clone()]);
    until_mint_as(&env, old, Err(Code::Unauthenticated)).await;
    assert_eq!(mint_as(&env, &of_new).await, Ok(()));
    let refused = mint(&mut open_with_old, DEST, PURPOSE, 60, None).await;
    assert_eq!(
        refused.unwrap_err().code(),
        Code::Unauthenticated,
        "an open connection too"
    );
    env.shutdown().await;
    let updates = audited(&env, "trust_bundle_updated");
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(
        updates[1]["trust_domains"],
        serde_json::json!(["example.org"])
    );
    let warnings = updates[1]["warnings"].to_string();
    assert!(
        warnings.contains("minted X.509-SVIDs would not verify"),
        "{warnings}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn after_the_jwt_bundle_rotates_the_next_jwt_svid_is_verified_with_the_new_keys() {
    let (mut env, agent) = start().await;
    let new_key = JwtSvidSigner::generate("example-org-jwt-2").unwrap();
    let of_new = new_key.svid(WORKLOAD_ID, "tessera", now(), 120).unwrap();
    let of_old = env.fx.jwt_svid(WORKLOAD_ID);
    assert_eq!(mint_with(&env, &of_new).await, Err(Code::Unauthenticated));
    agent.rotate_jwt_bundle("example.org", jwks(&[&new_key]));
    until_mint_with(&env, &of_new, Ok(())).await;
    assert_eq!(mint_with(&env, &of_old).await, Err(Code::Unauthenticated));
    env.shutdown().await;
    agent.stop().await;
}

#[tokio::test]
async fn a_workload_api_that_goes_away_leaves_the_last_bundles_and_is_followed_again_when_back() {
    let (mut env, agent) = start().await;
    let socket = agent.socket_path().to_owned();
    let endpoint = agent.endpoint();
    let mut served = agent.material();
    agent.stop().await;
    let down = format!("tessera_workload_api_connected{{endpoint=\"{endpoint}\"}} 0");
    until_metric(&env, &down).await;
    assert_eq!(mint_as(&env, &env.fx.material.workload).await, Ok(()));
    let new_ca = root_ca("example.org", "root after the agent restarted");
    let of_new = pki::leaf(&Fixture::svid_spec(WORKLOAD_ID), &new_ca).unwrap();
    served
        .x509_bundles
        .insert("example.org".into(), vec![new_ca.cert_der.clone()]);
    let agent = WorkloadApiServer::start(&socket, served).await;
    until_mint_as(&env, &of_new, Ok(())).await;
    let text = metrics(&env).await;
    let reconnects = format!("tessera_workload_api_reconnects_total{{endpoint=\"{endpoint}\"}} ");
    assert!(text.contains(&reconnects), "{text}");
    env.shutdown().await;
    agent.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_the_rotated_bundles_and_takes_federated_ones_for_the_domains_it_names() {
    let (mut env, agent) = start().await;
    let new_ca = root_ca("example.org", "root added before the reload");
    let of_new = pki::leaf(&Fixture::svid_spec(WORKLOAD_ID), &new_ca).unwrap();
    // The mint CA's root stays: a reload checks [signing] against the bundles as they are now.
    let both = vec![
        env.fx.material.spiffe_ca.cert_der.clone(),
        new_ca.cert_der.clone(),
    ];
    agent.rotate_x509_bundle("example.org", both);
    until_mint_as(&env, &of_new, Ok(())).await;
    let partner_key = JwtSvidSigner::generate("partner-1").unwrap();
    let partner = partner_key
        .svid(
            "spiffe://partner.org/ns/billing/sa/api",
            "tessera",
            now(),
            120,
        )
        .unwrap();
    env.fx.append_config(&format!(
        "\n[[trust_domain]]\nname = \"partner.org\"\nworkload_api = \"{}\"\n",
        agent.endpoint()
    ));
    let server = env.server.as_ref().unwrap();
    let refused = server.reload("test").await.unwrap_err().to_string();
    assert!(
        refused.contains("partner.org") && refused.contains(&agent.endpoint()),
        "{refused}"
    );
    assert_eq!(mint_with(&env, &partner).await, Err(Code::Unauthenticated));
    let partner_ca = root_ca("partner.org", "partner.org root");
    agent.set_federated_bundles(
        "partner.org",
        vec![partner_ca.cert_der.clone()],
        jwks(&[&partner_key]),
    );
    // Refused until the broker has received the partner.org bundles.
    until(|| async { server.reload("test").await.is_ok() }).await;
    // Attested (a partner.org JWT-SVID verifies) but granted nothing.
    assert_eq!(mint_with(&env, &partner).await, Err(Code::PermissionDenied));
    assert_eq!(
        mint_as(&env, &of_new).await,
        Ok(()),
        "the rotated bundle stays in force"
    );
    agent.remove_bundles("partner.org");
    until_mint_with(&env, &partner, Err(Code::Unauthenticated)).await;
    env.shutdown().await;
    agent.stop().await;
}

#[tokio::test]
async fn start_up_without_a_workload_api_fails_naming_its_socket() {
    let fx = Fixture::new();
    let socket = fx.path("no-agent.sock");
    fx.use_workload_api(&format!("unix://{}", socket.display()));
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text.replacen(
        "[server]\n",
        "[server]\nworkload_api_timeout = \"300ms\"\n",
        1,
    );
    std::fs::write(&fx.config_path, text).unwrap();
    let clock = std::sync::Arc::new(tessera_core::clock::SystemClock);
    let failed = tessera_server::server::start(fx.config(), clock)
        .await
        .unwrap_err();
    let message = failed.to_string();
    assert!(message.contains(&socket.display().to_string()), "{message}");
    assert!(message.contains("example.org"), "{message}");
    assert!(message.contains("workload_api_timeout"), "{message}");
}

#[tokio::test]
async fn tessera_check_reads_the_workload_api_from_spiffe_endpoint_socket_when_told_env() {
    let (fx, agent) = fixture_with_agent(true).await;
    let check = |socket: Option<String>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
        command.arg("check").arg("--config").arg(&fx.config_path);
        match socket {
            Some(socket) => command.env("SPIFFE_ENDPOINT_SOCKET", socket),
            None => command.env_remove("SPIFFE_ENDPOINT_SOCKET"),
        };
        run_cli(command)
    };
    let output = check(Some(agent.endpoint())).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(": ok ("), "{stdout}");
    let output = check(None).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("trust_domain[0].workload_api"), "{stderr}");
    assert!(stderr.contains("SPIFFE_ENDPOINT_SOCKET"), "{stderr}");
    agent.stop().await;
}
