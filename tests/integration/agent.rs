//! `tessera agent`, the binary, against the real broker over real TLS: it writes fresh files
//! (mode 0600, replaced whole) and renews them before they expire, replaces a revoked credential
//! at once, keeps the last good files while the broker is unreachable, and exits non-zero with
//! a clear message when its attestation material is missing or its credential is refused. It
//! attests with the SVID the SPIFFE Workload API serves and follows its rotation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tessera_proto::RevokeRequest;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::revoke_request::Selector;
use tessera_testkit::dev::WORKLOAD_ID;

use tessera_core::attest::x5t_s256;
use tessera_testkit::workload_api::{Svid, WorkloadApiMaterial, WorkloadApiServer};

use crate::common::{DEST, Env, Fixture, PURPOSE, Relay, claims_of, listed_status};

/// A running `tessera agent`, killed when dropped.
struct Agent {
    child: tokio::process::Child,
    health: u16,
    dir: PathBuf,
}

/// Returns a port free on 127.0.0.1 now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Returns an agent configuration for `env`'s dev workload reaching the broker at `grpc`: a JWT
/// and an X.509-SVID of `ttl`, written under `dir`, each renewal appended to `dir/hook.log`.
fn agent_toml(env: &Env, grpc: std::net::SocketAddr, dir: &Path, ttl: &str, health: u16) -> String {
    let cert = env.fx.path("workload.pem");
    let key = env.fx.path("workload-key.pem");
    let ca = env.fx.path("tls-ca.pem");
    let hook = dir.join("hook.log");
    format!(
        r#"[broker]
grpc = "https://{grpc}"
ca = "{ca}"
server_name = "localhost"
[attest]
x509_svid_cert = "{cert}"
x509_svid_key = "{key}"
[health]
addr = "127.0.0.1:{health}"
[[credential]]
name = "ledger"
kind = "jwt"
destination = "{DEST}"
purpose = "{PURPOSE}"
ttl = "{ttl}"
file = "ledger.jwt"
command = ["sh", "-c", "echo renewed >> {hook}"]
[[credential]]
name = "svid"
kind = "x509"
destination = "{DEST}"
purpose = "{PURPOSE}"
ttl = "{ttl}"
cert_file = "svid.pem"
key_file = "svid-key.pem"
bundle_file = "bundle.pem"
"#,
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
        hook = hook.display(),
    )
}

impl Agent {
    /// Starts `tessera agent` on `toml`, written in a fresh folder under `env`'s.
    fn start(env: &Env, name: &str, toml: impl FnOnce(&Path, u16) -> String) -> Agent {
        let dir = env.fx.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let health = free_port();
        let config = dir.join("agent.toml");
        std::fs::write(&config, toml(&dir, health)).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("agent")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Agent { child, health, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Returns `/healthz` as (status code, JSON), or `None` while it does not answer.
    async fn health(&self) -> Option<(u16, serde_json::Value)> {
        let (code, body) = http_get(self.health, "/healthz").await?;
        Some((code, serde_json::from_str(&body).ok()?))
    }

    /// Waits until `/healthz` satisfies `done`; returns its JSON.
    async fn health_until(
        &self,
        done: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        within("the agent's health", async {
            loop {
                if let Some((code, json)) = self.health().await
                    && done(code, &json)
                {
                    return json;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    /// Waits for the JWT file to hold a token other than `previous`; returns it.
    async fn next_token(&self, previous: Option<&str>) -> String {
        within("a new token file", async {
            loop {
                if let Ok(token) = std::fs::read_to_string(self.file("ledger.jwt"))
                    && Some(token.as_str()) != previous
                {
                    return token;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.file("agent.log")).unwrap_or_default()
    }
}

/// Returns what `work` returns; the test fails if that takes more than 30 s.
async fn within<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), work).await {
        Ok(done) => done,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Checks that the key file holds the private key of the certificate file's leaf.
fn assert_key_matches_cert(cert_pem: &[u8], key_pem: &[u8]) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    let leaf = CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.secret_pkcs8_der()).unwrap();
    assert_eq!(
        pair.public_key().as_ref(),
        cert.public_key().subject_public_key.data.as_ref(),
        "the key file holds the leaf's key"
    );
}

#[tokio::test]
async fn the_agent_writes_whole_files_and_renews_them_before_they_expire() {
    let mut env = Env::start().await;
    let grpc = env.grpc;
    let agent = Agent::start(&env, "agent", |dir, health| {
        agent_toml(&env, grpc, dir, "6s", health)
    });
    let first = agent.next_token(None).await;
    agent.health_until(|code, _| code == 200).await;
    // A reader polling the files meanwhile only ever sees whole ones.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (jwt, cert, stop) = (
            agent.file("ledger.jwt"),
            agent.file("svid.pem"),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let token = std::fs::read_to_string(&jwt).unwrap();
                assert_eq!(token.split('.').count(), 3, "a partial token: {token}");
                let pem = std::fs::read_to_string(&cert).unwrap();
                assert!(
                    pem.trim_end().ends_with("-----END CERTIFICATE-----"),
                    "{pem}"
                );
                reads += 1;
            }
            reads
        })
    };
    let (was, seen_at) = (claims_of(&first), tessera_testkit::harness::now());
    assert_eq!(was["sub"], WORKLOAD_ID);
    let second = agent.next_token(Some(&first)).await;
    let renewed_at = tessera_testkit::harness::now();
    assert!(
        renewed_at < was["exp"].as_i64().unwrap(),
        "renewed before it expired"
    );
    assert!(renewed_at >= seen_at, "{renewed_at} {seen_at}");
    assert_ne!(claims_of(&second)["jti"], was["jti"]);
    stop.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    for file in ["ledger.jwt", "svid.pem", "svid-key.pem", "bundle.pem"] {
        assert_eq!(mode(&agent.file(file)), 0o600, "{file}");
    }
    assert_key_matches_cert(
        &std::fs::read(agent.file("svid.pem")).unwrap(),
        &std::fs::read(agent.file("svid-key.pem")).unwrap(),
    );
    // The command runs once a renewal is written, so its second line may follow the second
    // token by a moment.
    let hook_log = agent.file("hook.log");
    crate::workload_api::until(|| {
        let hook_log = hook_log.clone();
        async move { std::fs::read_to_string(&hook_log).is_ok_and(|h| h.lines().count() >= 2) }
    })
    .await;
    let hooks = std::fs::read_to_string(&hook_log).unwrap();
    assert!(
        hooks.lines().count() >= 2,
        "the command ran after each renewal: {hooks}"
    );
    let (_, metrics) = http_get(agent.health, "/metrics").await.unwrap();
    assert!(
        metrics.contains("tessera_agent_renewals_total{credential=\"ledger\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tessera_agent_credential_expiry_seconds{credential=\"svid\"}"),
        "{metrics}"
    );
    drop(agent);
    env.shutdown().await;
}

/// Returns the status code and body of a plain HTTP GET of `path` on 127.0.0.1:`port`, or `None`
/// while nothing answers there.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: agent\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.ok()?;
    let code = raw.get(9..12)?.parse().ok()?;
    let (_, body) = raw.split_once("\r\n\r\n")?;
    Some((code, body.to_owned()))
}

#[tokio::test]
async fn a_revoked_credential_file_is_replaced_at_once() {
    let mut env = Env::start().await;
    let grpc = env.grpc;
    // Ten minutes: a new file within the test can only come from the revocation.
    let agent = Agent::start(&env, "agent", |dir, health| {
        agent_toml(&env, grpc, dir, "10m", health)
    });
    let first = agent.next_token(None).await;
    agent.health_until(|code, _| code == 200).await;
    let jti = claims_of(&first)["jti"].as_str().unwrap().to_owned();
    AdminClient::new(env.channel(Some(&env.fx.material.admin)).await)
        .revoke(RevokeRequest {
            selector: Some(Selector::CredentialId(jti.clone())),
            reason: "leaked in a log".into(),
        })
        .await
        .unwrap();
    let second = agent.next_token(Some(&first)).await;
    let new_jti = claims_of(&second)["jti"].as_str().unwrap().to_owned();
    assert_ne!(new_jti, jti);
    assert_eq!(listed_status(&env, &jti).await, "revoked");
    assert_eq!(listed_status(&env, &new_jti).await, "live");
    drop(agent);
    env.shutdown().await;
}

#[tokio::test]
async fn the_last_good_files_are_kept_while_the_broker_is_down_and_renewed_when_it_returns() {
    let mut env = Env::start().await;
    let relay = Relay::start(env.grpc).await;
    let via = relay.addr();
    let agent = Agent::start(&env, "agent", |dir, health| {
        agent_toml(&env, via, dir, "6s", health)
    });
    let first = agent.next_token(None).await;
    agent.health_until(|code, _| code == 200).await;
    relay.cut();
    let stale = agent
        .health_until(|_, json| json["credentials"][0]["stale"] == true)
        .await;
    assert!(stale["credentials"][0]["last_error"].is_string(), "{stale}");
    assert_eq!(
        std::fs::read_to_string(agent.file("ledger.jwt")).unwrap(),
        first,
        "the last good token stays in place"
    );
    relay.restore();
    let renewed = agent.next_token(Some(&first)).await;
    assert_ne!(claims_of(&renewed)["jti"], claims_of(&first)["jti"]);
    agent
        .health_until(|code, json| code == 200 && json["credentials"][0]["stale"] == false)
        .await;
    drop(agent);
    env.shutdown().await;
}

/// Runs the agent on `toml` to its end; returns its exit code and log.
async fn run_to_exit(env: &Env, toml: impl FnOnce(&Path, u16) -> String) -> (Option<i32>, String) {
    let mut agent = Agent::start(env, "failing", toml);
    let status = within("the agent to exit", agent.child.wait())
        .await
        .unwrap();
    (status.code(), agent.log())
}

#[tokio::test]
async fn the_agent_exits_non_zero_naming_missing_attestation_material_or_a_refusal() {
    let mut env = Env::start().await;
    let grpc = env.grpc;
    let absent = env.fx.path("absent-svid.pem");
    let (code, log) = run_to_exit(&env, |dir, health| {
        agent_toml(&env, grpc, dir, "5m", health).replace(
            &env.fx.path("workload.pem").display().to_string(),
            &absent.display().to_string(),
        )
    })
    .await;
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("X509-SVID certificate") && log.contains("absent-svid.pem"),
        "{log}"
    );
    // A destination no grant allows: the broker refuses, for good.
    let (code, log) = run_to_exit(&env, |dir, health| {
        agent_toml(&env, grpc, dir, "5m", health).replace(DEST, "https://nowhere.example.org")
    })
    .await;
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("credential `ledger`") && log.contains("refused"),
        "{log}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn the_agent_attests_with_the_workload_apis_svid_and_follows_its_rotation() {
    let mut env = Env::start().await;
    let grpc = env.grpc;
    let socket = env.fx.path("agent.sock");
    let api =
        WorkloadApiServer::start(&socket, WorkloadApiMaterial::of_dev(&env.fx.material)).await;
    let endpoint = api.endpoint();
    let svid_files = format!(
        "x509_svid_cert = \"{}\"\nx509_svid_key = \"{}\"",
        env.fx.path("workload.pem").display(),
        env.fx.path("workload-key.pem").display()
    );
    let agent = Agent::start(&env, "agent", |dir, health| {
        agent_toml(&env, grpc, dir, "6s", health)
            .replace(&svid_files, &format!("workload_api = \"{endpoint}\""))
    });
    let first = agent.next_token(None).await;
    let served = x5t_s256(&env.fx.material.workload.cert_der);
    assert_eq!(
        claims_of(&first)["cnf"]["x5t#S256"],
        served.as_str(),
        "bound to the served SVID"
    );
    let rotated = env.fx.svid(&Fixture::svid_spec(WORKLOAD_ID));
    api.set_svid(Svid::of(WORKLOAD_ID, &rotated));
    let now_bound = x5t_s256(&rotated.cert_der);
    within("a token bound to the rotated SVID", async {
        let mut previous = first;
        loop {
            let token = agent.next_token(Some(&previous)).await;
            if claims_of(&token)["cnf"]["x5t#S256"] == now_bound.as_str() {
                return;
            }
            previous = token;
        }
    })
    .await;
    drop(agent);
    // With the Workload API gone, the agent cannot start: it says so and exits non-zero.
    api.stop().await;
    let (code, log) = run_to_exit(&env, |dir, health| {
        agent_toml(&env, grpc, dir, "5m", health)
            .replace(&svid_files, &format!("workload_api = \"{endpoint}\""))
    })
    .await;
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("workload_api") || log.contains("workload-api"),
        "{log}"
    );
    env.shutdown().await;
}
