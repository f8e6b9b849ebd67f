//! The replica harness: `tessera serve` processes on one test database, sharing one fixture,
//! each with its own config and audit log; killed when dropped. Helpers that read a replica's
//! listing and the ledger's event log.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tessera_ledger::{EventKind, Ledger, PostgresLedger, PostgresOptions};
use tessera_proto::admin_client::AdminClient;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::{ListCredentialsRequest, RevocationEvent};
use tessera_testkit::dev::WORKLOAD_ID;
use tessera_testkit::postgres::TestDatabase;
use tokio::time::{Instant, sleep, timeout};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{Fixture, HttpReply, https_request_to};

/// Bound on a replica starting and becoming ready.
pub(super) const START: Duration = Duration::from_secs(30);
/// Bound on polling for something that happens through the ledger's fan-out (LISTEN/NOTIFY,
/// or the publisher's one-second poll when a notification is lost).
pub(super) const FAN_OUT: Duration = Duration::from_secs(5);
/// Bound on readiness following the database (checked every second; reconnects back off).
pub(super) const READINESS: Duration = Duration::from_secs(15);

/// One `tessera serve` process; SIGKILLed when dropped.
pub(super) struct Replica {
    pub(super) name: String,
    pub(super) child: Child,
    pub(super) grpc: SocketAddr,
    pub(super) http: SocketAddr,
    /// Its stderr (the log), printed when a test fails.
    pub(super) log: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    /// SIGKILLs the process (once) and reaps it.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let tail = log.len().saturating_sub(40);
            eprintln!("--- log of replica {} (last lines) ---", self.name);
            for line in &log[tail..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Replicas on one database and one fixture. Fields drop in order: the processes first, then
/// the database, then the fixture's directory.
pub(super) struct Cluster {
    pub(super) replicas: Vec<Replica>,
    pub(super) db: TestDatabase,
    pub(super) fx: Fixture,
}

impl Cluster {
    /// Starts `n` replicas on a fresh fixture and database.
    pub(super) async fn start(n: usize) -> Cluster {
        Self::start_fixture(Fixture::new(), n).await
    }

    /// Starts `n` replicas (named a, b, c, …) on `fx` and a fresh database; returns once each
    /// answers `/readyz` with 200.
    pub(super) async fn start_fixture(fx: Fixture, n: usize) -> Cluster {
        let db = TestDatabase::create().await;
        let mut cluster = Cluster {
            replicas: Vec::new(),
            db,
            fx,
        };
        for i in 0..n {
            let name = char::from(b'a' + u8::try_from(i).unwrap()).to_string();
            let replica = cluster.spawn(&name).await;
            cluster.replicas.push(replica);
        }
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    /// Writes replica `name`'s config (the fixture's, on the database, with its own audit log)
    /// and starts it; returns once it logged its addresses.
    pub(super) async fn spawn(&self, name: &str) -> Replica {
        let dir = self.fx.path(&format!("replica-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("tessera.toml");
        std::fs::write(&config_path, self.replica_config(&dir)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .current_dir(&dir)
            .env("TESSERA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("tessera serving")
                    && let (Some(grpc), Some(http)) =
                        (field(&line, "grpc_addr"), field(&line, "http_addr"))
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((grpc, http));
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut replica = Replica {
            name: name.to_owned(),
            child,
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match timeout(START, rx).await {
            Ok(Ok((grpc, http))) => (replica.grpc, replica.http) = (grpc, http),
            _ => panic!(
                "replica {name} did not log `tessera serving`; status {:?}",
                replica.child.try_wait()
            ),
        }
        replica
    }

    /// Returns the fixture's config with `[ledger] url` on this cluster's database (a small
    /// pool, a short connect timeout) and `[audit] path` in `dir`.
    pub(super) fn replica_config(&self, dir: &std::path::Path) -> String {
        let base = std::fs::read_to_string(&self.fx.config_path).unwrap();
        let start = base.find("[ledger]\npath = ").unwrap() + "[ledger]\n".len();
        let end = start + base[start..].find('\n').unwrap();
        let ledger = format!(
            "url = \"{}\"\npool_size = 4\nconnect_timeout = \"2s\"",
            self.db.url()
        );
        let audit: PathBuf = dir.join("audit.log");
        format!(
            "{}{ledger}{}\n[audit]\npath = \"{}\"\n",
            &base[..start],
            &base[end..],
            audit.display()
        )
    }

    /// Polls replica `i`'s `/readyz` until it answers 200; panics past [`START`].
    pub(super) async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + START;
        loop {
            if self.readyz(i).await == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} never became ready",
                self.replicas[i].name
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `/readyz` of replica `i` until it answers `status`; panics past `within`.
    pub(super) async fn await_readyz(&self, i: usize, status: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.readyz(i).await;
            if now == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz of replica {} still answers {now}, not {status}",
                self.replicas[i].name
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the gRPC health of replica `i` until both "" and `tessera.v1.Broker` report
    /// `status`; panics past `within`.
    pub(super) async fn await_health(&self, i: usize, status: ServingStatus, within: Duration) {
        let grpc = self.replicas[i].grpc;
        let mut health = HealthClient::new(self.fx.channel_to(grpc, None).await);
        let deadline = Instant::now() + within;
        for service in ["", "tessera.v1.Broker"] {
            loop {
                let request = HealthCheckRequest {
                    service: service.into(),
                };
                let now = health.check(request).await.unwrap().into_inner().status();
                if now == status {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "gRPC health of {service:?} on replica {} is still {now:?}",
                    self.replicas[i].name
                );
                sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Returns the status `/readyz` of replica `i` answers.
    pub(super) async fn readyz(&self, i: usize) -> u16 {
        self.http(i, "GET", "/readyz", None, None).await.status
    }

    /// Sends one HTTPS request to replica `i`.
    pub(super) async fn http(
        &self,
        i: usize,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
        bearer: Option<&str>,
    ) -> HttpReply {
        let form = form.map(|pairs| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        });
        let http = self.replicas[i].http;
        https_request_to(&self.fx, http, method, path, form, bearer).await
    }

    /// Returns the dev workload's broker client on replica `i`.
    pub(super) async fn workload(&self, i: usize) -> BrokerClient<Channel> {
        let grpc = self.replicas[i].grpc;
        BrokerClient::new(
            self.fx
                .channel_to(grpc, Some(&self.fx.material.workload))
                .await,
        )
    }

    /// Returns the dev admin's admin client on replica `i`.
    pub(super) async fn admin(&self, i: usize) -> AdminClient<Channel> {
        let grpc = self.replicas[i].grpc;
        AdminClient::new(
            self.fx
                .channel_to(grpc, Some(&self.fx.material.admin))
                .await,
        )
    }

    /// Introspects `token` on replica `i` as a relying party; returns `active`.
    pub(super) async fn active(&self, i: usize, token: &str) -> bool {
        let bearer = self.fx.jwt_svid("spiffe://example.org/ns/ledger/sa/rp");
        let reply = self
            .http(
                i,
                "POST",
                "/introspect",
                Some(&[("token", token)]),
                Some(&bearer),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        if body["active"] == false {
            assert_eq!(body, json!({"active": false}));
        }
        body["active"] == true
    }

    /// Returns a ledger opened directly on the cluster's database.
    pub(super) async fn ledger(&self) -> PostgresLedger {
        let options = PostgresOptions {
            pool_size: 2,
            ..PostgresOptions::new(self.db.url())
        };
        PostgresLedger::connect(options).await.unwrap()
    }
}

/// Returns the value of `key=value` in a log line.
pub(super) fn field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split(&format!("{key}="))
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Returns every credential id listed by `admin` for the dev workload, all pages.
pub(super) async fn listed(admin: &mut AdminClient<Channel>) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_credentials(ListCredentialsRequest {
                workload: WORKLOAD_ID.into(),
                page_size: 500,
                page_token,
                ..ListCredentialsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.credentials.into_iter().map(|c| c.credential_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// Checks the whole event log of `ledger`: sequences 1, 2, 3, … with no gap and no duplicate;
/// returns the credential ids of its `issued` events.
pub(super) async fn gap_free_issued(ledger: &PostgresLedger) -> BTreeSet<String> {
    let mut issued = BTreeSet::new();
    let mut last = 0;
    loop {
        let events = ledger.events_since(last, 1000).await.unwrap();
        if events.is_empty() {
            break;
        }
        for event in events {
            assert_eq!(event.sequence, last + 1, "the event sequence has a gap");
            last = event.sequence;
            if event.kind == EventKind::Issued {
                let id = event.credential.unwrap().credential_id;
                assert!(issued.insert(id.clone()), "{id} issued twice");
            }
        }
    }
    assert_eq!(last, ledger.last_sequence().await.unwrap());
    issued
}

/// Reads `stream` until a revocation rule arrives (skipping `caught_up` markers); panics past
/// [`FAN_OUT`].
pub(super) async fn next_rule(stream: &mut tonic::Streaming<RevocationEvent>) -> RevocationEvent {
    let deadline = Instant::now() + FAN_OUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = timeout(left, stream.next())
            .await
            .expect("no rule reached the watcher in time")
            .expect("the watch ended")
            .unwrap();
        if !event.caught_up {
            return event;
        }
    }
}
