//! `tessera.v1.Admin` over gRPC: revoke, list and watch, the evidence of a revocation and the
//! inventory of grants, for the identities in `[admin]`.

use std::fmt;
use std::sync::Arc;

use tessera_core::clock::SharedClock;
use tessera_core::domain::{CredentialKind, GrantSelection, Selector, Status as CredentialStatus};
use tessera_ledger::{Ledger, ListParams};
use tessera_proto as proto;
use tessera_proto::revoke_request::Selector as WireSelector;
use tonic::{Request, Response, Status};

use super::caller::Callers;
use super::convert;
use super::grpc::evidence;
use super::status::{refuse, status};
use super::watch::{Replay, WatchRequest, WatchStream, Watches};
use crate::enforcement::Enforcement;
use crate::metrics::Metrics;
use crate::refusal::{Class, OAuthCode, Refusal};
use crate::reload::Reloader;
use crate::revoker::{RevokeParams, Revoker};
use crate::settings::Current;
use crate::watchers::Pool;

/// Longest revocation reason accepted, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// Acknowledgements GetRevocation lists, at most.
pub const MAX_ACKNOWLEDGEMENTS_SHOWN: usize = 10_000;
/// Largest page of ListCredentials.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// What the Admin service uses.
#[derive(Clone)]
pub struct AdminService {
    pub callers: Callers,
    pub revoker: Arc<Revoker>,
    pub ledger: Arc<dyn Ledger>,
    /// The admins' watch streams.
    pub watches: Watches,
    pub metrics: Arc<Metrics>,
    /// The evidence of each rule's enforcement.
    pub enforcement: Arc<Enforcement>,
    /// Reloads the configuration file.
    pub reloader: Arc<Reloader>,
    /// The grants in force (ListGrants).
    pub settings: Arc<Current>,
    pub clock: SharedClock,
}

impl fmt::Debug for AdminService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminService").finish_non_exhaustive()
    }
}

impl AdminService {
    /// Attests the caller and checks it is an admin; returns its SPIFFE ID. Refusals are
    /// audited.
    async fn admin<T>(
        &self,
        request: &Request<T>,
        action: &'static str,
    ) -> Result<tessera_core::spiffe_id::SpiffeId, Status> {
        let evidence = evidence(request).map_err(|e| refuse(&e, &self.metrics))?;
        self.callers
            .admin(evidence, action)
            .await
            .map_err(|r| status(r, &self.metrics))
    }
}

/// Parses the selector of a RevokeRequest; fails when none is set or its value is empty.
pub(super) fn selector(request: &proto::RevokeRequest) -> Result<(Selector, String), Refusal> {
    let (selector, value) = match &request.selector {
        Some(WireSelector::CredentialId(v)) => (Selector::CredentialId, v),
        Some(WireSelector::Workload(v)) => (Selector::Workload, v),
        Some(WireSelector::Destination(v)) => (Selector::Destination, v),
        Some(WireSelector::Purpose(v)) => (Selector::Purpose, v),
        Some(WireSelector::Owner(v)) => (Selector::Owner, v),
        Some(WireSelector::Grant(v)) => {
            v.parse::<GrantSelection>().map_err(|e| {
                Refusal::invalid(OAuthCode::InvalidRequest, format!("grant `{v}`: {e}"))
            })?;
            (Selector::Grant, v)
        }
        None => {
            return Err(Refusal::invalid(
                OAuthCode::InvalidRequest,
                "set one selector: credential_id, workload, destination, purpose, owner or grant",
            ));
        }
    };
    if value.is_empty() || value.len() > tessera_core::request::MAX_NAME_LEN {
        return Err(Refusal::invalid(
            OAuthCode::InvalidRequest,
            format!("{} must be 1 to 512 bytes", selector.as_str()),
        ));
    }
    Ok((selector, value.clone()))
}

pub(super) fn list_params(
    r: &proto::ListCredentialsRequest,
) -> Result<(ListParams, Option<CredentialStatus>), Refusal> {
    let kind = match r.kind.as_str() {
        "" => None,
        k => Some(k.parse::<CredentialKind>().map_err(|_| {
            Refusal::invalid(OAuthCode::InvalidRequest, "kind must be jwt or x509")
        })?),
    };
    let status = match r.status.as_str() {
        "" => None,
        "live" => Some(CredentialStatus::Live),
        "revoked" => Some(CredentialStatus::Revoked),
        "expired" => Some(CredentialStatus::Expired),
        _ => {
            return Err(Refusal::invalid(
                OAuthCode::InvalidRequest,
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
        grant: r.grant.clone(),
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
        let (selector, value) = selector(body).map_err(|r| status(r, &self.metrics))?;
        if body.reason.trim().is_empty() || body.reason.len() > MAX_REASON_LEN {
            return Err(status(
                Refusal::invalid(
                    OAuthCode::InvalidRequest,
                    "reason is required (at most 1024 bytes)",
                ),
                &self.metrics,
            ));
        }
        let params = RevokeParams {
            selector,
            value,
            reason: body.reason.clone(),
            revoked_by: admin.to_string(),
        };
        let outcome = self
            .revoker
            .revoke(params)
            .await
            .map_err(|e| refuse(&e, &self.metrics))?;
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
        let (params, wanted) =
            list_params(request.get_ref()).map_err(|r| status(r, &self.metrics))?;
        let page = self
            .ledger
            .list(params)
            .await
            .map_err(|e| refuse(&e, &self.metrics))?;
        let credentials = page
            .credentials
            .iter()
            .map(|r| (r, self.revoker.status_of(r)))
            .filter(|(_, s)| wanted.is_none_or(|want| want == *s))
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
        let admin = self.admin(&request, "watch_events").await?;
        let revoker = Arc::clone(&self.revoker);
        let convert = Box::new(move |e: &tessera_core::domain::Event| {
            Some(convert::event(e, |c| revoker.status_of(c)))
        });
        let watch = WatchRequest {
            pool: Pool::Events,
            identity: admin.to_string(),
            since: request.get_ref().since_sequence,
            convert,
            replay: Replay::Events,
        };
        let stream = self
            .watches
            .open(watch)
            .await
            .map_err(|r| status(r, &self.metrics))?;
        Ok(Response::new(stream))
    }

    async fn reload(
        &self,
        request: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::ReloadResponse>, Status> {
        let admin = self.admin(&request, "reload").await?;
        let report = self
            .reloader
            .reload(admin.as_str())
            .await
            .map_err(|e| refuse(&e, &self.metrics))?;
        Ok(Response::new(convert::reload_report(report)))
    }

    async fn get_revocation(
        &self,
        request: Request<proto::GetRevocationRequest>,
    ) -> Result<Response<proto::GetRevocationResponse>, Status> {
        self.admin(&request, "get_revocation").await?;
        let id = request.get_ref().revocation_id.as_str();
        let not_found = || {
            let message = format!(
                "no revocation rule has id `{id}` (rules are dropped once everything they \
                 covered has expired)"
            );
            status(
                Refusal::new(Class::NotFound, OAuthCode::InvalidRequest, message),
                &self.metrics,
            )
        };
        if id.is_empty() {
            let refusal = Refusal::invalid(OAuthCode::InvalidRequest, "revocation_id is required");
            return Err(status(refusal, &self.metrics));
        }
        let rules = self
            .ledger
            .rules()
            .await
            .map_err(|e| refuse(&e, &self.metrics))?;
        let rule = rules
            .into_iter()
            .find(|r| r.rule.revocation_id == id)
            .ok_or_else(not_found)?;
        let acknowledgements = self
            .ledger
            .acknowledgements(id, MAX_ACKNOWLEDGEMENTS_SHOWN)
            .await
            .map_err(|e| refuse(&e, &self.metrics))?;
        let found = convert::Evidence {
            acknowledgements,
            report: self.enforcement.report(id).unwrap_or_default(),
        };
        let now = self.clock.unix_seconds();
        Ok(Response::new(convert::evidence(&rule, found, now)))
    }

    async fn list_grants(
        &self,
        request: Request<proto::ListGrantsRequest>,
    ) -> Result<Response<proto::ListGrantsResponse>, Status> {
        self.admin(&request, "list_grants").await?;
        let now_ms = self.clock.unix_millis();
        let reply = super::grants::list(
            &self.settings.load(),
            self.ledger.as_ref(),
            &self.revoker,
            now_ms,
        )
        .await
        .map_err(|e| refuse(&e, &self.metrics))?;
        Ok(Response::new(reply))
    }
}
