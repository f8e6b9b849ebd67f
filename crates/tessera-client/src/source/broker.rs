//! The calls a credential source makes to the broker, behind a trait so that a test (or a
//! caller with its own transport) can stand in for it; [`GrpcBroker`] makes them over gRPC with
//! fresh evidence from an [`Attestor`] each time, reusing one lazily connected channel per
//! client certificate.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use tonic::transport::Channel;

use tessera_proto::RevocationEvent;

use super::error::SourceError;
use super::evidence::{Attestor, Evidence};
use crate::mint::{self, ConnectParams, Jwt, MintClient, MintParams, X509Svid};

/// The events of an open `WatchRevocations` stream.
pub type RevocationStream = BoxStream<'static, Result<RevocationEvent, tonic::Status>>;

/// The broker as a credential source sees it.
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Mints a JWT. Fails as the broker refuses, or when it cannot be reached.
    fn mint_jwt<'a>(&'a self, p: MintParams<'a>) -> BoxFuture<'a, Result<Jwt, SourceError>>;

    /// Mints an X.509-SVID for the key of `csr` (DER PKCS#10). Fails as the broker refuses, or
    /// when it cannot be reached.
    fn mint_x509<'a>(
        &'a self,
        csr: Vec<u8>,
        p: MintParams<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, SourceError>>;

    /// Opens `WatchRevocations` after `since_sequence`. Fails as the broker refuses, or when it
    /// cannot be reached.
    fn watch_revocations(
        &self,
        since_sequence: u64,
    ) -> BoxFuture<'_, Result<RevocationStream, SourceError>>;
}

/// Where the broker is and how its TLS certificate is checked.
#[derive(Debug, Clone)]
pub struct BrokerAddress {
    /// gRPC URL, e.g. `https://tessera.example.org:8443`.
    pub url: String,
    /// PEM roots for the broker's TLS certificate.
    pub ca_pem: Vec<u8>,
    /// Name the broker's certificate is checked against.
    pub server_name: String,
}

/// How often an idle connection is probed, so that a broker gone silent (a watch stream on a
/// dead connection) is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// How long a probe may go unanswered.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A channel and the client certificate (by digest) it presents.
#[derive(Debug)]
struct Cached {
    identity: Option<Vec<u8>>,
    channel: Channel,
}

/// The broker over gRPC, authenticated by what `attestor` presents at each call.
#[derive(Debug)]
pub struct GrpcBroker {
    address: BrokerAddress,
    attestor: Arc<dyn Attestor>,
    channel: Mutex<Option<Cached>>,
}

impl GrpcBroker {
    /// Calls the broker at `address` with evidence from `attestor`. Connects on first use.
    pub fn new(address: BrokerAddress, attestor: Arc<dyn Attestor>) -> Self {
        GrpcBroker {
            address,
            attestor,
            channel: Mutex::new(None),
        }
    }

    /// Returns a client presenting fresh evidence: on a channel with the client certificate
    /// (reused while the certificate is unchanged), or with the bearer token. Fails when the
    /// evidence is missing or the address unusable.
    async fn client(&self) -> Result<MintClient, SourceError> {
        let (identity, bearer) = match self.attestor.evidence().await? {
            Evidence::X509Svid { cert_pem, key_pem } => (Some((cert_pem, key_pem)), None),
            Evidence::Bearer(token) => (None, Some(token)),
        };
        let client = MintClient::new(self.channel(identity)?);
        match bearer {
            Some(token) => client
                .with_bearer(&token)
                .map_err(|_| SourceError::Evidence {
                    attestor: self.attestor.name(),
                    reason: "the token is not a valid header value".to_owned(),
                }),
            None => Ok(client),
        }
    }

    /// Returns the channel presenting `identity` (chain and key PEM), made when there is none
    /// yet or the identity changed. Fails when the address is unusable.
    fn channel(
        &self,
        identity: Option<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)>,
    ) -> Result<Channel, SourceError> {
        let fingerprint = identity.as_ref().map(|(cert, key)| {
            let mut context = digest::Context::new(&digest::SHA256);
            context.update(cert);
            context.update(key);
            context.finish().as_ref().to_vec()
        });
        // A panic while holding the lock leaves a channel or nothing: keep using it.
        let mut cached = self
            .channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cached.as_ref().filter(|c| c.identity == fingerprint) {
            return Ok(c.channel.clone());
        }
        let params = ConnectParams {
            url: self.address.url.clone(),
            ca_pem: self.address.ca_pem.clone(),
            server_name: self.address.server_name.clone(),
            identity: identity.map(|(cert, key)| (cert, key.to_vec())),
        };
        let channel = mint::endpoint(params)?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        *cached = Some(Cached {
            identity: fingerprint,
            channel: channel.clone(),
        });
        Ok(channel)
    }
}

impl Broker for GrpcBroker {
    fn mint_jwt<'a>(&'a self, p: MintParams<'a>) -> BoxFuture<'a, Result<Jwt, SourceError>> {
        Box::pin(async move { Ok(self.client().await?.mint_jwt(p).await?) })
    }

    fn mint_x509<'a>(
        &'a self,
        csr: Vec<u8>,
        p: MintParams<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, SourceError>> {
        Box::pin(async move { Ok(self.client().await?.mint_x509(csr, p).await?) })
    }

    fn watch_revocations(
        &self,
        since_sequence: u64,
    ) -> BoxFuture<'_, Result<RevocationStream, SourceError>> {
        Box::pin(async move {
            let stream = self
                .client()
                .await?
                .watch_revocations(since_sequence)
                .await?;
            Ok(stream.boxed())
        })
    }
}
