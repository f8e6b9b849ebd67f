//! The HTTPS endpoints: JWKS, discovery, health. Responses that never change are built once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;

use crate::broker::Broker;
use crate::tls::PeerInfo;

/// Shared state of the HTTP endpoints.
#[derive(Debug)]
pub struct HttpState {
    broker: Arc<Broker>,
    jwks: Bytes,
    discovery: Bytes,
    ready: Arc<AtomicBool>,
}

impl HttpState {
    /// Prepares the static documents for `broker` issuing as `issuer`. `ready` says whether the
    /// broker accepts work (false while starting and once shutdown begins).
    pub fn new(broker: Arc<Broker>, issuer: &str, ready: Arc<AtomicBool>) -> Self {
        let minter = broker.jwt_minter();
        let jwks = Bytes::from(minter.jwks().to_string());
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [minter.alg()],
            "token_endpoint_auth_signing_alg_values_supported": [minter.alg()],
            "tls_client_certificate_bound_access_tokens": true,
            "token_endpoint": format!("{issuer}/token"),
            "introspection_endpoint": format!("{issuer}/introspect"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "introspection_endpoint_auth_methods_supported": ["tls_client_auth"],
            "revocation_endpoint_auth_methods_supported": ["tls_client_auth"],
            "grant_types_supported": [super::token::GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["none"],
        });
        HttpState {
            broker,
            jwks,
            discovery: Bytes::from(discovery.to_string()),
            ready,
        }
    }
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
fn crl_response(broker: &Broker) -> Response {
    match broker.crl() {
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

/// A POST route for an authenticated form endpoint, given the broker and the connection's peer.
fn form_route<F, Fut>(state: &Arc<HttpState>, handler: F) -> axum::routing::MethodRouter
where
    F: Fn(Arc<Broker>, PeerInfo, axum::http::HeaderMap, Bytes) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    let broker = Arc::clone(&state.broker);
    axum::routing::post(
        move |axum::Extension(peer): axum::Extension<PeerInfo>,
              headers: axum::http::HeaderMap,
              body: Bytes| { handler(Arc::clone(&broker), peer, headers, body) },
    )
    .layer(axum::extract::DefaultBodyLimit::max(super::token::MAX_BODY))
}

/// Returns the router serving `/.well-known/*`, `/healthz` and `/readyz`.
pub fn router(state: Arc<HttpState>) -> Router {
    let jwks = Arc::clone(&state);
    let discovery = Arc::clone(&state);
    let discovery2 = Arc::clone(&state);
    let ready = Arc::clone(&state);
    let crl = Arc::clone(&state);
    let token = Arc::clone(&state.broker);
    Router::new()
        .route(
            "/.well-known/jwks.json",
            get(move || async move { json_response(&jwks.jwks, "public, max-age=300") }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { json_response(&discovery.discovery, "public, max-age=300") }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { json_response(&discovery2.discovery, "public, max-age=300") }),
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
            form_route(&state, super::introspect::introspect),
        )
        .route("/revoke", form_route(&state, super::introspect::revoke))
        .route(
            "/crl",
            get(move || async move { crl_response(&crl.broker) }),
        )
        .route(
            "/metrics",
            get(|| async {
                let body = crate::metrics::METRICS.encode();
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }),
        )
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.ready.load(Ordering::Acquire) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}
