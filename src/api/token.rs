//! `POST /token`: RFC 8693 token exchange (`standards.md` §5). The subject token — a CI OIDC
//! token or a JWT-SVID — is the only authentication; `audience` is the destination and `scope`
//! the purpose. Errors are RFC 6749 §5.2 JSON, translated from domain errors here, once.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::attest::{AttestError, OidcError};
use crate::broker::{Broker, BrokerError};
use crate::ledger::{CredentialKind, LedgerError};
use crate::policy::PolicyError;
use crate::request::{CredentialRequest, RequestError};

/// The token-exchange grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token type URIs.
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// An RFC 6749 error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
}

impl OAuthError {
    fn bad(code: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            code,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        crate::metrics::METRICS.refused(self.code);
        let body = json!({"error": self.code, "error_description": self.description}).to_string();
        let mut response = (self.status, no_store_json(), body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn no_store_json() -> [(header::HeaderName, &'static str); 3] {
    [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

/// Maps a refused or failed exchange to its OAuth error.
pub fn oauth_error(e: &BrokerError) -> OAuthError {
    match e {
        BrokerError::Attest(AttestError::Oidc(OidcError::KeysUnavailable { issuer, reason })) => {
            tracing::warn!(%issuer, %reason, "issuer keys unavailable");
            let status = StatusCode::SERVICE_UNAVAILABLE;
            OAuthError {
                status,
                code: "temporarily_unavailable",
                description: format!(
                    "the keys of issuer `{issuer}` cannot be fetched now; retry shortly"
                ),
            }
        }
        BrokerError::Attest(e) => OAuthError::bad("invalid_request", format!("subject_token: {e}")),
        BrokerError::Policy(p) => match p {
            PolicyError::Purpose { .. } => OAuthError::bad("invalid_scope", p.to_string()),
            PolicyError::NoGrant { .. }
            | PolicyError::Destination { .. }
            | PolicyError::Kind { .. }
            | PolicyError::GrantExpired { .. } => OAuthError::bad("invalid_target", p.to_string()),
        },
        BrokerError::Ledger(LedgerError::Replay) => OAuthError::bad(
            "invalid_request",
            "subject_token was already exchanged for this audience and scope",
        ),
        BrokerError::Ledger(l) => {
            tracing::error!(error = %l, "token exchange could not be recorded");
            let status = StatusCode::SERVICE_UNAVAILABLE;
            OAuthError {
                status,
                code: "temporarily_unavailable",
                description: "retry shortly".into(),
            }
        }
        BrokerError::NotFound(_) => OAuthError::bad("invalid_request", e.to_string()),
        BrokerError::Mint(m) => {
            tracing::error!(error = %m, "token exchange signing failed");
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            OAuthError {
                status,
                code: "server_error",
                description: "signing failed".into(),
            }
        }
    }
}

fn request_error(e: &RequestError) -> OAuthError {
    match e {
        RequestError::Missing {
            field: "destination",
        } => OAuthError::bad("invalid_request", "audience is required"),
        RequestError::Missing { .. } => OAuthError::bad("invalid_request", "scope is required"),
        RequestError::TooLong {
            field: "destination",
        }
        | RequestError::BadCharacters {
            field: "destination",
        } => OAuthError::bad(
            "invalid_target",
            format!("audience: {e}").replace("destination ", ""),
        ),
        RequestError::TooLong { .. } | RequestError::BadCharacters { .. } => OAuthError::bad(
            "invalid_scope",
            format!("scope: {e}").replace("purpose ", ""),
        ),
    }
}

/// The parsed form: every parameter with all its values.
struct Form(Vec<(String, String)>);

impl Form {
    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Returns the single value of `name`, `None` if absent; fails if it repeats.
    fn one(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(OAuthError::bad(
                "invalid_request",
                format!("{name} may appear only once"),
            )),
        }
    }

    fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.one(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::bad("invalid_request", format!("{name} is required")))
    }
}

/// A checked exchange request.
struct Exchange<'a> {
    subject_token: &'a str,
    request: CredentialRequest,
    issued_token_type: &'static str,
}

/// Checks the parameters of an exchange; fails with the RFC 6749 error naming the first problem.
fn parse(form: &Form) -> Result<Exchange<'_>, OAuthError> {
    let grant_type = form.required("grant_type")?;
    if grant_type != GRANT_TYPE {
        return Err(OAuthError::bad(
            "unsupported_grant_type",
            format!("grant_type must be {GRANT_TYPE}"),
        ));
    }
    let subject_token = form.required("subject_token")?;
    let subject_type = form.required("subject_token_type")?;
    if subject_type != JWT && subject_type != ID_TOKEN {
        return Err(OAuthError::bad(
            "invalid_request",
            format!("subject_token_type must be {ID_TOKEN} or {JWT}"),
        ));
    }
    if !form.all("actor_token").is_empty() || !form.all("actor_token_type").is_empty() {
        return Err(OAuthError::bad(
            "invalid_request",
            "actor_token (delegation) is not supported",
        ));
    }
    let issued_token_type = match form.one("requested_token_type")? {
        None | Some(ACCESS_TOKEN) => ACCESS_TOKEN,
        Some(JWT) => JWT,
        Some(other) => {
            return Err(OAuthError::bad(
                "invalid_request",
                format!(
                    "requested_token_type `{other}` is not issued here; ask for {ACCESS_TOKEN} or {JWT}"
                ),
            ));
        }
    };
    let destination = destination(form)?;
    let scope = form.one("scope")?.unwrap_or_default();
    let mut purposes = scope.split(' ').filter(|s| !s.is_empty());
    let purpose = purposes.next().unwrap_or_default();
    if purposes.next().is_some() {
        return Err(OAuthError::bad(
            "invalid_scope",
            "scope must name exactly one purpose",
        ));
    }
    let request =
        CredentialRequest::parse(destination, purpose, 0).map_err(|e| request_error(&e))?;
    Ok(Exchange {
        subject_token,
        request,
        issued_token_type,
    })
}

/// The one destination: `audience`, else `resource`; both must agree when both are given.
fn destination(form: &Form) -> Result<&str, OAuthError> {
    let audiences = form.all("audience");
    let resources = form.all("resource");
    if audiences.len() > 1 || resources.len() > 1 {
        return Err(OAuthError::bad(
            "invalid_target",
            "name exactly one audience (one destination per token)",
        ));
    }
    for r in &resources {
        if !r.contains("://") || r.contains('#') {
            return Err(OAuthError::bad(
                "invalid_target",
                "resource must be an absolute URI without a fragment",
            ));
        }
    }
    match (audiences.first(), resources.first()) {
        (Some(a), Some(r)) if a != r => Err(OAuthError::bad(
            "invalid_target",
            "audience and resource name different destinations",
        )),
        (Some(a), _) => Ok(a),
        (None, Some(r)) => Ok(r),
        (None, None) => Ok(""),
    }
}

/// Handles `POST /token`.
pub async fn exchange(broker: Arc<Broker>, headers: HeaderMap, body: Bytes) -> Response {
    match exchange_inner(&broker, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn exchange_inner(
    broker: &Broker,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let _permit = broker.limits().request().map_err(|e| OAuthError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "temporarily_unavailable",
        description: e.to_string(),
    })?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !form_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::bad(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Form(form_urlencoded::parse(body).into_owned().collect());
    let x = parse(&form)?;
    let authorized = broker.authorize_token(x.subject_token, &x.request, CredentialKind::Jwt).await.map_err(|e| {
        tracing::info!(error = %e, destination = %x.request.destination, purpose = %x.request.purpose, "token exchange refused");
        broker.audit(
            "refused",
            json!({"reason": e.to_string(), "destination": x.request.destination, "purpose": x.request.purpose, "via": "token-exchange"}),
        );
        oauth_error(&e)
    })?;
    let minted = broker
        .issue_jwt(authorized, &x.request)
        .await
        .map_err(|e| oauth_error(&e))?;
    let body = json!({
        "access_token": minted.token,
        "issued_token_type": x.issued_token_type,
        "token_type": "Bearer",
        "expires_in": minted.expires_at - minted.issued_at,
    });
    Ok((StatusCode::OK, no_store_json(), body.to_string()).into_response())
}
