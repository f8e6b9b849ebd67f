//! The HTTPS endpoints: JWKS and discovery, RFC 8693 `/token`, RFC 7662 `/introspect`, RFC
//! 7009 `/revoke`, the CRLs, the Token Status Lists, Prometheus metrics, and health. Each route
//! holds only the state it uses. The JWKS and discovery follow the key ring: a reload that
//! publishes a key shows at once.

use axum::body::Body;
use axum::http::Version;

use super::body::{read_limited, refuse_body};
use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;

use super::introspect::IntrospectEndpoint;
use super::status_list::StatusListEndpoint;
use super::token::TokenEndpoint;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::revoker::Revoker;
use crate::signing::JwtKeys;
use crate::tls::PeerInfo;

/// What the HTTP router serves.
pub struct HttpParts {
    pub token: TokenEndpoint,
    pub introspect: IntrospectEndpoint,
    /// Serves the CRL.
    pub revoker: Arc<Revoker>,
    /// Serves the Token Status Lists.
    pub status_lists: StatusListEndpoint,
    /// Publishes the JWKS and algorithms of the keys that sign or signed.
    pub jwt: Arc<JwtKeys>,
    /// `iss` of minted tokens; the base of every advertised URL.
    pub issuer: String,
    pub metrics: Arc<Metrics>,
    /// Whether the broker accepts work: started, not shutting down, ledger reachable.
    pub ready: Arc<Readiness>,
    /// The Shared Signals transmitter (`/.well-known/ssf-configuration`, `/ssf/*`).
    pub ssf: crate::ssf::Transmitter,
}

impl fmt::Debug for HttpParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpParts")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// How long relying parties may cache the JWKS and discovery. Shorter than the default
/// `[signing] publish_before` (10 min) on purpose: a key is published that long before it
/// signs, so a relying party that cached the JWKS has fetched it again, new key included, before
/// it meets a token of that key. Must say [`crate::config::JWKS_MAX_AGE`] (a test checks).
const JWKS_CACHE: &str = "public, max-age=300";

/// Returns the OIDC / OAuth discovery document of `issuer` signing with `algs`.
fn discovery(issuer: &str, algs: &[&str]) -> Bytes {
    let doc = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "tls_client_certificate_bound_access_tokens": true,
        "token_endpoint": format!("{issuer}/token"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint_auth_methods_supported": ["tls_client_auth"],
        "revocation_endpoint_auth_methods_supported": ["tls_client_auth"],
        "grant_types_supported": [super::token::GRANT_TYPE],
        "token_endpoint_auth_methods_supported": ["none"],
    });
    Bytes::from(doc.to_string())
}

fn json_response(body: &Bytes, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, cache),
        ],
        body.clone(),
    )
        .into_response()
}

/// `GET /crl` (`key_id` `None`): the active mint CA's DER CRL as `application/pkix-crl`, 404
/// without a mint CA; `GET /crl/<key id>`: the CRL of the mint CA with that key identifier (hex),
/// 404 unless it is configured or still has live certificates.
fn crl_response(revoker: &Revoker, key_id: Option<&str>) -> Response {
    match revoker.crl(key_id) {
        Some(Ok(der)) => (
            [
                (header::CONTENT_TYPE, "application/pkix-crl"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            der,
        )
            .into_response(),
        Some(Err(e)) => {
            tracing::error!(error = %e, "building the CRL failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "CRL unavailable\n").into_response()
        }
        None if key_id.is_none() => {
            (StatusCode::NOT_FOUND, "no mint CA is configured\n").into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            "no mint CA with this key identifier is configured or has live certificates\n",
        )
            .into_response(),
    }
}

/// A POST route for an authenticated form endpoint, given the endpoint and the connection's
/// peer.
fn form_route<F, Fut>(endpoint: &Arc<IntrospectEndpoint>, handler: F) -> axum::routing::MethodRouter
where
    F: Fn(Arc<IntrospectEndpoint>, PeerInfo, axum::http::HeaderMap, Bytes) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    let endpoint = Arc::clone(endpoint);
    axum::routing::post(
        move |axum::Extension(peer): axum::Extension<PeerInfo>,
              version: Version,
              headers: axum::http::HeaderMap,
              body: Body| {
            let endpoint = Arc::clone(&endpoint);
            let handler = handler.clone();
            async move {
                match read_limited(body, super::token::MAX_BODY).await {
                    Ok(body) => handler(endpoint, peer, headers, body).await,
                    Err(e) => refuse_body(e, version, &endpoint.metrics),
                }
            }
        },
    )
}

/// Returns the router of every HTTPS endpoint.
pub fn router(parts: HttpParts) -> Router {
    let jwks = Arc::clone(&parts.jwt);
    let keys = Arc::clone(&parts.jwt);
    let issuer: Arc<str> = Arc::from(parts.issuer.as_str());
    let serve_discovery = move || {
        let doc = discovery(&issuer, &keys.published().algs);
        async move { json_response(&doc, JWKS_CACHE) }
    };
    let token = Arc::new(parts.token);
    let introspect = Arc::new(parts.introspect);
    let revoker = parts.revoker;
    let status_lists = parts.status_lists;
    let metrics = parts.metrics;
    let ready = parts.ready;
    let ssf = parts.ssf.routes();
    Router::new()
        .route(
            "/.well-known/jwks.json",
            get(move || {
                let published = jwks.published();
                async move { json_response(&published.jwks, JWKS_CACHE) }
            }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(serve_discovery.clone()),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(serve_discovery),
        )
        .route(
            "/token",
            axum::routing::post(
                move |version: Version, headers: axum::http::HeaderMap, body: Body| {
                    let token = Arc::clone(&token);
                    async move {
                        match read_limited(body, super::token::MAX_BODY).await {
                            Ok(body) => super::token::exchange(token, headers, body).await,
                            Err(e) => refuse_body(e, version, &token.metrics),
                        }
                    }
                },
            ),
        )
        .route(
            "/introspect",
            form_route(&introspect, super::introspect::introspect),
        )
        .route(
            "/revoke",
            form_route(&introspect, super::introspect::revoke),
        )
        .route("/crl", {
            let revoker = Arc::clone(&revoker);
            get(move || async move { crl_response(&revoker, None) })
        })
        .route(
            "/crl/{key_id}",
            get(
                move |axum::extract::Path(key_id): axum::extract::Path<String>| async move {
                    crl_response(&revoker, Some(&key_id))
                },
            ),
        )
        .route(
            "/statuslists/{list}",
            get(
                move |axum::extract::Path(list): axum::extract::Path<String>| {
                    super::status_list::serve(status_lists.clone(), list)
                },
            ),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .merge(ssf)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_jwks_cache_time_is_the_one_publish_before_is_checked_against() {
        let max_age = crate::config::JWKS_MAX_AGE.as_secs();
        assert_eq!(super::JWKS_CACHE, format!("public, max-age={max_age}"));
    }
}
