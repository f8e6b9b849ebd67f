//! Follows one SPIFFE bundle endpoint (`https_web`): fetches the foreign trust domain's bundle
//! document over HTTPS ([`tessera_core::http_client::HttpsClient`]: Web PKI roots plus the
//! configured extra ones, no redirects, bounded size and time), records its roots and JWT keys
//! as that trust domain's bundles, and fetches it again after its `spiffe_refresh_hint` (five
//! minutes when absent; clamped to `[server] bundle_endpoint_min_refresh` ..
//! [`MAX_REFRESH`]). A failed fetch (unreachable, refused, or a document that is not a SPIFFE
//! bundle) leaves the last bundle, is logged and counted, and is retried with backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::http_client::HttpsClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::bundle_doc::{self, BundleDoc};
use super::follower::EndpointState;
use super::metrics::WorkloadApiMetrics;
use crate::config::BundleEndpoint;

/// The wait before the next fetch when the document has no refresh hint (SPIFFE Trust Domain
/// and Bundle §4.1.2: about five minutes).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The longest wait before the next fetch, whatever the hint says.
pub const MAX_REFRESH: Duration = Duration::from_secs(86_400);
/// First wait before fetching again after a failure; it doubles up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts after failures.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// What a fetcher needs.
pub(super) struct FetcherParts {
    /// The trust domain the endpoint serves the bundle of.
    pub domain: String,
    pub endpoint: BundleEndpoint,
    /// The floor under the refresh hint.
    pub min_refresh: Duration,
    /// This endpoint's state, read by the set of followers.
    pub state: watch::Sender<EndpointState>,
    /// Bumped on every fetched bundle.
    pub changes: Arc<watch::Sender<u64>>,
    pub metrics: WorkloadApiMetrics,
    pub stop: CancellationToken,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(#[from] tessera_core::http_client::HttpError),
    #[error("{0}")]
    Document(#[from] bundle_doc::BundleDocError),
}

/// Fetches `p.endpoint` until `p.stop` is cancelled.
pub(super) async fn follow(p: FetcherParts) {
    let url = p.endpoint.url.clone();
    let client = match HttpsClient::new(&p.endpoint.extra_roots) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(%url, error = %e, "the bundle endpoint cannot be fetched");
            p.state.send_modify(|s| s.error = Some(e.to_string()));
            return;
        }
    };
    let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
    loop {
        let wait = match fetch(&client, &url).await {
            Ok(doc) => {
                backoff.reset();
                let wait = refresh_after(doc.refresh_hint, p.min_refresh);
                tracing::debug!(%url, sequence = ?doc.sequence, next_in = ?wait, "bundle fetched");
                record(&p, doc);
                wait
            }
            Err(e) => {
                let wait = backoff.next();
                p.metrics.bundle_endpoint_failed(&url);
                tracing::warn!(
                    %url, trust_domain = %p.domain, error = %e, retry_in = ?wait,
                    "bundle endpoint fetch failed: the last bundle it served stays in force"
                );
                p.state.send_modify(|s| s.error = Some(e.to_string()));
                wait
            }
        };
        tokio::select! {
            () = p.stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// GETs `url` and parses the body; returns the bundle. Fails when the request fails or the
/// body is not a SPIFFE bundle.
async fn fetch(client: &HttpsClient, url: &str) -> Result<BundleDoc, FetchError> {
    let response = client.get_accept(url, "application/json").await?;
    Ok(bundle_doc::parse(&response.body)?)
}

/// Records `doc` as the bundles of the endpoint's trust domain and tells whoever waits for
/// changes.
fn record(p: &FetcherParts, doc: BundleDoc) {
    p.metrics.bundle_endpoint_fetched(&p.endpoint.url);
    p.state.send_modify(|s| {
        s.bundles.x509 = Some(BTreeMap::from([(p.domain.clone(), doc.x509_roots)]));
        s.bundles.jwt = Some(BTreeMap::from([(p.domain.clone(), doc.jwt_keys)]));
        s.error = None;
    });
    p.changes.send_modify(|n| *n = n.wrapping_add(1));
}

/// Returns the wait before the next fetch: `hint` ([`DEFAULT_REFRESH`] when absent), at least
/// `min` and at most [`MAX_REFRESH`].
fn refresh_after(hint: Option<Duration>, min: Duration) -> Duration {
    hint.unwrap_or(DEFAULT_REFRESH)
        .clamp(min.min(MAX_REFRESH), MAX_REFRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_hint_is_followed_within_bounds_and_defaults_to_five_minutes() {
        let min = Duration::from_secs(30);
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(refresh_after(secs(120), min), Duration::from_secs(120));
        assert_eq!(refresh_after(None, min), DEFAULT_REFRESH);
        assert_eq!(refresh_after(secs(1), min), min);
        assert_eq!(refresh_after(secs(0), min), min);
        assert_eq!(refresh_after(secs(10 * 86_400), min), MAX_REFRESH);
        assert_eq!(
            refresh_after(secs(1), Duration::from_secs(2 * 86_400)),
            MAX_REFRESH
        );
    }
}
