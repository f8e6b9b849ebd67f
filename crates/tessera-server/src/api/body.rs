//! Reading a form body under a size limit so that a client that sends too much still gets an
//! answer. Refusing as soon as the limit is passed leaves the rest of the body unread: HTTP/1.1
//! then closes the connection under a client that is still sending (it sees a reset, not the
//! answer) and HTTP/2 resets the stream. So the rest is read and dropped, up to
//! [`DRAIN_LIMIT`], and only then is the 413 sent (with `Connection: close` on HTTP/1.1).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::oauth::render;
use crate::metrics::Metrics;
use crate::refusal::{OAuthCode, Refusal};

/// The most a refused body is read (and dropped) before the answer: 1 MiB. Past it the
/// connection is closed without reading more (the client may then see a reset).
pub const DRAIN_LIMIT: usize = 1 << 20;

/// A body that was larger than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: usize,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge(TooLarge),
    /// The client stopped sending half-way (nobody reads the answer).
    Broken,
}

/// Returns the body if it is at most `limit` bytes; otherwise reads the rest (up to
/// [`DRAIN_LIMIT`]) and drops it, and fails with `TooLarge`. Fails with `Broken` when the body
/// cannot be read.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut kept = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge(TooLarge { limit }));
    }
    Ok(kept.freeze())
}

/// Returns the answer to a body that could not be read, an OAuth `invalid_request` error
/// (observed in `metrics`): 413 for one too large, 400 for one cut short; with
/// `Connection: close` on HTTP/1.1.
pub fn refuse_body(error: BodyError, version: Version, metrics: &Metrics) -> Response {
    let (message, status) = match error {
        BodyError::TooLarge(TooLarge { limit }) => (
            format!("the request body is larger than {limit} bytes"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        BodyError::Broken => (
            "the request body could not be read".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
    };
    let mut response = render(
        Refusal::invalid(OAuthCode::InvalidRequest, message),
        metrics,
        false,
    );
    *response.status_mut() = status;
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
