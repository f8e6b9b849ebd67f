//! The requests each scenario sends: gRPC mints (JWT-SVID bearer or mTLS, JWT or X.509), RFC
//! 8693 exchanges over `/token`, and `client_credentials` grants to a peer OAuth server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::drive::{Load, Outcome};
use super::http1::{Http1Error, Http1Pool, Reply};
use super::issuer::CiIssuer;
use tessera_core::clock::{Clock, SystemClock};
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::{MintJwtRequest, MintX509Request};
use tessera_testkit::dev::JwtSvidSigner;
use tessera_testkit::pki::PkiError;

/// Why a scenario's target could not be set up. `Display` names the URL or file.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{url}: {source}")]
    Endpoint {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("{url}: TLS configuration: {source}")]
    Tls {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("connecting to {url}: {source:?}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("{}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Signer { path: PathBuf, source: PkiError },
}

/// Destination and purpose of the dev grant (`certs-dev/tessera.toml`).
pub const DESTINATION: &str = "https://ledger.example.org";
pub const PURPOSE: &str = "ledger:write";
/// Destination and purpose of the bench CI grant (`bench/run.sh` writes it).
pub use tessera_testkit::fixtures::{CI_DESTINATION, CI_PURPOSE};

/// Opens `connections` gRPC channels (HTTP/2 connections) to the broker at `url`, presenting
/// the X509-SVID `identity` (cert, key PEM) when given.
///
/// Fails, naming `url`, with [`TargetError::Endpoint`] if it is not a valid endpoint, with
/// [`TargetError::Tls`] if the TLS settings are refused, and with [`TargetError::Connect`] if a
/// connection cannot be made.
pub async fn channels(
    url: &str,
    ca_pem: &[u8],
    identity: Option<(Vec<u8>, Vec<u8>)>,
    connections: usize,
) -> Result<Vec<Channel>, TargetError> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|source| TargetError::Endpoint {
            url: url.to_owned(),
            source,
        })?
        .tls_config(tls)
        .map_err(|source| TargetError::Tls {
            url: url.to_owned(),
            source,
        })?
        .tcp_nodelay(true)
        .buffer_size(64 * 1024);
    let mut out = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        out.push(
            endpoint
                .connect()
                .await
                .map_err(|source| TargetError::Connect {
                    url: url.to_owned(),
                    source,
                })?,
        );
    }
    Ok(out)
}

/// What a gRPC mint asks for.
#[derive(Debug, Clone)]
pub enum MintKind {
    Jwt,
    /// DER CSR, sent with every request (the broker verifies it every time).
    X509(Vec<u8>),
}

/// `Broker/MintJwt` or `Broker/MintX509` over reused channels.
#[derive(Debug)]
pub struct GrpcMint {
    pub clients: Vec<BrokerClient<Channel>>,
    /// `Bearer <JWT-SVID>`, or `None` for mTLS.
    pub bearer: Option<MetadataValue<Ascii>>,
    pub kind: MintKind,
    /// Where minted credential ids go (the `revoke` scenario picks from them).
    pub minted: Option<mpsc::Sender<String>>,
}

#[async_trait]
impl Load for GrpcMint {
    async fn call(&self, n: u64) -> Outcome {
        let index = usize::try_from(n).unwrap_or_default() % self.clients.len().max(1);
        let Some(client) = self.clients.get(index) else {
            return Outcome::Error("no connection".into());
        };
        let mut client = client.clone();
        let reply = match &self.kind {
            MintKind::Jwt => {
                let request = self.request(MintJwtRequest {
                    destination: DESTINATION.into(),
                    purpose: PURPOSE.into(),
                    ttl_seconds: 300,
                });
                client
                    .mint_jwt(request)
                    .await
                    .map(|r| r.into_inner().credential_id)
            }
            MintKind::X509(csr) => {
                let request = self.request(MintX509Request {
                    csr: csr.clone(),
                    destination: DESTINATION.into(),
                    purpose: PURPOSE.into(),
                    ttl_seconds: 300,
                });
                client
                    .mint_x509(request)
                    .await
                    .map(|r| r.into_inner().credential_id)
            }
        };
        match reply {
            Ok(id) => {
                if let Some(minted) = &self.minted {
                    let _ = minted.try_send(id);
                }
                Outcome::Ok
            }
            Err(status) => status_outcome(&status),
        }
    }
}

impl GrpcMint {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        request
    }
}

/// Maps a gRPC status to an outcome.
pub fn status_outcome(status: &tonic::Status) -> Outcome {
    match status.code() {
        tonic::Code::ResourceExhausted => Outcome::Shed,
        code => Outcome::Error(format!("{code:?}: {}", status.message())),
    }
}

/// Maps an HTTP reply to an outcome: 200 is a credential, 503 is shedding; no reply is an
/// error.
fn http_outcome(reply: Result<Reply, Http1Error>) -> Outcome {
    match reply {
        Ok(r) if r.status == hyper::StatusCode::OK => Outcome::Ok,
        Ok(r) if r.status == hyper::StatusCode::SERVICE_UNAVAILABLE => Outcome::Shed,
        Ok(r) => Outcome::Error(format!(
            "HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// RFC 8693 exchange of a fresh CI token per request at the broker's `/token`.
#[derive(Debug)]
pub struct Exchange {
    pub pool: Http1Pool,
    pub issuer: CiIssuer,
    pub destination: String,
    pub purpose: String,
}

#[async_trait]
impl Load for Exchange {
    async fn call(&self, n: u64) -> Outcome {
        let token = match self.issuer.token(n, SystemClock.unix_seconds()) {
            Ok(token) => token,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("subject_token", &token)
            .append_pair(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            )
            .append_pair("audience", &self.destination)
            .append_pair("scope", &self.purpose)
            .finish();
        http_outcome(self.pool.post_form(form).await)
    }
}

/// `client_credentials` with `private_key_jwt` against a peer OAuth server
/// (`bench/peer/`): one ES256 client assertion verified, one ES256 access token signed.
#[derive(Debug)]
pub struct Peer {
    pub pool: Http1Pool,
    pub signer: JwtSvidSigner,
    pub token_url: String,
}

/// The peer's client id and the `kid` of its key.
pub const PEER_CLIENT_ID: &str = "bench-client";
pub const PEER_KID: &str = "bench-client-1";

/// Loads the dev JWT-SVID key from `certs` as a signer with `kid`.
///
/// Fails, naming the file, with [`TargetError::ReadFile`] if it cannot be read and with
/// [`TargetError::Signer`] if it is not a P-256 PKCS#8 key.
pub fn dev_signer(certs: &Path, kid: &str) -> Result<JwtSvidSigner, TargetError> {
    let path = certs.join("jwt-svid-key.pem");
    let pem = match std::fs::read_to_string(&path) {
        Ok(pem) => pem,
        Err(source) => return Err(TargetError::ReadFile { path, source }),
    };
    JwtSvidSigner::from_pkcs8_pem(&pem, kid).map_err(|source| TargetError::Signer { path, source })
}

/// Reads `<certs>/<name>`. Fails with [`TargetError::ReadFile`] naming the file.
pub fn read_cert_file(certs: &Path, name: &str) -> Result<Vec<u8>, TargetError> {
    let path = certs.join(name);
    std::fs::read(&path).map_err(|source| TargetError::ReadFile { path, source })
}

impl Peer {
    /// The peer client's key: the dev JWT-SVID key, reused under [`PEER_KID`]. Fails as
    /// [`dev_signer`] does.
    pub fn signer(certs: &Path) -> Result<JwtSvidSigner, TargetError> {
        dev_signer(certs, PEER_KID)
    }

    /// Returns the JWKS the peer must be started with (`--client-jwks`).
    pub fn client_jwks(signer: &JwtSvidSigner) -> serde_json::Value {
        serde_json::json!({ "keys": [signer.signing_jwk()] })
    }
}

#[async_trait]
impl Load for Peer {
    async fn call(&self, n: u64) -> Outcome {
        let now = SystemClock.unix_seconds();
        let claims = serde_json::json!({
            "iss": PEER_CLIENT_ID, "sub": PEER_CLIENT_ID, "aud": self.token_url,
            "jti": format!("bench-{now}-{n}"), "iat": now, "exp": now + 60,
        });
        let assertion = match self.signer.sign(&claims) {
            Ok(assertion) => assertion,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", PURPOSE)
            .append_pair("resource", DESTINATION)
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", &assertion)
            .finish();
        http_outcome(self.pool.post_form(form).await)
    }
}

/// Shared so `Arc<dyn Load>` can be built from any scenario.
pub fn shared<L: Load>(load: L) -> Arc<dyn Load> {
    Arc::new(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cert_file_fails_naming_it() {
        let certs = Path::new("/nonexistent-tessera-bench-certs");
        let error = read_cert_file(certs, "tls-ca.pem").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent-tessera-bench-certs/tls-ca.pem: "),
            "{error}"
        );
        let error = dev_signer(certs, PEER_KID).unwrap_err();
        assert!(matches!(error, TargetError::ReadFile { .. }), "{error:?}");
        assert!(error.to_string().contains("jwt-svid-key.pem"), "{error}");
    }

    #[test]
    fn no_reply_is_an_error_outcome_naming_the_target() {
        let outcome = http_outcome(Err(Http1Error::NoHost {
            url: "http:/token".into(),
        }));
        assert_eq!(outcome, Outcome::Error("http:/token: no host".into()));
    }
}
