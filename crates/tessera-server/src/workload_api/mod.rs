//! Trust bundles from the SPIFFE Workload API (`[[trust_domain]] workload_api`): a
//! [`WorkloadApi`] follows each endpoint the configuration names ([`follower`]), keeps the last
//! bundles each one sent, and tells its watchers when any changed. [`fill`] puts them into a
//! configuration's trust domains: start-up does so once the first bundles have come (bounded by
//! `[server] workload_api_timeout`), and every change and every reload goes through the
//! reloader, which makes a new settings generation of them (`crate::reload`).
//!
//! Foreign trust domains with `bundle_endpoint_url` rotate the same way: a [`fetcher`] per
//! bundle endpoint fetches its SPIFFE bundle document ([`bundle_doc`]) after each refresh hint
//! and keeps it as that trust domain's bundles; start-up waits for the first fetch and fails
//! naming the URL when it fails.

mod backoff;
pub mod bundle_doc;
mod fetcher;
mod follower;
pub mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use rustls::pki_types::CertificateDer;
use tessera_core::keys::BundleJwk;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::fetcher::FetcherParts;
use self::follower::{EndpointState, FollowerParts};
use self::metrics::WorkloadApiMetrics;
use crate::config::{BundleEndpoint, Config, WorkloadApiConfig, WorkloadApiEndpoint};

/// Why the Workload API bundles cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadApiError {
    #[error(
        "no trust bundles from the SPIFFE Workload API at {endpoint} within {waited:?} \
         (trust domains {domains}): {reason}; is the agent running and is its socket there? \
         ([server] workload_api_timeout sets how long to wait)"
    )]
    NoBundles {
        endpoint: String,
        domains: String,
        waited: Duration,
        reason: String,
    },
    #[error(
        "trust_domain `{domain}`: the SPIFFE Workload API at {endpoint} sends no bundle for it \
         (it sends: {sent})"
    )]
    NoBundleForDomain {
        domain: String,
        endpoint: String,
        sent: String,
    },
    #[error(
        "trust_domain `{domain}`: the first fetch of its SPIFFE bundle from {url} failed: \
         {reason}"
    )]
    BundleEndpoint {
        domain: String,
        url: String,
        reason: String,
    },
    #[error("trust_domain `{domain}`: JWT key `{kid}` from {endpoint} is not a JWK: {reason}")]
    JwtKey {
        domain: String,
        endpoint: String,
        kid: String,
        reason: String,
    },
}

/// A JWT-SVID key as a Workload API sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtKey {
    pub kid: String,
    pub jwk_json: Vec<u8>,
}

/// The bundles one endpoint sent last, by trust domain name; `None` until its first message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointBundles {
    pub x509: Option<BTreeMap<String, Vec<Vec<u8>>>>,
    pub jwt: Option<BTreeMap<String, Vec<JwtKey>>>,
}

impl EndpointBundles {
    /// Returns true once both streams have sent their first message.
    fn complete(&self) -> bool {
        self.x509.is_some() && self.jwt.is_some()
    }

    /// Returns the trust domains it holds a bundle of, comma-separated.
    fn domains(&self) -> String {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        names.extend(self.x509.iter().flat_map(|m| m.keys().map(String::as_str)));
        names.extend(self.jwt.iter().flat_map(|m| m.keys().map(String::as_str)));
        if names.is_empty() {
            return "none".to_owned();
        }
        names.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// One trust domain's bundles as a Workload API sent them (what a change is judged by).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainBundles {
    pub x509_roots: Vec<Vec<u8>>,
    pub jwt_keys: Vec<JwtKey>,
}

/// The bundles of each Workload-API trust domain of a configuration, by name.
pub type Snapshot = BTreeMap<String, DomainBundles>;

/// A followed endpoint.
struct Follower {
    state: watch::Receiver<EndpointState>,
    stop: CancellationToken,
}

/// A bundle endpoint fetched for a trust domain (its name, the endpoint).
type Fetched = (String, BundleEndpoint);

/// The Workload API endpoints followed and the bundle endpoints fetched, and the last bundles
/// each sent.
pub struct WorkloadApi {
    followers: Mutex<BTreeMap<WorkloadApiEndpoint, Follower>>,
    fetchers: Mutex<BTreeMap<Fetched, Follower>>,
    changes: Arc<watch::Sender<u64>>,
    metrics: WorkloadApiMetrics,
    /// Stops every follower (the server's shutdown).
    stop: CancellationToken,
}

impl std::fmt::Debug for WorkloadApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let followers = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("WorkloadApi")
            .field("endpoints", &followers.keys().collect::<Vec<_>>())
            .field("bundle_endpoints", &fetchers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WorkloadApi {
    /// Returns a set that follows nothing yet; its followers stop when `stop` is cancelled.
    pub fn new(metrics: WorkloadApiMetrics, stop: CancellationToken) -> Arc<Self> {
        Arc::new(WorkloadApi {
            followers: Mutex::new(BTreeMap::new()),
            fetchers: Mutex::new(BTreeMap::new()),
            changes: Arc::new(watch::Sender::new(0)),
            metrics,
            stop,
        })
    }

    /// Returns a receiver that is marked changed whenever any endpoint sends bundles.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Returns the metrics bundle updates are recorded in.
    pub fn metrics(&self) -> &WorkloadApiMetrics {
        &self.metrics
    }

    /// Follows every endpoint of `config` not followed yet, and waits (up to `config.timeout`
    /// each, concurrently) until each has sent its first X.509 and JWT bundles and each bundle
    /// endpoint has been fetched once. Fails naming the first endpoint that sent none in time,
    /// or the first bundle endpoint whose first fetch failed, and why.
    pub async fn follow(&self, config: &WorkloadApiConfig) -> Result<(), WorkloadApiError> {
        let fetches: Vec<_> = config
            .bundle_endpoints
            .iter()
            .map(|(domain, endpoint)| {
                let key = (domain.clone(), endpoint.clone());
                let state = self.start_fetching(&key, config.min_refresh);
                first_fetch(key, state, config.timeout)
            })
            .collect();
        let waits: Vec<_> = config
            .endpoints()
            .into_iter()
            .map(|endpoint| {
                let state = self.start(&endpoint);
                let domains = config.domains_of(&endpoint).join(", ");
                first_bundles(endpoint, state, domains, config.timeout)
            })
            .collect();
        let (waited, fetched) = futures::future::join(
            futures::future::join_all(waits),
            futures::future::join_all(fetches),
        )
        .await;
        for outcome in waited.into_iter().chain(fetched) {
            outcome?;
        }
        Ok(())
    }

    /// Stops following the endpoints that `config` no longer names.
    pub fn retain(&self, config: &WorkloadApiConfig) {
        let keep = config.endpoints();
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        followers.retain(|endpoint, follower| {
            let kept = keep.contains(endpoint);
            if !kept {
                tracing::info!(%endpoint, "no trust domain names this Workload API any more");
                follower.stop.cancel();
            }
            kept
        });
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        fetchers.retain(|(domain, endpoint), fetcher| {
            let kept = config.bundle_endpoints.get(domain) == Some(endpoint);
            if !kept {
                tracing::info!(url = %endpoint, %domain, "the bundle endpoint is not fetched any more");
                fetcher.stop.cancel();
            }
            kept
        });
    }

    /// Returns the state of the bundle endpoint `key`, fetching it first if it was not.
    fn start_fetching(
        &self,
        key: &Fetched,
        min_refresh: Duration,
    ) -> watch::Receiver<EndpointState> {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fetcher) = fetchers.get(key) {
            return fetcher.state.clone();
        }
        let (state, receiver) = watch::channel(EndpointState::default());
        let stop = self.stop.child_token();
        tokio::spawn(fetcher::follow(FetcherParts {
            domain: key.0.clone(),
            endpoint: key.1.clone(),
            min_refresh,
            state,
            changes: Arc::clone(&self.changes),
            metrics: self.metrics.clone(),
            stop: stop.clone(),
        }));
        fetchers.insert(
            key.clone(),
            Follower {
                state: receiver.clone(),
                stop,
            },
        );
        receiver
    }

    /// Returns the state of `endpoint`, following it first if it was not.
    fn start(&self, endpoint: &WorkloadApiEndpoint) -> watch::Receiver<EndpointState> {
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(follower) = followers.get(endpoint) {
            return follower.state.clone();
        }
        let (state, receiver) = watch::channel(EndpointState::default());
        let stop = self.stop.child_token();
        tokio::spawn(follower::follow(FollowerParts {
            endpoint: endpoint.clone(),
            state,
            changes: Arc::clone(&self.changes),
            metrics: self.metrics.clone(),
            stop: stop.clone(),
        }));
        followers.insert(
            endpoint.clone(),
            Follower {
                state: receiver.clone(),
                stop,
            },
        );
        receiver
    }

    /// Follows the Workload API endpoints of `config` (waiting for the first bundles of those
    /// not followed yet) and returns `config` with the bundles they sent last, and those
    /// bundles. Fails when an endpoint sends nothing in time, sends no bundle for one of the
    /// trust domains that name it, or sends a JWT key that is not a JWK.
    pub async fn configure(&self, config: &Config) -> Result<(Config, Snapshot), WorkloadApiError> {
        if config.workload_api.is_empty() {
            return Ok((config.clone(), Snapshot::new()));
        }
        self.follow(&config.workload_api).await?;
        let (snapshot, missing) = self.snapshot(&config.workload_api);
        if let Some(missing) = missing.into_iter().next() {
            return Err(missing);
        }
        Ok((fill(config, &snapshot)?, snapshot))
    }

    /// Returns the bundles of each trust domain of `config`, from its endpoint's last message or
    /// its bundle endpoint's last document, and the domains its endpoint sent no bundle for (or
    /// that is not followed).
    pub fn snapshot(&self, config: &WorkloadApiConfig) -> (Snapshot, Vec<WorkloadApiError>) {
        let followers = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut snapshot = Snapshot::new();
        let mut missing = Vec::new();
        for (domain, endpoint) in &config.domains {
            let bundles = followers
                .get(endpoint)
                .map(|f| f.state.borrow().bundles.clone())
                .unwrap_or_default();
            let roots = bundles.x509.as_ref().and_then(|m| m.get(domain)).cloned();
            let keys = bundles.jwt.as_ref().and_then(|m| m.get(domain)).cloned();
            if roots.is_none() && keys.is_none() {
                missing.push(WorkloadApiError::NoBundleForDomain {
                    domain: domain.clone(),
                    endpoint: endpoint.to_string(),
                    sent: bundles.domains(),
                });
            }
            snapshot.insert(
                domain.clone(),
                DomainBundles {
                    x509_roots: roots.unwrap_or_default(),
                    jwt_keys: keys.unwrap_or_default(),
                },
            );
        }
        let fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        for (domain, endpoint) in &config.bundle_endpoints {
            let key = (domain.clone(), endpoint.clone());
            let Some(bundles) = fetchers.get(&key).map(|f| f.state.borrow().bundles.clone()) else {
                missing.push(WorkloadApiError::BundleEndpoint {
                    domain: domain.clone(),
                    url: endpoint.url.clone(),
                    reason: "it is not fetched".to_owned(),
                });
                continue;
            };
            let roots = bundles.x509.and_then(|mut m| m.remove(domain));
            let keys = bundles.jwt.and_then(|mut m| m.remove(domain));
            snapshot.insert(
                domain.clone(),
                DomainBundles {
                    x509_roots: roots.unwrap_or_default(),
                    jwt_keys: keys.unwrap_or_default(),
                },
            );
        }
        (snapshot, missing)
    }
}

/// Returns `config` with the bundles its Workload-API trust domains have now, waiting for them
/// as start-up does, then lets the endpoints go (`tessera check`). Fails as
/// [`WorkloadApi::configure`].
pub async fn configure_once(config: &Config) -> Result<Config, WorkloadApiError> {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let metrics =
        WorkloadApiMetrics::register(&mut prometheus_client::registry::Registry::default());
    let workload_api = WorkloadApi::new(metrics, stop);
    Ok(workload_api.configure(config).await?.0)
}

/// Waits up to `timeout` until `state` holds both first messages. Fails naming the endpoint,
/// its trust domains and the last error when it does not.
async fn first_bundles(
    endpoint: WorkloadApiEndpoint,
    mut state: watch::Receiver<EndpointState>,
    domains: String,
    timeout: Duration,
) -> Result<(), WorkloadApiError> {
    let waited = tokio::time::timeout(timeout, state.wait_for(|s| s.bundles.complete()))
        .await
        .is_ok_and(|came| came.is_ok());
    if waited {
        return Ok(());
    }
    let now = state.borrow().clone();
    let reason = match (now.error, &now.bundles) {
        (Some(error), _) => error,
        (None, b) if b.x509.is_some() => "no JWT bundles came".to_owned(),
        (None, b) if b.jwt.is_some() => "no X.509 bundles came".to_owned(),
        (None, _) => "it did not answer".to_owned(),
    };
    Err(WorkloadApiError::NoBundles {
        endpoint: endpoint.to_string(),
        domains,
        waited: timeout,
        reason,
    })
}

/// Waits up to `timeout` until the bundle endpoint `key` has been fetched once, successfully
/// or not. Fails naming the trust domain, the URL and why when that fetch failed or did not end
/// in time.
async fn first_fetch(
    key: Fetched,
    mut state: watch::Receiver<EndpointState>,
    timeout: Duration,
) -> Result<(), WorkloadApiError> {
    let fetched = |s: &EndpointState| s.bundles.complete() || s.error.is_some();
    let waited = tokio::time::timeout(timeout, state.wait_for(fetched))
        .await
        .is_ok_and(|came| came.is_ok());
    let now = state.borrow().clone();
    if waited && now.bundles.complete() {
        return Ok(());
    }
    let reason = match now.error {
        Some(error) => error,
        None => format!("no answer within {timeout:?} ([server] workload_api_timeout)"),
    };
    let (domain, endpoint) = key;
    Err(WorkloadApiError::BundleEndpoint {
        domain,
        url: endpoint.url,
        reason,
    })
}

/// Returns `config` with the bundles of its Workload-API trust domains taken from `snapshot`
/// (a domain missing from it gets none: nothing of it is trusted). Fails when a JWT key is not
/// a JWK.
pub fn fill(config: &Config, snapshot: &Snapshot) -> Result<Config, WorkloadApiError> {
    let mut filled = config.clone();
    for domain in &mut filled.trust_domains {
        let name = domain.name.as_str();
        let Some(source) = config.workload_api.source_of(name) else {
            continue;
        };
        let bundles = snapshot.get(name).cloned().unwrap_or_default();
        domain.x509_roots = bundles
            .x509_roots
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        domain.jwt_keys = jwt_keys(name, &source, &bundles.jwt_keys)?;
    }
    Ok(filled)
}

/// Returns the JWT-SVID keys of `keys`: those whose `use` is `jwt-svid` or absent (the Workload
/// API leaves it out). Fails naming the key that is not a JWK.
fn jwt_keys(
    domain: &str,
    endpoint: &str,
    keys: &[JwtKey],
) -> Result<Vec<BundleJwk>, WorkloadApiError> {
    let mut out = Vec::new();
    for key in keys {
        let bad = |reason: String| WorkloadApiError::JwtKey {
            domain: domain.to_owned(),
            endpoint: endpoint.to_owned(),
            kid: key.kid.clone(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&key.jwk_json).map_err(|e| bad(e.to_string()))?;
        let usage = value.get("use").and_then(serde_json::Value::as_str);
        if usage.is_some_and(|u| u != "jwt-svid") {
            continue;
        }
        let jwk: Jwk = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        out.push(BundleJwk {
            kid: key.kid.clone(),
            jwk,
        });
    }
    Ok(out)
}
