//! `tessera.v1.Admin` over gRPC: revoke, list and watch, for the identities in `[admin]`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::broker_status;
use super::convert;
use super::grpc::evidence;
use super::watch::{WatchStream, watch_broker};
use crate::attest::Principal;
use crate::broker::{Broker, RevokeParams};
use crate::ledger::{CredentialKind, ListParams, Selector, Status as CredentialStatus};
use crate::proto;
use crate::proto::revoke_request::Selector as WireSelector;
use crate::spiffe_id::SpiffeId;

/// Longest revocation reason accepted, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// Largest page of ListCredentials.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The gRPC face of the operator API.
#[derive(Debug, Clone)]
pub struct AdminService {
    broker: Arc<Broker>,
}

impl AdminService {
    /// Serves `broker` to the SPIFFE IDs in its `[admin]` list.
    pub fn new(broker: Arc<Broker>) -> Self {
        AdminService { broker }
    }

    /// Attests the caller and checks it is an admin; returns its SPIFFE ID. A refusal is logged
    /// as an audit event.
    async fn admin<T>(&self, request: &Request<T>, action: &str) -> Result<SpiffeId, Status> {
        let now = self.broker.clock().unix_seconds();
        let attestation = self
            .broker
            .attestor()
            .attest(evidence(request)?, now)
            .await
            .map_err(|e| {
                tracing::warn!(action, error = %e, "admin call refused: unauthenticated");
                self.broker.audit(
                    "admin_refused",
                    serde_json::json!({"action": action, "reason": e.to_string()}),
                );
                Status::unauthenticated(e.to_string())
            })?;
        match attestation.principal {
            Principal::Spiffe(id) if self.broker.is_admin(&id) => {
                self.broker.audit(
                    "admin",
                    serde_json::json!({"action": action, "caller": id.to_string()}),
                );
                Ok(id)
            }
            other => {
                tracing::warn!(action, caller = %other, "admin call refused: not an admin");
                self.broker.audit("admin_refused", serde_json::json!({"action": action, "caller": other.to_string(), "reason": "not an admin"}));
                Err(Status::permission_denied(format!(
                    "{other} is not listed in [admin] spiffe_ids"
                )))
            }
        }
    }
}

/// Parses the selector of a RevokeRequest; fails when none is set or its value is empty.
fn selector(request: &proto::RevokeRequest) -> Result<(Selector, String), Status> {
    let (selector, value) = match &request.selector {
        Some(WireSelector::CredentialId(v)) => (Selector::CredentialId, v),
        Some(WireSelector::Workload(v)) => (Selector::Workload, v),
        Some(WireSelector::Destination(v)) => (Selector::Destination, v),
        Some(WireSelector::Purpose(v)) => (Selector::Purpose, v),
        Some(WireSelector::Owner(v)) => (Selector::Owner, v),
        None => {
            return Err(Status::invalid_argument(
                "set one selector: credential_id, workload, destination, purpose or owner",
            ));
        }
    };
    if value.is_empty() || value.len() > crate::request::MAX_NAME_LEN {
        return Err(Status::invalid_argument(format!(
            "{} must be 1 to 512 bytes",
            selector.as_str()
        )));
    }
    Ok((selector, value.clone()))
}

fn list_params(
    r: &proto::ListCredentialsRequest,
) -> Result<(ListParams, Option<CredentialStatus>), Status> {
    let kind = match r.kind.as_str() {
        "" => None,
        k => Some(
            k.parse::<CredentialKind>()
                .map_err(|_| Status::invalid_argument("kind must be jwt or x509"))?,
        ),
    };
    let status = match r.status.as_str() {
        "" => None,
        "live" => Some(CredentialStatus::Live),
        "revoked" => Some(CredentialStatus::Revoked),
        "expired" => Some(CredentialStatus::Expired),
        _ => {
            return Err(Status::invalid_argument(
                "status must be live, revoked or expired",
            ));
        }
    };
    let page_size = match r.page_size {
        0 => 100,
        n => n.min(MAX_PAGE_SIZE),
    };
    let params = ListParams {
        workload: r.workload.clone(),
        owner: r.owner.clone(),
        destination: r.destination.clone(),
        purpose: r.purpose.clone(),
        kind,
        page_size: page_size as usize,
        page_token: r.page_token.clone(),
        scan_limit: 100_000,
    };
    Ok((params, status))
}

#[tonic::async_trait]
impl proto::admin_server::Admin for AdminService {
    async fn revoke(
        &self,
        request: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::RevokeResponse>, Status> {
        let admin = self.admin(&request, "revoke").await?;
        let body = request.get_ref();
        let (selector, value) = selector(body)?;
        if body.reason.trim().is_empty() || body.reason.len() > MAX_REASON_LEN {
            return Err(Status::invalid_argument(
                "reason is required (at most 1024 bytes)",
            ));
        }
        let params = RevokeParams {
            selector,
            value,
            reason: body.reason.clone(),
            revoked_by: admin.to_string(),
        };
        let outcome = self
            .broker
            .revoke(params)
            .await
            .map_err(|e| broker_status(&e))?;
        Ok(Response::new(proto::RevokeResponse {
            revocation_id: outcome.rule.rule.revocation_id,
            sequence: outcome.rule.sequence,
            credentials_revoked: outcome.covered,
        }))
    }

    async fn list_credentials(
        &self,
        request: Request<proto::ListCredentialsRequest>,
    ) -> Result<Response<proto::ListCredentialsResponse>, Status> {
        self.admin(&request, "list_credentials").await?;
        let (params, status) = list_params(request.get_ref())?;
        let page = self
            .broker
            .ledger()
            .list(params)
            .await
            .map_err(|e| broker_status(&e.into()))?;
        let credentials = page
            .credentials
            .iter()
            .map(|r| (r, self.broker.status_of(r)))
            .filter(|(_, s)| status.is_none_or(|want| want == *s))
            .map(|(r, s)| convert::credential(r, s))
            .collect();
        Ok(Response::new(proto::ListCredentialsResponse {
            credentials,
            next_page_token: page.next_page_token,
        }))
    }

    type WatchEventsStream = WatchStream<proto::Event>;

    async fn watch_events(
        &self,
        request: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        self.admin(&request, "watch_events").await?;
        let broker = Arc::clone(&self.broker);
        let convert = Box::new(move |e: &crate::ledger::Event| {
            Some(convert::event(e, |c| broker.status_of(c)))
        });
        let stream = watch_broker(&self.broker, request.get_ref().since_sequence, convert)?;
        Ok(Response::new(stream))
    }
}
