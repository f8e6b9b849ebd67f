//! `agent.toml`: what `tessera agent` reads — the broker, how the agent attests, the credentials
//! it keeps fresh and where it writes them. Parsed into checked types; every problem names its
//! key. Every key is in `agent.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tessera_core::domain::CredentialKind;
use tessera_core::request::CredentialRequest;

/// Why the agent's configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    #[error("{}: `{key}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAgent {
    broker: FileBroker,
    attest: FileAttest,
    health: Option<FileHealth>,
    #[serde(default)]
    credential: Vec<FileCredential>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBroker {
    grpc: String,
    ca: PathBuf,
    server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAttest {
    x509_svid_cert: Option<PathBuf>,
    x509_svid_key: Option<PathBuf>,
    workload_api: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealth {
    addr: SocketAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredential {
    name: Option<String>,
    kind: String,
    destination: String,
    purpose: String,
    ttl: Option<String>,
    file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    bundle_file: Option<PathBuf>,
    command: Option<Vec<String>>,
    signal: Option<String>,
    pid_file: Option<PathBuf>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub broker: Broker,
    pub attest: Attest,
    /// Where `/healthz` and `/metrics` are served, if anywhere.
    pub health: Option<SocketAddr>,
    pub credentials: Vec<CredentialSpec>,
}

/// How the agent reaches the broker's gRPC listener.
#[derive(Debug, Clone)]
pub struct Broker {
    pub grpc: String,
    pub ca: PathBuf,
    pub server_name: Option<String>,
}

/// What the agent proves itself with; read again at every renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attest {
    /// An X509-SVID and its key in PEM files (mTLS).
    SvidFiles { cert: PathBuf, key: PathBuf },
    /// The SPIFFE Workload API at this endpoint (`unix:///…`).
    WorkloadApi(String),
    /// A JWT-SVID or CI / Kubernetes token in a file (a bearer).
    TokenFile(PathBuf),
}

/// One credential the agent keeps fresh.
#[derive(Debug, Clone)]
pub struct CredentialSpec {
    /// For logs and the `credential` metric label.
    pub name: String,
    pub request: CredentialRequest,
    pub output: Output,
    pub after_renewal: AfterRenewal,
}

/// Where a credential is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The compact JWT, alone in the file.
    Jwt { file: PathBuf },
    /// The certificate chain, the key (made here, never sent) and the trust bundle, in PEM.
    X509 {
        cert: PathBuf,
        key: PathBuf,
        bundle: Option<PathBuf>,
    },
}

/// What is done after each renewal is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AfterRenewal {
    /// A program and its arguments, run without a shell.
    pub command: Option<Vec<String>>,
    /// A signal sent to the process whose pid is in the file.
    pub signal: Option<(Signal, PathBuf)>,
}

/// The signals a renewal may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Usr1,
    Usr2,
}

impl std::str::FromStr for Signal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim_start_matches("SIG") {
            "HUP" => Ok(Signal::Hup),
            "USR1" => Ok(Signal::Usr1),
            "USR2" => Ok(Signal::Usr2),
            _ => Err(format!("`{s}` is not one of SIGHUP, SIGUSR1, SIGUSR2")),
        }
    }
}

/// The endpoint `SPIFFE_ENDPOINT_SOCKET` names, used when `workload_api = "env"`.
pub const SPIFFE_ENDPOINT_SOCKET: &str = "SPIFFE_ENDPOINT_SOCKET";

impl AgentConfig {
    /// Reads and checks `path`. Fails with the first problem, naming the file and key.
    pub fn load(path: &Path) -> Result<Self, AgentConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, std::env::var(SPIFFE_ENDPOINT_SOCKET).ok())
    }

    /// Checks `text`, the file at `path`; `env_socket` is `SPIFFE_ENDPOINT_SOCKET`. Relative
    /// paths are taken from the file's folder.
    pub fn parse(
        path: &Path,
        text: &str,
        env_socket: Option<String>,
    ) -> Result<Self, AgentConfigError> {
        let file: FileAgent = toml::from_str(text).map_err(|e| AgentConfigError::Syntax {
            file: path.to_owned(),
            message: e.to_string(),
        })?;
        let check = Check {
            file: path,
            base: path.parent().unwrap_or(Path::new(".")),
        };
        let credentials = file
            .credential
            .into_iter()
            .enumerate()
            .map(|(i, c)| check.credential(i, c))
            .collect::<Result<Vec<_>, _>>()?;
        if credentials.is_empty() {
            return Err(check.invalid("credential", "name at least one [[credential]]"));
        }
        let mut outputs: Vec<&PathBuf> = Vec::new();
        for spec in &credentials {
            for p in spec.output.files() {
                if outputs.contains(&p) {
                    return Err(
                        check.invalid("credential", format!("{} is written twice", p.display()))
                    );
                }
                outputs.push(p);
            }
        }
        Ok(AgentConfig {
            broker: Broker {
                grpc: file.broker.grpc,
                ca: check.path(&file.broker.ca),
                server_name: file.broker.server_name,
            },
            attest: check.attest(file.attest, env_socket)?,
            health: file.health.map(|h| h.addr),
            credentials,
        })
    }
}

impl Output {
    /// Returns the files this output writes.
    pub fn files(&self) -> Vec<&PathBuf> {
        match self {
            Output::Jwt { file } => vec![file],
            Output::X509 { cert, key, bundle } => [Some(cert), Some(key), bundle.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
        }
    }
}

struct Check<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Check<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> AgentConfigError {
        AgentConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }

    fn attest(
        &self,
        a: FileAttest,
        env_socket: Option<String>,
    ) -> Result<Attest, AgentConfigError> {
        let svid = match (a.x509_svid_cert, a.x509_svid_key) {
            (Some(cert), Some(key)) => Some(Attest::SvidFiles {
                cert: self.path(&cert),
                key: self.path(&key),
            }),
            (None, None) => None,
            _ => return Err(self.invalid("attest", "set both x509_svid_cert and x509_svid_key")),
        };
        let api = match a.workload_api.as_deref() {
            None => None,
            Some("env") => Some(Attest::WorkloadApi(env_socket.ok_or_else(|| {
                self.invalid(
                    "attest.workload_api",
                    "`env` but SPIFFE_ENDPOINT_SOCKET is not set",
                )
            })?)),
            Some(endpoint) if endpoint.starts_with("unix:") => {
                Some(Attest::WorkloadApi(endpoint.to_owned()))
            }
            Some(other) => {
                return Err(self.invalid(
                    "attest.workload_api",
                    format!("`{other}` is not `unix:///path` or `env`"),
                ));
            }
        };
        let token = a.token_file.map(|p| Attest::TokenFile(self.path(&p)));
        let mut chosen = [svid, api, token].into_iter().flatten();
        match (chosen.next(), chosen.next()) {
            (Some(one), None) => Ok(one),
            _ => Err(self.invalid(
                "attest",
                "set exactly one of x509_svid_cert + x509_svid_key, workload_api, token_file",
            )),
        }
    }

    fn credential(&self, i: usize, c: FileCredential) -> Result<CredentialSpec, AgentConfigError> {
        let key = |k: &str| format!("credential[{i}].{k}");
        let ttl = match &c.ttl {
            None => 0,
            Some(t) => tessera_server::config::parse_duration(t)
                .ok()
                .and_then(|d: Duration| u32::try_from(d.as_secs()).ok())
                .ok_or_else(|| {
                    self.invalid(&key("ttl"), format!("`{t}` is not a duration like 5m"))
                })?,
        };
        let request = CredentialRequest::parse(&c.destination, &c.purpose, ttl)
            .map_err(|e| self.invalid(&key("destination"), e.to_string()))?;
        let kind: CredentialKind = c
            .kind
            .parse()
            .map_err(|_| self.invalid(&key("kind"), format!("`{}` is not jwt or x509", c.kind)))?;
        let output = match kind {
            CredentialKind::Jwt => {
                if c.cert_file.is_some() || c.key_file.is_some() || c.bundle_file.is_some() {
                    return Err(self.invalid(&key("file"), "a jwt is written to `file` only"));
                }
                let file = c
                    .file
                    .ok_or_else(|| self.invalid(&key("file"), "required for a jwt"))?;
                Output::Jwt {
                    file: self.path(&file),
                }
            }
            CredentialKind::X509 => {
                if c.file.is_some() {
                    return Err(self.invalid(
                        &key("file"),
                        "an x509 is written to cert_file, key_file, bundle_file",
                    ));
                }
                let (Some(cert), Some(key_file)) = (c.cert_file, c.key_file) else {
                    return Err(self.invalid(
                        &key("cert_file"),
                        "cert_file and key_file are required for an x509",
                    ));
                };
                Output::X509 {
                    cert: self.path(&cert),
                    key: self.path(&key_file),
                    bundle: c.bundle_file.map(|b| self.path(&b)),
                }
            }
        };
        let signal = match (c.signal, c.pid_file) {
            (None, None) => None,
            (Some(s), Some(pid)) => Some((
                s.parse()
                    .map_err(|m: String| self.invalid(&key("signal"), m))?,
                self.path(&pid),
            )),
            _ => return Err(self.invalid(&key("signal"), "signal and pid_file go together")),
        };
        if c.command.as_ref().is_some_and(|argv| argv.is_empty()) {
            return Err(self.invalid(&key("command"), "name a program"));
        }
        Ok(CredentialSpec {
            name: c
                .name
                .unwrap_or_else(|| format!("{} {}", c.destination, c.purpose)),
            request,
            output,
            after_renewal: AfterRenewal {
                command: c.command,
                signal,
            },
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
