//! `GET /statuslists/<list>` (draft-ietf-oauth-status-list): the Status List Token as
//! `application/statuslist+jwt`, cacheable as long as its `ttl` says, readable from any origin
//! (the list is public and no credential is sent); 404 for an unknown or dropped list, 503 with
//! `Retry-After` while the list is being rebuilt after a start.

use std::fmt;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::clock::SharedClock;
use tessera_core::status_list::MEDIA_TYPE;

use crate::enforcement::{Enforcement, Fetched};
use crate::status_list::{Served, StatusLists};

/// Seconds a client should wait before asking again for a list being rebuilt.
const RETRY_AFTER_SECS: &str = "1";

/// What `GET /statuslists/<list>` uses.
#[derive(Clone)]
pub struct StatusListEndpoint {
    pub lists: Arc<StatusLists>,
    /// Counts the lists served, as evidence that relying parties could see revocations.
    pub enforcement: Arc<Enforcement>,
    pub clock: SharedClock,
}

impl fmt::Debug for StatusListEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusListEndpoint").finish_non_exhaustive()
    }
}

/// Answers a fetch of list `name` (no client identity needed). Rendering (compression and
/// signing) runs on the blocking pool.
pub async fn serve(endpoint: StatusListEndpoint, name: String) -> Response {
    let lists = Arc::clone(&endpoint.lists);
    let max_age = lists.config().ttl.as_secs().max(1);
    let served = tokio::task::spawn_blocking(move || lists.serve(&name)).await;
    match served {
        Ok(Ok(Served::List(jwt))) => {
            let now_ms = endpoint.clock.unix_millis();
            endpoint.enforcement.fetched(Fetched::StatusList, now_ms);
            let cache = format!("public, max-age={max_age}");
            let cache =
                HeaderValue::from_str(&cache).unwrap_or(HeaderValue::from_static("no-cache"));
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE)),
                    (header::CACHE_CONTROL, cache),
                    (
                        header::ACCESS_CONTROL_ALLOW_ORIGIN,
                        HeaderValue::from_static("*"),
                    ),
                ],
                jwt,
            )
                .into_response()
        }
        Ok(Ok(Served::NotFound)) => {
            (StatusCode::NOT_FOUND, "no such status list\n").into_response()
        }
        Ok(Ok(Served::NotReady)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
            "status lists are being rebuilt; retry shortly\n",
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "signing a status list failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "status list unavailable\n",
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a status list failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "status list unavailable\n",
            )
                .into_response()
        }
    }
}
