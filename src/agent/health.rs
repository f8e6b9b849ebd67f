//! The agent's plain-HTTP status listener (meant for localhost or a pod network): `GET /healthz`
//! is 200 while every credential is written and unexpired, else 503, with each credential's
//! status as JSON; `GET /metrics` is the Prometheus text.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::status::Status;

/// Binds `addr`; returns the bound address and the task serving it. Fails when `addr` cannot be
/// bound.
pub async fn serve(
    addr: SocketAddr,
    status: Status,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(status);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "agent status listener stopped");
        }
    });
    Ok((bound, task))
}

async fn healthz(State(status): State<Status>) -> Response {
    let (healthy, credentials) = status.health();
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "healthy": healthy, "credentials": credentials });
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(status): State<Status>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        status.metrics(),
    )
        .into_response()
}
