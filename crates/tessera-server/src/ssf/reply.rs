//! Renders a [`Refusal`] of the Shared Signals endpoints: JSON `{error, error_description}` with
//! the HTTP status SSF 1.0 §8 names — 400 invalid, 401 unauthenticated, 403 not allowed, 404
//! no such stream (for this receiver), 429 over a limit (too many streams, verification asked
//! too often), 503 (with `Retry-After`) when the ledger is unavailable, 500 otherwise.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::metrics::Metrics;
use crate::refusal::{Class, Refusal};

/// Returns the HTTP status of a refusal class on the Shared Signals endpoints.
pub fn http_status(class: Class) -> StatusCode {
    match class {
        Class::Invalid | Class::OutOfRange => StatusCode::BAD_REQUEST,
        Class::Unauthenticated => StatusCode::UNAUTHORIZED,
        Class::Denied => StatusCode::FORBIDDEN,
        Class::NotFound => StatusCode::NOT_FOUND,
        Class::Overloaded | Class::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Class::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Class::Precondition => StatusCode::CONFLICT,
        Class::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Observes `refusal` (log + metric) and returns the response to send.
pub fn render(refusal: Refusal, metrics: &Metrics) -> Response {
    refusal.observe(metrics);
    let status = http_status(refusal.class);
    let body = json!({"error": refusal.class.as_str(), "error_description": refusal.message});
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response();
    match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        StatusCode::UNAUTHORIZED => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    response
}
