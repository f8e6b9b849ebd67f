//! Renders a [`Refusal`] as an RFC 6749 §5.2 error: JSON `{error, error_description}` with
//! `Cache-Control: no-store`, and `Retry-After` on a 503 or 429. The class picks the HTTP status, the
//! refusal's OAuth code the `error`. Logging and counting happen in [`Refusal::observe`], here,
//! once per refused request.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::metrics::Metrics;
use crate::refusal::{Class, OAuthCode, Refusal};

/// Returns the HTTP status of a refusal class. `Unauthenticated` is 401 on endpoints where the
/// caller authenticates as a client (introspection, RFC 7009), and 400 on `/token`, where the
/// subject token is a request parameter (RFC 8693 §2.2.2).
pub fn http_status(class: Class, client_auth: bool) -> StatusCode {
    match class {
        Class::Unauthenticated if client_auth => StatusCode::UNAUTHORIZED,
        Class::Invalid
        | Class::Unauthenticated
        | Class::Denied
        | Class::NotFound
        | Class::OutOfRange => StatusCode::BAD_REQUEST,
        Class::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Class::Overloaded | Class::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Class::Precondition => StatusCode::CONFLICT,
        Class::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Observes `refusal` (log + metric) and returns the OAuth error response to send.
/// `client_auth` says whether the endpoint authenticates its caller as a client.
pub fn render(refusal: Refusal, metrics: &Metrics, client_auth: bool) -> Response {
    refusal.observe(metrics);
    let status = http_status(refusal.class, client_auth);
    let code = match refusal.class {
        Class::Unauthenticated if client_auth => OAuthCode::InvalidClient,
        _ => refusal.oauth,
    };
    let body = json!({"error": code.as_str(), "error_description": refusal.message});
    let mut response = (status, no_store_json(), body.to_string()).into_response();
    let retry_after = match (refusal.retry_after_secs, status) {
        (Some(secs), _) => Some(HeaderValue::from(secs)),
        (None, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) => {
            Some(HeaderValue::from_static("1"))
        }
        (None, _) => None,
    };
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Headers of every OAuth JSON response.
pub fn no_store_json() -> [(header::HeaderName, &'static str); 3] {
    [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}
