//! `[[trust_domain]] workload_api`: trust domains whose X.509 and JWT bundles come from a SPIFFE
//! Workload API (a SPIRE agent's socket) instead of files, and `[server] workload_api_timeout`.
//!
//! The rule: `workload_api = "unix:///path/agent.sock"` (or `tcp://IP:port`) names the endpoint;
//! `workload_api = "env"` takes it from `SPIFFE_ENDPOINT_SOCKET` when the file is read. A trust
//! domain with `workload_api` takes both of its bundles from there, so `x509_bundle` and
//! `jwt_bundle` may not be set beside it. Federated trust domains name the same endpoint: each
//! configured domain takes the bundle the endpoint sends under its name. Trust domains with
//! `bundle_endpoint_url` ([`super::bundle_endpoint`]) are listed here too: their bundles rotate
//! the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use spiffe::transport::Endpoint;

use super::bundle_endpoint::BundleEndpoint;
use super::{Checker, ConfigError};

/// The variable `workload_api = "env"` reads (SPIFFE Workload Endpoint §4).
pub const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";
/// `[server] workload_api_timeout` when not set: how long start-up waits for the first bundles.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Workload API endpoint the broker dials. Two are the same when their addresses are.
#[derive(Clone)]
pub struct WorkloadApiEndpoint {
    /// `unix://<path>` or `tcp://<ip>:<port>`, normalized.
    address: String,
    endpoint: Endpoint,
}

impl WorkloadApiEndpoint {
    /// Parses `unix:///path`, `unix:/path`, `tcp://IP:port` or `tcp:IP:port`. Fails with why
    /// the text is not a Workload API endpoint.
    pub fn parse(text: &str) -> Result<Self, String> {
        let endpoint = Endpoint::parse(text).map_err(|e| e.to_string())?;
        let address = match &endpoint {
            Endpoint::Unix(path) => format!("unix://{}", path.display()),
            Endpoint::Tcp { host, port } => {
                format!("tcp://{}", std::net::SocketAddr::new(*host, *port))
            }
            _ => text.to_owned(),
        };
        Ok(WorkloadApiEndpoint { address, endpoint })
    }

    /// Returns the endpoint as the `spiffe` crate dials it.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Returns the normalized address (`unix:///run/spire/agent.sock`).
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl fmt::Display for WorkloadApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl fmt::Debug for WorkloadApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkloadApiEndpoint({})", self.address)
    }
}

impl PartialEq for WorkloadApiEndpoint {
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address
    }
}

impl Eq for WorkloadApiEndpoint {}

impl PartialOrd for WorkloadApiEndpoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WorkloadApiEndpoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.address.cmp(&other.address)
    }
}

/// The trust domains whose bundles rotate: those that come from a Workload API, and those
/// fetched from a SPIFFE bundle endpoint.
#[derive(Clone, Debug, Default)]
pub struct WorkloadApiConfig {
    /// The endpoint of each such trust domain, by trust domain name.
    pub domains: BTreeMap<String, WorkloadApiEndpoint>,
    /// The bundle endpoint of each foreign trust domain fetched from one, by trust domain name.
    pub bundle_endpoints: BTreeMap<String, BundleEndpoint>,
    /// How long start-up, and a reload that names a new endpoint, wait for its first bundles.
    pub timeout: Duration,
    /// The shortest wait between two fetches of a bundle endpoint, whatever its refresh hint.
    pub min_refresh: Duration,
}

impl WorkloadApiConfig {
    /// Returns the endpoints named, each once.
    pub fn endpoints(&self) -> BTreeSet<WorkloadApiEndpoint> {
        self.domains.values().cloned().collect()
    }

    /// Returns the trust domains that take their bundles from `endpoint`.
    pub fn domains_of(&self, endpoint: &WorkloadApiEndpoint) -> Vec<&str> {
        self.domains
            .iter()
            .filter(|(_, e)| *e == endpoint)
            .map(|(d, _)| d.as_str())
            .collect()
    }

    /// Returns true when no trust domain takes its bundles from a Workload API or a bundle
    /// endpoint.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.bundle_endpoints.is_empty()
    }

    /// Returns the name of where the bundles of `domain` come from (an endpoint address or a
    /// bundle endpoint URL), if they rotate.
    pub fn source_of(&self, domain: &str) -> Option<String> {
        self.domains
            .get(domain)
            .map(ToString::to_string)
            .or_else(|| self.bundle_endpoints.get(domain).map(|e| e.url.clone()))
    }
}

/// Checks `[[trust_domain]] workload_api` at `key` (`value` as written), reading variables with
/// `env`; returns the endpoint. Fails naming the key when the value is not an endpoint, or is
/// `env` and `SPIFFE_ENDPOINT_SOCKET` is unset or not an endpoint.
pub(super) fn endpoint(
    check: &Checker<'_>,
    key: &str,
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WorkloadApiEndpoint, ConfigError> {
    if value == "env" {
        let Some(text) = env(ENDPOINT_ENV).filter(|t| !t.trim().is_empty()) else {
            return Err(check.invalid(key, format!("`env` reads {ENDPOINT_ENV}, which is not set")));
        };
        return WorkloadApiEndpoint::parse(text.trim()).map_err(|e| {
            check.invalid(
                key,
                format!("{ENDPOINT_ENV}=`{text}` is not a Workload API endpoint: {e}"),
            )
        });
    }
    WorkloadApiEndpoint::parse(value).map_err(|e| {
        check.invalid(
            key,
            format!(
                "`{value}` is not a Workload API endpoint ({e}): write `unix:///path/to/agent.sock`, \
                 `tcp://IP:port`, or `env` for {ENDPOINT_ENV}"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn checked(value: &str, env: Option<&str>) -> Result<String, String> {
        let check = Checker {
            file: Path::new("t.toml"),
        };
        let env = |name: &str| {
            (name == ENDPOINT_ENV)
                .then(|| env.map(str::to_owned))
                .flatten()
        };
        endpoint(&check, "trust_domain[0].workload_api", value, &env)
            .map(|e| e.address().to_owned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_unix_socket_is_written_with_or_without_the_empty_authority() {
        assert_eq!(
            checked("unix:///run/spire/agent.sock", None).unwrap(),
            "unix:///run/spire/agent.sock"
        );
        assert_eq!(
            checked("unix:/run/spire/agent.sock", None).unwrap(),
            "unix:///run/spire/agent.sock"
        );
        assert_eq!(
            checked("tcp://127.0.0.1:8081", None).unwrap(),
            "tcp://127.0.0.1:8081"
        );
    }

    #[test]
    fn env_reads_spiffe_endpoint_socket_and_names_it_when_unset() {
        assert_eq!(
            checked("env", Some("unix:///tmp/agent.sock")).unwrap(),
            "unix:///tmp/agent.sock"
        );
        let unset = checked("env", None).unwrap_err();
        assert!(unset.contains("trust_domain[0].workload_api"), "{unset}");
        assert!(unset.contains("SPIFFE_ENDPOINT_SOCKET"), "{unset}");
        let bad = checked("env", Some("http://agent")).unwrap_err();
        assert!(
            bad.contains("SPIFFE_ENDPOINT_SOCKET=`http://agent`"),
            "{bad}"
        );
    }

    #[test]
    fn a_relative_socket_or_another_scheme_is_refused_naming_the_key() {
        for value in [
            "unix:agent.sock",
            "https://agent",
            "/run/agent.sock",
            "tcp://agent:1",
        ] {
            let refused = checked(value, None).unwrap_err();
            assert!(refused.contains("t.toml"), "{refused}");
            assert!(
                refused.contains("trust_domain[0].workload_api"),
                "{refused}"
            );
            assert!(refused.contains("unix:///path/to/agent.sock"), "{refused}");
        }
    }
}
