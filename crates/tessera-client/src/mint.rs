//! A client of `tessera.v1.Broker`: connect over TLS (with the workload's X509-SVID as client
//! certificate, or with a bearer JWT-SVID / CI token per call) and mint JWTs and X.509-SVIDs.

use tessera_proto::broker_client::BrokerClient;
use tessera_proto::{MintJwtRequest, MintX509Request, RevocationEvent, WatchRevocationsRequest};
use tonic::Streaming;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Why a connection or a mint failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("broker URL `{url}`: {source}")]
    Url {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("the bearer token is not a valid header value")]
    BadBearer,
    #[error("the broker refused: {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Refused {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// How to reach the broker.
#[derive(Clone)]
pub struct ConnectParams {
    /// gRPC URL, e.g. `https://127.0.0.1:8443`.
    pub url: String,
    /// PEM roots for the broker's TLS certificate.
    pub ca_pem: Vec<u8>,
    /// Name the broker's certificate is checked against.
    pub server_name: String,
    /// The workload's X509-SVID and key (PEM), presented as TLS client certificate.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectParams")
            .field("url", &self.url)
            .field("server_name", &self.server_name)
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Opens a TLS channel to the broker. Fails when the URL or TLS material is unusable or the
/// broker cannot be reached.
pub async fn connect(p: ConnectParams) -> Result<Channel, ClientError> {
    let url = p.url.clone();
    endpoint(p)?
        .connect()
        .await
        .map_err(|source| ClientError::Connect { url, source })
}

/// Returns the endpoint [`connect`] connects to, for a caller that sets more options or
/// connects lazily. Fails when the URL or TLS material is unusable.
pub fn endpoint(p: ConnectParams) -> Result<Endpoint, ClientError> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&p.ca_pem))
        .domain_name(p.server_name.clone());
    if let Some((cert, key)) = &p.identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let url = p.url.clone();
    Endpoint::from_shared(p.url)
        .and_then(|e| e.tls_config(tls))
        .map_err(|source| ClientError::Url { url, source })
}

/// A minted JWT.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwt {
    pub token: String,
    pub credential_id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("token", &"<redacted>")
            .field("credential_id", &self.credential_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A minted X.509-SVID (DER, leaf first) and the bundle to verify peers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Svid {
    pub cert_chain: Vec<Vec<u8>>,
    pub credential_id: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub trust_bundle: Vec<Vec<u8>>,
}

/// What to mint: one destination and one purpose; `ttl_seconds = 0` is the grant's default.
#[derive(Debug, Clone, Copy)]
pub struct MintParams<'a> {
    pub destination: &'a str,
    pub purpose: &'a str,
    pub ttl_seconds: u32,
}

/// Mints credentials on one channel.
#[derive(Clone)]
pub struct MintClient {
    inner: BrokerClient<Channel>,
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for MintClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintClient")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl MintClient {
    /// Mints on `channel`, authenticated by the channel's client certificate.
    pub fn new(channel: Channel) -> Self {
        MintClient {
            inner: BrokerClient::new(channel),
            bearer: None,
        }
    }

    /// Sends `token` (a JWT-SVID or CI token) as `authorization: Bearer` on every call. Fails
    /// when it is not a valid header value.
    pub fn with_bearer(mut self, token: &str) -> Result<Self, ClientError> {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::BadBearer)?;
        self.bearer = Some(value);
        Ok(self)
    }

    /// Returns the generated client, for calls this type does not wrap.
    pub fn raw(&mut self) -> &mut BrokerClient<Channel> {
        &mut self.inner
    }

    fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(body);
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        request
    }

    /// Mints a JWT. Fails with the broker's status when it refuses.
    pub async fn mint_jwt(&mut self, p: MintParams<'_>) -> Result<Jwt, ClientError> {
        let request = self.request(MintJwtRequest {
            destination: p.destination.to_owned(),
            purpose: p.purpose.to_owned(),
            ttl_seconds: p.ttl_seconds,
        });
        let reply = self.inner.mint_jwt(request).await?.into_inner();
        Ok(Jwt {
            token: reply.token,
            credential_id: reply.credential_id,
            expires_at: reply.expires_at,
        })
    }

    /// Mints an X.509-SVID for the key of `csr` (DER PKCS#10). Fails with the broker's status
    /// when it refuses.
    pub async fn mint_x509(
        &mut self,
        csr: Vec<u8>,
        p: MintParams<'_>,
    ) -> Result<X509Svid, ClientError> {
        let request = self.request(MintX509Request {
            csr,
            destination: p.destination.to_owned(),
            purpose: p.purpose.to_owned(),
            ttl_seconds: p.ttl_seconds,
        });
        let reply = self.inner.mint_x509(request).await?.into_inner();
        Ok(X509Svid {
            cert_chain: reply.cert_chain,
            credential_id: reply.credential_id,
            expires_at: reply.expires_at,
            trust_bundle: reply.trust_bundle,
        })
    }

    /// Opens `WatchRevocations` after `since_sequence` (0: every retained rule), with the
    /// bearer token when one is set. Fails with the broker's status when it refuses.
    pub async fn watch_revocations(
        &mut self,
        since_sequence: u64,
    ) -> Result<Streaming<RevocationEvent>, ClientError> {
        let request = self.request(WatchRevocationsRequest { since_sequence });
        Ok(self.inner.watch_revocations(request).await?.into_inner())
    }
}
