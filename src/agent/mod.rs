//! `tessera agent --config agent.toml`: keeps a workload's credentials fresh in files, with no
//! code in the workload (as Vault Agent, spiffe-helper and `tbot` do). One credential source per
//! configured credential (`tessera_client::source`: renewal at about half-life with jitter,
//! retries, revocations followed), one writer per source, `/healthz` and `/metrics`.
//!
//! Flow: [`config`] → attestor and broker → sources → [`writer`] ([`files`], [`hooks`]) →
//! [`status`] → [`health`].

pub mod config;
pub mod files;
pub mod health;
pub mod hooks;
pub mod status;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use tessera_client::source::{
    Attestor, Broker, BrokerAddress, CredentialSource, GrpcBroker, JwtSource, SourceError,
    SourceParams, TokenFile, WorkloadApiSvid, X509SvidFiles, X509SvidSource,
};
use tessera_core::clock::SharedClock;

use self::config::{AgentConfig, AgentConfigError, Attest, CredentialSpec, Output};
use self::status::{Probe, Status};
use self::writer::Writable;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] AgentConfigError),
    #[error("attestation material: {0}")]
    Attestation(String),
    #[error("credential `{credential}`: {error}")]
    Refused {
        credential: String,
        error: SourceError,
    },
    #[error("status listener {addr}: {source}")]
    Health {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("broker CA {}: {source}", path.display())]
    BrokerCa {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs the agent of `config_path` until SIGTERM or SIGINT. Fails at start when the
/// configuration is invalid, the attestation material is missing, or the broker refuses a
/// credential for good (no grant, evidence refused); an unreachable broker is waited for.
pub async fn run(config_path: &Path, clock: SharedClock) -> Result<(), AgentError> {
    let config = AgentConfig::load(config_path)?;
    let running = start(&config, clock).await?;
    tracing::info!(credentials = running.count, "tessera agent running");
    crate::wait_for_signal().await;
    drop(running);
    Ok(())
}

/// The running agent: dropping it stops every source and writer.
pub struct Running {
    count: usize,
    _probes: Vec<Arc<dyn Probe>>,
    _health_task: Option<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the sources, writers and status listener of `config`, and waits until every source
/// holds its first credential or one is refused for good. Fails as [`run`].
pub async fn start(config: &AgentConfig, clock: SharedClock) -> Result<Running, AgentError> {
    let attestor = attestor(&config.attest).await?;
    let follow = follows_revocations(&config.attest);
    let ca_pem = std::fs::read(&config.broker.ca).map_err(|source| AgentError::BrokerCa {
        path: config.broker.ca.clone(),
        source,
    })?;
    let server_name = config
        .broker
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(&config.broker.grpc));
    let broker: Arc<dyn Broker> = Arc::new(GrpcBroker::new(
        BrokerAddress {
            url: config.broker.grpc.clone(),
            ca_pem,
            server_name,
        },
        attestor,
    ));
    let launched = launch_all(config, &broker, follow, &clock);
    let probes: Vec<(String, Arc<dyn Probe>)> = launched
        .iter()
        .zip(&config.credentials)
        .map(|(l, spec)| (spec.name.clone(), Arc::clone(&l.probe)))
        .collect();
    let (readiness, writers): (Vec<_>, Vec<_>) =
        launched.into_iter().map(|l| (l.ready, l.writer)).unzip();
    let status = Status::new(probes.clone(), clock);
    for writer in writers {
        tokio::spawn(writer(status.clone()));
    }
    let health_task = match config.health {
        None => None,
        Some(addr) => {
            let (bound, task) = health::serve(addr, status.clone())
                .await
                .map_err(|source| AgentError::Health { addr, source })?;
            tracing::info!(addr = %bound, "serving /healthz and /metrics");
            Some(AbortOnDrop(task))
        }
    };
    for (ready, spec) in readiness.into_iter().zip(&config.credentials) {
        ready.await.map_err(|error| AgentError::Refused {
            credential: spec.name.clone(),
            error,
        })?;
    }
    Ok(Running {
        count: config.credentials.len(),
        _probes: probes.into_iter().map(|(_, p)| p).collect(),
        _health_task: health_task,
    })
}

/// Starts one source per configured credential on `broker`; returns them in config order.
fn launch_all(
    config: &AgentConfig,
    broker: &Arc<dyn Broker>,
    follow: bool,
    clock: &SharedClock,
) -> Vec<Launched> {
    config
        .credentials
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let mut params = SourceParams::new(&spec.request.destination, &spec.request.purpose);
            params.ttl_seconds = spec
                .request
                .ttl
                .map_or(0, |t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX));
            params.follow_revocations = follow;
            params.clock = Arc::clone(clock);
            let broker = Arc::clone(broker);
            match spec.output {
                Output::Jwt { .. } => launch(JwtSource::spawn(params, broker), spec, index),
                Output::X509 { .. } => launch(X509SvidSource::spawn(params, broker), spec, index),
            }
        })
        .collect()
}

/// A source started: what the status reads, its first credential, and its writer.
struct Launched {
    probe: Arc<dyn Probe>,
    ready: BoxFuture<'static, Result<(), SourceError>>,
    writer: Box<dyn FnOnce(Status) -> BoxFuture<'static, ()> + Send>,
}

fn launch<C: Writable>(
    source: CredentialSource<C>,
    spec: &CredentialSpec,
    index: usize,
) -> Launched {
    let for_ready = source.clone();
    let for_writer = source.clone();
    let spec = spec.clone();
    Launched {
        probe: Arc::new(source),
        ready: Box::pin(async move { for_ready.ready().await.map(|_| ()) }),
        writer: Box::new(move |status| Box::pin(writer::follow(for_writer, spec, index, status))),
    }
}

/// How long the agent waits at start for the Workload API's first SVID.
const WORKLOAD_API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Returns the attestor of `attest`. Fails when its material is missing now (it is read again
/// at every renewal, so it may rotate later), or the Workload API serves no SVID within
/// [`WORKLOAD_API_TIMEOUT`].
async fn attestor(attest: &Attest) -> Result<Arc<dyn Attestor>, AgentError> {
    let present = |path: &Path, what: &str| {
        std::fs::metadata(path)
            .map(|_| ())
            .map_err(|e| AgentError::Attestation(format!("{what} {}: {e}", path.display())))
    };
    match attest {
        Attest::SvidFiles { cert, key } => {
            present(cert, "X509-SVID certificate")?;
            present(key, "X509-SVID key")?;
            Ok(Arc::new(X509SvidFiles {
                cert: cert.clone(),
                key: key.clone(),
            }))
        }
        Attest::TokenFile(path) => {
            present(path, "token file")?;
            Ok(Arc::new(TokenFile { path: path.clone() }))
        }
        Attest::WorkloadApi(endpoint) => {
            let connected =
                tokio::time::timeout(WORKLOAD_API_TIMEOUT, WorkloadApiSvid::connect(endpoint))
                    .await
                    .map_err(|_| {
                        AgentError::Attestation(format!(
                            "workload_api {endpoint}: no X509-SVID within {}s",
                            WORKLOAD_API_TIMEOUT.as_secs()
                        ))
                    })?
                    .map_err(|e| AgentError::Attestation(e.to_string()))?;
            Ok(Arc::new(connected))
        }
    }
}

/// Returns whether the sources follow `WatchRevocations`: SVIDs may watch; CI and Kubernetes
/// tokens may not, so a token file follows only when it holds a JWT-SVID (`sub` is a SPIFFE ID).
fn follows_revocations(attest: &Attest) -> bool {
    match attest {
        Attest::SvidFiles { .. } | Attest::WorkloadApi(_) => true,
        Attest::TokenFile(path) => std::fs::read_to_string(path)
            .ok()
            .and_then(|t| subject_of(t.trim()))
            .is_some_and(|sub| sub.starts_with("spiffe://")),
    }
}

/// Returns the unverified `sub` of a compact JWT.
fn subject_of(token: &str) -> Option<String> {
    use tessera_core::attest::jws;
    let claims: serde_json::Value = jws::decode_json(jws::split(token)?.claims)?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

/// Returns the host of a URL like `https://host:port/…`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
    .trim_start_matches('[')
    .trim_end_matches(']')
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_host_is_taken_from_its_url() {
        assert_eq!(
            host_of("https://tessera.example.org:8443"),
            "tessera.example.org"
        );
        assert_eq!(host_of("https://127.0.0.1:8443/"), "127.0.0.1");
        assert_eq!(host_of("https://[::1]:8443"), "::1");
        assert_eq!(host_of("https://broker"), "broker");
    }

    #[test]
    fn a_token_file_follows_revocations_only_for_a_jwt_svid() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let token = |sub: &str| {
            let claims = serde_json::json!({ "sub": sub }).to_string();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
            format!("e30.{b64}.sig\n")
        };
        let path = dir.path().join("t");
        std::fs::write(&path, token("spiffe://example.org/w")).unwrap();
        assert!(follows_revocations(&Attest::TokenFile(path.clone())));
        std::fs::write(&path, token("repo:acme/app:ref:refs/heads/main")).unwrap();
        assert!(!follows_revocations(&Attest::TokenFile(path)));
    }

    #[tokio::test]
    async fn missing_attestation_material_is_named() {
        let e = attestor(&Attest::SvidFiles {
            cert: "/nonexistent/svid.pem".into(),
            key: "/nonexistent/key.pem".into(),
        })
        .await
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .contains("X509-SVID certificate /nonexistent/svid.pem"),
            "{e}"
        );
    }
}
