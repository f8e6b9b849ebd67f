//! The HTTPS endpoints: JWKS and discovery, RFC 8693 `/token`, RFC 7662 `/introspect`, RFC
//! 7009 `/revoke`, the CRL, the Token Status Lists, Prometheus metrics, and health. Each route holds only the state it
//! uses; responses that never change are built once.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;
use tessera_core::mint::JwtMinter;

use super::introspect::IntrospectEndpoint;
use super::status_list::StatusListEndpoint;
use super::token::TokenEndpoint;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::revoker::Revoker;
use crate::tls::PeerInfo;

/// What the HTTP router serves.
pub struct HttpParts {
    pub token: TokenEndpoint,
    pub introspect: IntrospectEndpoint,
    /// Serves the CRL.
    pub revoker: Arc<Revoker>,
    /// Serves the Token Status Lists.
    pub status_lists: StatusListEndpoint,
    /// Publishes its JWKS and algorithm.
    pub jwt: Arc<JwtMinter>,
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

/// Returns the OIDC / OAuth discovery document of `issuer` signing with `alg`.
fn discovery(issuer: &str, alg: &str) -> Bytes {
    let doc = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "token_endpoint_auth_signing_alg_values_supported": [alg],
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

/// `GET /crl`: the mint CA's DER CRL as `application/pkix-crl`; 404 without a mint CA.
fn crl_response(revoker: &Revoker) -> Response {
    match revoker.crl() {
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
        None => (StatusCode::NOT_FOUND, "no mint CA is configured\n").into_response(),
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
              headers: axum::http::HeaderMap,
              body: Bytes| { handler(Arc::clone(&endpoint), peer, headers, body) },
    )
    .layer(axum::extract::DefaultBodyLimit::max(super::token::MAX_BODY))
}

/// Returns the router of every HTTPS endpoint.
pub fn router(parts: HttpParts) -> Router {
    let jwks = Bytes::from(parts.jwt.jwks().to_string());
    let discovery = discovery(&parts.issuer, parts.jwt.alg());
    let discovery2 = discovery.clone();
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
            get(move || async move { json_response(&jwks, "public, max-age=300") }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { json_response(&discovery, "public, max-age=300") }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { json_response(&discovery2, "public, max-age=300") }),
        )
        .route(
            "/token",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                super::token::exchange(Arc::clone(&token), headers, body)
            })
            .layer(axum::extract::DefaultBodyLimit::max(super::token::MAX_BODY)),
        )
        .route(
            "/introspect",
            form_route(&introspect, super::introspect::introspect),
        )
        .route(
            "/revoke",
            form_route(&introspect, super::introspect::revoke),
        )
        .route("/crl", get(move || async move { crl_response(&revoker) }))
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
