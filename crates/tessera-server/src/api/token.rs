//! `POST /token`: RFC 8693 token exchange (`standards.md` §5). The subject token — a CI OIDC
//! token or a JWT-SVID — is the only authentication; `audience` is the destination and `scope`
//! the purpose. Errors are RFC 6749 §5.2 JSON, translated from domain errors here, once.

use std::fmt;
use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use tessera_core::domain::CredentialKind;
use tessera_core::request::{CredentialRequest, RequestError};

use super::form::Form;
use super::oauth::{no_store_json, render};
use crate::audit::{Audit, untrusted};
use crate::issuer::Issuer;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::refusal::{Class, OAuthCode, Refusal};

pub use tessera_core::exchange::{ACCESS_TOKEN, GRANT_TYPE, ID_TOKEN, JWT};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// What `POST /token` uses.
#[derive(Clone)]
pub struct TokenEndpoint {
    pub issuer: Arc<Issuer>,
    pub limits: Limits,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint").finish_non_exhaustive()
    }
}

fn bad(code: OAuthCode, description: impl Into<String>) -> Refusal {
    Refusal::invalid(code, description)
}

/// Names the exchange parameter (`audience`, `scope`) a request error is about.
fn request_error(e: &RequestError) -> Refusal {
    match e {
        RequestError::Missing {
            field: "destination",
        } => bad(OAuthCode::InvalidRequest, "audience is required"),
        RequestError::Missing { .. } => bad(OAuthCode::InvalidRequest, "scope is required"),
        RequestError::TooLong {
            field: "destination",
        }
        | RequestError::BadCharacters {
            field: "destination",
        } => bad(
            OAuthCode::InvalidTarget,
            format!("audience: {e}").replace("destination ", ""),
        ),
        RequestError::TooLong { .. } | RequestError::BadCharacters { .. } => bad(
            OAuthCode::InvalidScope,
            format!("scope: {e}").replace("purpose ", ""),
        ),
    }
}

/// Returns the single non-empty value of `name`; fails if it is absent, empty or repeated.
fn required<'f>(form: &'f Form<'_>, name: &'static str) -> Result<&'f str, Refusal> {
    form.one(name)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad(OAuthCode::InvalidRequest, format!("{name} is required")))
}

/// A checked exchange request.
pub(super) struct Exchange<'a> {
    subject_token: &'a str,
    request: CredentialRequest,
    issued_token_type: &'static str,
}

/// Checks the parameters of an exchange; fails with the RFC 6749 error naming the first problem.
pub(super) fn parse<'f>(form: &'f Form<'_>) -> Result<Exchange<'f>, Refusal> {
    let grant_type = required(form, "grant_type")?;
    if grant_type != GRANT_TYPE {
        return Err(bad(
            OAuthCode::UnsupportedGrantType,
            format!("grant_type must be {GRANT_TYPE}"),
        ));
    }
    let subject_token = required(form, "subject_token")?;
    let subject_type = required(form, "subject_token_type")?;
    if subject_type != JWT && subject_type != ID_TOKEN {
        return Err(bad(
            OAuthCode::InvalidRequest,
            format!("subject_token_type must be {ID_TOKEN} or {JWT}"),
        ));
    }
    if form.all("actor_token").next().is_some() || form.all("actor_token_type").next().is_some() {
        return Err(bad(
            OAuthCode::InvalidRequest,
            "actor_token (delegation) is not supported",
        ));
    }
    let issued_token_type = match form.one("requested_token_type")? {
        None | Some(ACCESS_TOKEN) => ACCESS_TOKEN,
        Some(JWT) => JWT,
        Some(other) => {
            return Err(bad(
                OAuthCode::InvalidRequest,
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
        return Err(bad(
            OAuthCode::InvalidScope,
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
fn destination<'f>(form: &'f Form<'_>) -> Result<&'f str, Refusal> {
    let audiences: Vec<&str> = form.all("audience").collect();
    let resources: Vec<&str> = form.all("resource").collect();
    if audiences.len() > 1 || resources.len() > 1 {
        return Err(bad(
            OAuthCode::InvalidTarget,
            "name exactly one audience (one destination per token)",
        ));
    }
    for r in &resources {
        if !r.contains("://") || r.contains('#') {
            return Err(bad(
                OAuthCode::InvalidTarget,
                "resource must be an absolute URI without a fragment",
            ));
        }
    }
    match (audiences.first(), resources.first()) {
        (Some(a), Some(r)) if a != r => Err(bad(
            OAuthCode::InvalidTarget,
            "audience and resource name different destinations",
        )),
        (Some(a), _) => Ok(a),
        (None, Some(r)) => Ok(r),
        (None, None) => Ok(""),
    }
}

/// Handles `POST /token`.
pub async fn exchange(endpoint: Arc<TokenEndpoint>, headers: HeaderMap, body: Bytes) -> Response {
    match exchange_inner(&endpoint, &headers, &body).await {
        Ok(response) => response,
        Err(refusal) => render(refusal, &endpoint.metrics, false),
    }
}

async fn exchange_inner(
    endpoint: &TokenEndpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let _permit = endpoint.limits.request()?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !form_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(bad(
            OAuthCode::InvalidRequest,
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Form::parse(body)?;
    let x = parse(&form)?;
    let issuer = &endpoint.issuer;
    let authorized = issuer
        .authorize_token(x.subject_token, &x.request, CredentialKind::Jwt)
        .await
        .map_err(|e| {
            let reason = e.to_string();
            let refusal = Refusal::from(&e);
            endpoint.audit.refusal(
                "refused",
                refusal.class == Class::Unauthenticated,
                &reason,
                json!({
                    "reason": untrusted(&reason),
                    "destination": untrusted(&x.request.destination),
                    "purpose": untrusted(&x.request.purpose),
                    "via": "token-exchange",
                }),
            );
            subject_refusal(refusal)
        })?;
    let minted = issuer
        .issue_jwt(authorized, &x.request)
        .await
        .map_err(|e| Refusal::from(&e))?;
    let body = Issued {
        access_token: &minted.token,
        issued_token_type: x.issued_token_type,
        token_type: "Bearer",
        expires_in: minted.expires_at - minted.issued_at,
    };
    Ok((StatusCode::OK, no_store_json(), Json(body)).into_response())
}

/// The body of a successful exchange (RFC 8693 §2.2.1), serialized as it stands: no
/// `serde_json::Value` is built for it.
#[derive(Serialize)]
struct Issued<'a> {
    access_token: &'a str,
    issued_token_type: &'static str,
    token_type: &'static str,
    expires_in: i64,
}

/// On `/token` the evidence is the `subject_token` parameter: say so in an authentication
/// refusal's description.
fn subject_refusal(mut refusal: Refusal) -> Refusal {
    if refusal.class == Class::Unauthenticated {
        refusal.message = format!("subject_token: {}", refusal.message);
    }
    refusal
}
