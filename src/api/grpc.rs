//! `tessera.v1.Broker` over gRPC.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::{broker_status, request_status};
use crate::attest::{AttestError, Evidence};
use crate::broker::{Broker, BrokerError};
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
fn evidence<'a, T>(request: &'a Request<T>) -> Result<Evidence<'a>, Status> {
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

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl proto::broker_server::Broker for BrokerService {
    async fn mint_jwt(
        &self,
        request: Request<proto::MintJwtRequest>,
    ) -> Result<Response<proto::MintJwtResponse>, Status> {
        let body = request.get_ref();
        let parsed = CredentialRequest::parse(&body.destination, &body.purpose, body.ttl_seconds)
            .map_err(|e| request_status(&e))?;
        let evidence = evidence(&request)?;
        let minted = self.broker.mint_jwt(evidence, &parsed).await.map_err(|e| {
            tracing::info!(error = %e, destination = %parsed.destination, purpose = %parsed.purpose, "mint refused");
            broker_status(&e)
        })?;
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
        let parsed = CredentialRequest::parse(&body.destination, &body.purpose, body.ttl_seconds)
            .map_err(|e| request_status(&e))?;
        // Callers learn whether they are allowed before they learn that signing is missing.
        self.broker
            .authorize(evidence(&request)?, &parsed, CredentialKind::X509)
            .map_err(|e| broker_status(&e))?;
        Err(Status::unimplemented(
            "X.509-SVID signing is not available in this version of Tessera",
        ))
    }

    type WatchRevocationsStream = EventStream<proto::RevocationEvent>;

    async fn watch_revocations(
        &self,
        _request: Request<proto::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        Err(Status::unimplemented(
            "WatchRevocations is not available in this version of Tessera",
        ))
    }
}
