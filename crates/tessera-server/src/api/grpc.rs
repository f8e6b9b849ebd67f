//! `tessera.v1.Broker` over gRPC: mint JWTs and X.509-SVIDs, follow revocations.

use std::fmt;
use std::sync::Arc;

use tessera_core::attest::{AttestError, Evidence};
use tessera_core::clock::SharedClock;
use tessera_core::csr::VerifiedCsr;
use tessera_core::domain::CredentialKind;
use tessera_core::request::CredentialRequest;
use tessera_ledger::AckStore;
use tessera_proto as proto;
use tonic::{Request, Response, Status};

use super::caller::Callers;
use super::convert;
use super::status::{refuse, status};
use super::watch::{Replay, WatchRequest, WatchStream, Watches};
use crate::audit::{Audit, untrusted};
use crate::enforcement::Enforcement;
use crate::issuer::{IssueError, Issuer};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::refusal::{Class, OAuthCode, Refusal};
use crate::tls::PeerInfo;
use crate::watchers::Pool;

/// Revocation ids one AcknowledgeRevocations call may carry.
pub const MAX_ACKNOWLEDGED: usize = 1000;

/// What the Broker service uses.
#[derive(Clone)]
pub struct BrokerService {
    pub issuer: Arc<Issuer>,
    pub callers: Callers,
    /// The relying parties' watch streams.
    pub watches: Watches,
    pub limits: Limits,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    /// Tells which acknowledgements of rules are a relying party's first.
    pub enforcement: Arc<Enforcement>,
    /// Where acknowledgements are kept, for every replica to show.
    pub acks: Arc<dyn AckStore>,
    pub clock: SharedClock,
}

impl fmt::Debug for BrokerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerService").finish_non_exhaustive()
    }
}

/// Reads the evidence a gRPC request carries: `authorization` metadata and the connection's
/// client certificate. Fails when `authorization` is not visible ASCII.
pub(crate) fn evidence<T>(request: &Request<T>) -> Result<Evidence<'_>, AttestError> {
    let authorization = match request.metadata().get("authorization") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| AttestError::MalformedAuthorization)?,
        ),
        None => None,
    };
    let peer = request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.x509.as_deref());
    Ok(Evidence {
        authorization,
        peer,
    })
}

impl BrokerService {
    /// Audits a refused mint and returns its status.
    fn refused(&self, e: &IssueError, request: &CredentialRequest) -> Status {
        let reason = e.to_string();
        self.audit.refusal(
            "refused",
            Refusal::from(e).class == Class::Unauthenticated,
            &reason,
            serde_json::json!({
                "reason": untrusted(&reason),
                "destination": untrusted(&request.destination),
                "purpose": untrusted(&request.purpose),
            }),
        );
        refuse(e, &self.metrics)
    }

    /// Admits one mint and parses its request; fails when overloaded or malformed.
    fn admit(
        &self,
        destination: &str,
        purpose: &str,
        ttl_seconds: u32,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, CredentialRequest), Status> {
        let permit = self
            .limits
            .request()
            .map_err(|e| status(e.into(), &self.metrics))?;
        let parsed = CredentialRequest::parse(destination, purpose, ttl_seconds)
            .map_err(|e| refuse(&e, &self.metrics))?;
        Ok((permit, parsed))
    }

    /// Attests and authorizes a mint of `kind`; fails with the refusal's status.
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        parsed: &CredentialRequest,
        kind: CredentialKind,
    ) -> Result<crate::issuer::Authorized, Status> {
        let evidence = evidence(request).map_err(|e| self.refused(&e.into(), parsed))?;
        self.issuer
            .authorize(evidence, parsed, kind)
            .await
            .map_err(|e| self.refused(&e, parsed))
    }
}

#[tonic::async_trait]
impl proto::broker_server::Broker for BrokerService {
    async fn mint_jwt(
        &self,
        request: Request<proto::MintJwtRequest>,
    ) -> Result<Response<proto::MintJwtResponse>, Status> {
        let body = request.get_ref();
        let (_permit, parsed) = self.admit(&body.destination, &body.purpose, body.ttl_seconds)?;
        let authorized = self
            .authorize(&request, &parsed, CredentialKind::Jwt)
            .await?;
        let minted = self
            .issuer
            .issue_jwt(authorized, &parsed)
            .await
            .map_err(|e| self.refused(&e, &parsed))?;
        Ok(Response::new(proto::MintJwtResponse {
            token: minted.token,
            credential_id: minted.jti,
            expires_at: minted.expires_at,
        }))
    }

    async fn mint_x509(
        &self,
        request: Request<proto::MintX509Request>,
    ) -> Result<Response<proto::MintX509Response>, Status> {
        let body = request.get_ref();
        let (_permit, parsed) = self.admit(&body.destination, &body.purpose, body.ttl_seconds)?;
        // Authorize before spending a signature verification on the CSR.
        let authorized = self
            .authorize(&request, &parsed, CredentialKind::X509)
            .await?;
        let csr = VerifiedCsr::from_der(&body.csr).map_err(|e| refuse(&e, &self.metrics))?;
        let issued = self
            .issuer
            .issue_x509(authorized, &parsed, &csr)
            .await
            .map_err(|e| self.refused(&e, &parsed))?;
        Ok(Response::new(proto::MintX509Response {
            cert_chain: issued.minted.chain,
            credential_id: issued.minted.serial_hex,
            expires_at: issued.minted.expires_at,
            trust_bundle: issued.trust_bundle,
        }))
    }

    type WatchRevocationsStream = WatchStream<proto::RevocationEvent>;

    async fn watch_revocations(
        &self,
        request: Request<proto::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        // Any workload may follow revocations (relying parties do); CI tokens only exchange.
        let evidence = evidence(&request).map_err(|e| refuse(&e, &self.metrics))?;
        let caller = self
            .callers
            .workload(evidence, "WatchRevocations")
            .await
            .map_err(|r| status(r, &self.metrics))?;
        let convert = Box::new(|e: &tessera_core::domain::Event| {
            e.revocation.as_ref().map(convert::revocation)
        });
        let watch = WatchRequest {
            pool: Pool::Revocations,
            identity: caller.to_string(),
            since: request.get_ref().since_sequence,
            convert,
            replay: Replay::Rules {
                rule: convert::revocation,
                caught_up: convert::caught_up,
            },
        };
        let stream = self
            .watches
            .open(watch)
            .await
            .map_err(|r: Refusal| status(r, &self.metrics))?;
        Ok(Response::new(stream))
    }

    async fn acknowledge_revocations(
        &self,
        request: Request<proto::AcknowledgeRevocationsRequest>,
    ) -> Result<Response<proto::AcknowledgeRevocationsResponse>, Status> {
        let evidence = evidence(&request).map_err(|e| refuse(&e, &self.metrics))?;
        let relying_party = self
            .callers
            .workload(evidence, "AcknowledgeRevocations")
            .await
            .map_err(|r| status(r, &self.metrics))?;
        let ids = &request.get_ref().revocation_ids;
        if ids.len() > MAX_ACKNOWLEDGED {
            let message = format!("at most {MAX_ACKNOWLEDGED} revocation ids per call");
            return Err(status(
                Refusal::invalid(OAuthCode::InvalidRequest, message),
                &self.metrics,
            ));
        }
        let (acknowledged, first) =
            self.enforcement
                .acknowledged(relying_party.as_str(), ids, self.clock.unix_millis());
        if !first.is_empty() {
            self.acks
                .acknowledge(first)
                .await
                .map_err(|e| refuse(&e, &self.metrics))?;
        }
        Ok(Response::new(proto::AcknowledgeRevocationsResponse {
            acknowledged,
        }))
    }
}
