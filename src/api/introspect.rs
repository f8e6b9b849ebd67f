//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009) for tokens this broker minted.
//! Both need an authenticated caller: an X509-SVID client certificate or a JWT-SVID bearer.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::token::OAuthError;
use crate::attest::{Evidence, Principal};
use crate::broker::{Broker, RevokeParams};
use crate::ledger::{CredentialRecord, Selector, Status};
use crate::spiffe_id::SpiffeId;
use crate::tls::PeerInfo;

fn json(status: StatusCode, body: Value) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (status, headers, body.to_string()).into_response()
}

fn error(status: StatusCode, code: &'static str, description: &str) -> OAuthError {
    OAuthError {
        status,
        code,
        description: description.to_owned(),
    }
}

/// Attests the caller of an HTTP request; returns its SPIFFE ID, or the 401 to send.
async fn caller(
    broker: &Broker,
    peer: &PeerInfo,
    headers: &HeaderMap,
) -> Result<SpiffeId, OAuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let evidence = Evidence {
        authorization,
        peer: peer.x509.as_deref(),
    };
    match broker
        .attestor()
        .attest(evidence, broker.clock().unix_seconds())
        .await
    {
        Ok(attestation) => match attestation.principal {
            Principal::Spiffe(id) => Ok(id),
            Principal::Ci(_) => Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "authenticate with an X509-SVID or a JWT-SVID",
            )),
        },
        Err(e) => Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            &e.to_string(),
        )),
    }
}

/// Returns the `token` form parameter, or the 400 to send.
fn token_param(body: &[u8]) -> Result<String, OAuthError> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "token is required",
            )
        })
}

/// Returns the ledger record of a token this broker minted and that verifies, if any.
async fn minted_record(
    broker: &Broker,
    token: &str,
) -> Option<(serde_json::Map<String, Value>, CredentialRecord)> {
    let claims = broker
        .jwt_minter()
        .verify(token, broker.clock().unix_seconds())?;
    let jti = claims.get("jti")?.as_str()?.to_owned();
    let record = broker.ledger().get(&jti).await.ok()??;
    Some((claims, record))
}

/// Handles `POST /introspect`: active tokens get their claims; revoked, expired, unknown or
/// foreign tokens get exactly `{"active": false}`.
pub async fn introspect(
    broker: Arc<Broker>,
    peer: PeerInfo,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Err(e) = caller(&broker, &peer, &headers).await {
        return e.into_response();
    }
    let token = match token_param(&body) {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    match minted_record(&broker, &token).await {
        Some((mut claims, record)) if broker.status_of(&record) == Status::Live => {
            claims.insert("active".into(), Value::Bool(true));
            claims.insert("token_type".into(), Value::String("Bearer".into()));
            json(StatusCode::OK, Value::Object(claims))
        }
        _ => json(StatusCode::OK, json!({"active": false})),
    }
}

/// Handles `POST /revoke`: the token's own workload or an admin revokes it at once; unknown and
/// invalid tokens get 200 too.
pub async fn revoke(
    broker: Arc<Broker>,
    peer: PeerInfo,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let who = match caller(&broker, &peer, &headers).await {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let token = match token_param(&body) {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    let Some((_, record)) = minted_record(&broker, &token).await else {
        return StatusCode::OK.into_response();
    };
    if broker.status_of(&record) != Status::Live {
        return StatusCode::OK.into_response(); // already revoked or expired: nothing to do
    }
    if record.workload != who.as_str() && !broker.is_admin(&who) {
        return error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "only the token's workload or an admin may revoke it",
        )
        .into_response();
    }
    let params = RevokeParams {
        selector: Selector::CredentialId,
        value: record.credential_id,
        reason: "revoked by its holder (RFC 7009)".into(),
        revoked_by: who.to_string(),
    };
    match broker.revoke(params).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "RFC 7009 revoke failed");
            // OAuthError adds Retry-After to a 503.
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "retry shortly",
            )
            .into_response()
        }
    }
}
