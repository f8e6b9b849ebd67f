//! `tessera.v1.Broker` over gRPC.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::watch::{WatchStream, watch_broker};
use super::{broker_status, convert, overloaded_status, request_status};
use crate::attest::{AttestError, Evidence, Principal};
use crate::broker::{Broker, BrokerError};
use crate::csr::VerifiedCsr;
use crate::ledger::CredentialKind;
use crate::proto;
use crate::request::CredentialRequest;
use crate::tls::PeerInfo;

/// The gRPC face of the [`Broker`].
#[derive(Debug, Clone)]
pub struct BrokerService {
    broker: Arc<Broker>,
}

impl BrokerService {
    /// Wraps a broker.
    pub fn new(broker: Arc<Broker>) -> Self {
        BrokerService { broker }
    }
}

/// Reads the evidence a gRPC request carries: `authorization` metadata and the connection's
/// client certificate. Fails when `authorization` is not visible ASCII.
pub(crate) fn evidence<'a, T>(request: &'a Request<T>) -> Result<Evidence<'a>, Status> {
    let authorization = match request.metadata().get("authorization") {
        Some(value) => Some(value.to_str().map_err(|_| {
            broker_status(&BrokerError::Attest(AttestError::MalformedAuthorization))
        })?),
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

/// Logs and audits a refused mint and returns its status.
fn refused(broker: &Broker, e: &BrokerError, request: &CredentialRequest) -> Status {
    broker.audit(
        "refused",
        serde_json::json!({"reason": e.to_string(), "destination": request.destination, "purpose": request.purpose}),
    );
    tracing::info!(error = %e, destination = %request.destination, purpose = %request.purpose, "mint refused");
    broker_status(e)
}

#[tonic::async_trait]
impl proto::broker_server::Broker for BrokerService {
    async fn mint_jwt(
        &self,
        request: Request<proto::MintJwtRequest>,
    ) -> Result<Response<proto::MintJwtResponse>, Status> {
        let _permit = self.broker.limits().request().map_err(overloaded_status)?;
        let body = request.get_ref();
        let parsed = CredentialRequest::parse(&body.destination, &body.purpose, body.ttl_seconds)
            .map_err(|e| request_status(&e))?;
        let evidence = evidence(&request)?;
        let minted = self
            .broker
            .mint_jwt(evidence, &parsed)
            .await
            .map_err(|e| refused(&self.broker, &e, &parsed))?;
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
        let _permit = self.broker.limits().request().map_err(overloaded_status)?;
        let body = request.get_ref();
        let parsed = CredentialRequest::parse(&body.destination, &body.purpose, body.ttl_seconds)
            .map_err(|e| request_status(&e))?;
        // Authorize before spending a signature verification on the CSR.
        let authorized = self
            .broker
            .authorize(evidence(&request)?, &parsed, CredentialKind::X509)
            .await
            .map_err(|e| refused(&self.broker, &e, &parsed))?;
        let csr = VerifiedCsr::from_der(&body.csr)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let issued = self
            .broker
            .mint_x509(authorized, &parsed, &csr)
            .await
            .map_err(|e| refused(&self.broker, &e, &parsed))?;
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
        // Any authenticated workload may follow revocations (relying parties do); CI tokens
        // authenticate exchanges only.
        let now = self.broker.clock().unix_seconds();
        let attestation = self
            .broker
            .attestor()
            .attest(evidence(&request)?, now)
            .await
            .map_err(|e| broker_status(&BrokerError::Attest(e)))?;
        if let Principal::Ci(_) = attestation.principal {
            return Err(Status::unauthenticated(
                "WatchRevocations needs an X509-SVID or a JWT-SVID, not a CI token",
            ));
        }
        let convert =
            Box::new(|e: &crate::ledger::Event| e.revocation.as_ref().map(convert::revocation));
        let stream = watch_broker(&self.broker, request.get_ref().since_sequence, convert)?;
        Ok(Response::new(stream))
    }
}
