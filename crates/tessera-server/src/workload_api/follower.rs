//! Follows one Workload API endpoint: dials it with the `spiffe` crate's client, opens the
//! `FetchX509Bundles` and `FetchJWTBundles` streams and records each message as that endpoint's
//! bundles (every message carries the full state). When the endpoint goes away the last bundles
//! stay, and it is dialled again with backoff (logged, counted) until it answers or the follower
//! is stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use spiffe::{JwtBundleSet, WorkloadApiClient, X509BundleSet};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::metrics::WorkloadApiMetrics;
use super::{EndpointBundles, JwtKey};
use crate::config::WorkloadApiEndpoint;

/// First wait before dialling a lost endpoint again; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two dials of a lost endpoint.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What is known of one endpoint: its last bundles, and why it was last lost (if it was).
#[derive(Clone, Debug, Default)]
pub(super) struct EndpointState {
    pub bundles: EndpointBundles,
    pub error: Option<String>,
}

/// Why a session with the endpoint ended.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("{0}")]
    Api(#[from] spiffe::WorkloadApiError),
    #[error("the {0} stream ended")]
    Ended(&'static str),
}

/// What a follower needs.
pub(super) struct FollowerParts {
    pub endpoint: WorkloadApiEndpoint,
    /// This endpoint's state, read by the set of followers.
    pub state: watch::Sender<EndpointState>,
    /// Bumped on every message of any endpoint.
    pub changes: Arc<watch::Sender<u64>>,
    pub metrics: WorkloadApiMetrics,
    pub stop: CancellationToken,
}

/// Follows `p.endpoint` until `p.stop` is cancelled.
pub(super) async fn follow(p: FollowerParts) {
    let address = p.endpoint.address().to_owned();
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        let lost = tokio::select! {
            () = p.stop.cancelled() => break,
            lost = session(&p, &mut backoff) => lost,
        };
        p.metrics.connected(&address, false);
        p.metrics.reconnect(&address);
        let delay = backoff.next();
        tracing::warn!(
            endpoint = %address, error = %lost, retry_in = ?delay,
            "Workload API unreachable: the last trust bundles it sent stay in force"
        );
        p.state.send_modify(|s| s.error = Some(lost.to_string()));
        tokio::select! {
            () = p.stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    p.metrics.connected(&address, false);
}

/// Dials the endpoint and records what its two bundle streams send, until one of them fails
/// or ends; returns why.
async fn session(p: &FollowerParts, backoff: &mut Backoff) -> Lost {
    let opened = async {
        let client = WorkloadApiClient::connect(p.endpoint.endpoint().clone()).await?;
        let x509 = client.stream_x509_bundles().await?;
        let jwt = client.stream_jwt_bundles().await?;
        Ok::<_, Lost>((x509, jwt))
    };
    let (mut x509, mut jwt) = match opened.await {
        Ok(streams) => streams,
        Err(lost) => return lost,
    };
    p.metrics.connected(p.endpoint.address(), true);
    tracing::info!(endpoint = %p.endpoint, "following trust bundles from the Workload API");
    loop {
        tokio::select! {
            next = x509.next() => match next {
                Some(Ok(set)) => {
                    let roots = x509_roots(&set);
                    record(p, |b| b.x509 = Some(roots));
                    backoff.reset();
                }
                Some(Err(e)) => skipped(p, "X.509", &e),
                None => return Lost::Ended("X.509 bundle"),
            },
            next = jwt.next() => match next {
                Some(Ok(set)) => {
                    let keys = jwt_keys(&set);
                    record(p, |b| b.jwt = Some(keys));
                    backoff.reset();
                }
                Some(Err(e)) => skipped(p, "JWT", &e),
                None => return Lost::Ended("JWT bundle"),
            },
        }
    }
}

/// Applies `change` to the endpoint's bundles and tells whoever waits for changes.
fn record(p: &FollowerParts, change: impl FnOnce(&mut EndpointBundles)) {
    p.state.send_modify(|s| {
        change(&mut s.bundles);
        s.error = None;
    });
    p.changes.send_modify(|n| *n = n.wrapping_add(1));
}

/// Logs a message that could not be read; the bundles before it stay (a failed stream ends
/// right after, and is dialled again).
fn skipped(p: &FollowerParts, kind: &str, error: &spiffe::WorkloadApiError) {
    tracing::warn!(
        endpoint = %p.endpoint, %error,
        "a {kind} bundle message of the Workload API was not usable; the last bundles stay"
    );
    p.state
        .send_modify(|s| s.error = Some(format!("{kind} bundles: {error}")));
}

/// Returns the DER roots of each trust domain of `set`, by name.
fn x509_roots(set: &X509BundleSet) -> BTreeMap<String, Vec<Vec<u8>>> {
    set.iter()
        .map(|(td, bundle)| {
            let roots = bundle
                .authorities()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect();
            (td.to_string(), roots)
        })
        .collect()
}

/// Returns the JWT keys of each trust domain of `set`, by name, sorted by `kid`.
fn jwt_keys(set: &JwtBundleSet) -> BTreeMap<String, Vec<JwtKey>> {
    set.iter()
        .map(|(td, bundle)| {
            let mut keys: Vec<JwtKey> = bundle
                .jwt_authorities()
                .map(|a| JwtKey {
                    kid: a.key_id().to_owned(),
                    jwk_json: a.jwk_json().to_vec(),
                })
                .collect();
            keys.sort_by(|a, b| a.kid.cmp(&b.kid));
            (td.to_string(), keys)
        })
        .collect()
}
