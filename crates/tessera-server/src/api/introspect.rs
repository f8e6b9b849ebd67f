//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009) for tokens this broker minted.
//! Both need an authenticated caller: an X509-SVID client certificate or a JWT-SVID bearer.
//! Each workload's revocations are rate-limited (admins are not: they revoke through the Admin
//! service too, which has no limit); revoking a token twice adds one rule.

use std::fmt;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_core::attest::Evidence;
use tessera_core::clock::SharedClock;
use tessera_core::domain::{CredentialRecord, Selector, Status};
use tessera_core::spiffe_id::SpiffeId;
use tessera_ledger::Ledger;

use super::caller::Callers;
use super::form::Form;
use super::oauth::render;
use crate::enforcement::Enforcement;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::refusal::{OAuthCode, Refusal};
use crate::revoker::{RevokeParams, Revoker};
use crate::signing::JwtKeys;
use crate::tls::PeerInfo;

/// What `/introspect` and `/revoke` use.
#[derive(Clone)]
pub struct IntrospectEndpoint {
    pub callers: Callers,
    /// Verifies that a presented token is one this broker signed, with any published key.
    pub jwt: Arc<JwtKeys>,
    pub ledger: Arc<dyn Ledger>,
    pub revoker: Arc<Revoker>,
    /// Counts introspections each rule refused, and active answers a later rule covers.
    pub enforcement: Arc<Enforcement>,
    /// RFC 7009 revocations per workload.
    pub revoke_rate: Arc<RateLimiter>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
}

impl fmt::Debug for IntrospectEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectEndpoint").finish_non_exhaustive()
    }
}

fn json(status: StatusCode, body: Value) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (status, headers, body.to_string()).into_response()
}

impl IntrospectEndpoint {
    /// Attests the caller of an HTTP request; returns its SPIFFE ID, or why it is refused.
    async fn caller(
        &self,
        peer: &PeerInfo,
        headers: &HeaderMap,
        action: &'static str,
    ) -> Result<SpiffeId, Refusal> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let evidence = Evidence {
            authorization,
            peer: peer.x509.as_deref(),
        };
        self.callers.workload(evidence, action).await
    }

    /// Returns the ledger record of a token this broker minted and that verifies, if any.
    async fn minted_record(
        &self,
        token: &str,
    ) -> Option<(serde_json::Map<String, Value>, CredentialRecord)> {
        let claims = self.jwt.verify(token, self.clock.unix_seconds())?;
        let jti = claims.get("jti")?.as_str()?.to_owned();
        let record = self.ledger.get(&jti).await.ok()??;
        Some((claims, record))
    }

    fn refuse(&self, refusal: Refusal) -> Response {
        render(refusal, &self.metrics, true)
    }
}

/// Returns the `token` form parameter, or why the request is invalid.
pub(super) fn token_param(body: &[u8]) -> Result<String, Refusal> {
    Form::parse(body)?
        .one("token")?
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Refusal::invalid(OAuthCode::InvalidRequest, "token is required"))
}

/// Handles `POST /introspect`: active tokens get their claims; revoked, expired, unknown or
/// foreign tokens get exactly `{"active": false}`.
pub async fn introspect(
    endpoint: Arc<IntrospectEndpoint>,
    peer: PeerInfo,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Err(r) = endpoint.caller(&peer, &headers, "introspection").await {
        return endpoint.refuse(r);
    }
    let token = match token_param(&body) {
        Ok(token) => token,
        Err(r) => return endpoint.refuse(r),
    };
    let inactive = || json(StatusCode::OK, json!({"active": false}));
    let Some((mut claims, record)) = endpoint.minted_record(&token).await else {
        return inactive();
    };
    if let Some(rule) = endpoint.revoker.revoked_by(&record) {
        endpoint.enforcement.refused(&rule);
        return inactive();
    }
    let now_ms = endpoint.clock.unix_millis();
    if record.status_at(now_ms.div_euclid(1000)) != Status::Live {
        return inactive(); // expired (no rule covers it: checked above)
    }
    endpoint.enforcement.accepted(&record, now_ms);
    claims.insert("active".into(), Value::Bool(true));
    claims.insert("token_type".into(), Value::String("Bearer".into()));
    json(StatusCode::OK, Value::Object(claims))
}

/// Handles `POST /revoke`: the token's own workload or an admin revokes it at once; unknown and
/// invalid tokens get 200 too, and so does a token already revoked (no second rule). A workload
/// past its rate gets 429 `slow_down` with `Retry-After`.
pub async fn revoke(
    endpoint: Arc<IntrospectEndpoint>,
    peer: PeerInfo,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let who = match endpoint.caller(&peer, &headers, "token revocation").await {
        Ok(id) => id,
        Err(r) => return endpoint.refuse(r),
    };
    if !endpoint.callers.access().is_admin(&who)
        && let Err(e) = endpoint.revoke_rate.take(who.as_str())
    {
        return endpoint.refuse(Refusal::from(&e));
    }
    let token = match token_param(&body) {
        Ok(token) => token,
        Err(r) => return endpoint.refuse(r),
    };
    let Some((_, record)) = endpoint.minted_record(&token).await else {
        return StatusCode::OK.into_response();
    };
    if endpoint.revoker.status_of(&record) != Status::Live {
        return StatusCode::OK.into_response(); // already revoked or expired: nothing to do
    }
    if let Err(e) = endpoint.callers.access().may_revoke(&who, &record) {
        return endpoint.refuse(Refusal::from(&e));
    }
    let params = RevokeParams {
        selector: Selector::CredentialId,
        value: record.credential_id.clone(),
        reason: "revoked by its holder (RFC 7009)".into(),
        revoked_by: who.to_string(),
    };
    match endpoint.revoker.revoke_once(&record, params).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => endpoint.refuse(Refusal::from(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_parameter_must_be_present_once_and_utf8() {
        assert_eq!(token_param(b"token=abc&token_type_hint=x").unwrap(), "abc");
        for (body, says) in [
            (&b""[..], "token is required"),
            (b"token=", "token is required"),
            (b"token=a&token=b", "token may appear only once"),
            (b"token=%FF", "not UTF-8"),
        ] {
            let refusal = token_param(body).unwrap_err();
            assert_eq!(refusal.oauth, OAuthCode::InvalidRequest);
            assert!(refusal.message.contains(says), "{}", refusal.message);
        }
    }
}
