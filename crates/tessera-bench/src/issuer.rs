//! The CI issuer of the `exchange` scenario: serves OIDC discovery and a JWKS over HTTPS, and
//! signs a fresh ES256 GitHub-shaped ID token per request (the broker refuses a token it has exchanged
//! before). The broker fetches the JWKS once and then verifies from its cache.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use tessera_testkit::dev::JwtSvidSigner;
use tessera_testkit::fixtures;
use tessera_testkit::pki::PkiError;

/// Why the bench CI issuer could not start or sign a token.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("generating the CI issuer's signing key: {0}")]
    SigningKey(#[source] PkiError),
    #[error("binding the CI issuer on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the CI issuer's address (bound on {addr}): {source}")]
    LocalAddr {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("CI issuer TLS protocol versions: {0}")]
    TlsVersions(#[source] rustls::Error),
    #[error("CI issuer certificate: {0}")]
    Certificate(#[source] rustls::Error),
    #[error("signing a CI token: {0}")]
    Token(#[source] PkiError),
}

/// Returns the broker configuration the `exchange` scenario needs: the CI issuer served on
/// `addr` (its TLS certificate chains to `ca_file`) and the test kit's CI grant for its tokens.
pub fn broker_config(addr: SocketAddr, ca_file: &std::path::Path) -> String {
    fixtures::ci_broker_config(&format!("https://{addr}"), ca_file)
}

/// A running bench issuer.
#[derive(Debug)]
pub struct CiIssuer {
    pub url: String,
    signer: JwtSvidSigner,
    audience: String,
}

impl CiIssuer {
    /// Starts serving discovery and the JWKS on `addr` over TLS with `cert_chain`/`key`.
    /// Returns once the listener is bound.
    ///
    /// Fails with [`IssuerError::Bind`] naming `addr` if it cannot bind, with
    /// [`IssuerError::Certificate`] if `cert_chain`/`key` are unusable, and with
    /// [`IssuerError::SigningKey`], [`IssuerError::LocalAddr`] or [`IssuerError::TlsVersions`]
    /// if the signing key, the bound address or the TLS configuration cannot be had.
    pub async fn start(
        addr: SocketAddr,
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        audience: &str,
    ) -> Result<CiIssuer, IssuerError> {
        let signer = JwtSvidSigner::generate("bench-ci-1").map_err(IssuerError::SigningKey)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| IssuerError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| IssuerError::LocalAddr { addr, source })?;
        let url = format!("https://{bound}");
        let jwk = signer.signing_jwk();
        let documents = Arc::new(Documents {
            discovery: Bytes::from(
                serde_json::json!({"issuer": url, "jwks_uri": format!("{url}/jwks")}).to_string(),
            ),
            jwks: Bytes::from(serde_json::json!({"keys": [jwk]}).to_string()),
        });
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(IssuerError::TlsVersions)?
            .with_no_client_auth()
            .with_single_cert(cert_chain, key)
            .map_err(IssuerError::Certificate)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        tokio::spawn(serve(listener, acceptor, documents));
        Ok(CiIssuer {
            url,
            signer,
            audience: audience.to_owned(),
        })
    }

    /// Returns a fresh GitHub-shaped ID token (unique `jti`) the CI grant accepts, issued at
    /// `now` and valid for five minutes. Fails with [`IssuerError::Token`] if it cannot be
    /// signed.
    pub fn token(&self, n: u64, now: i64) -> Result<String, IssuerError> {
        let mut claims = fixtures::github_claims(&self.url, now, &format!("bench-{now}-{n}"));
        claims["aud"] = self.audience.as_str().into();
        self.signer.sign(&claims).map_err(IssuerError::Token)
    }
}

struct Documents {
    discovery: Bytes,
    jwks: Bytes,
}

async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    documents: Arc<Documents>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, documents) = (acceptor.clone(), Arc::clone(&documents));
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let documents = Arc::clone(&documents);
                async move { Ok::<_, std::convert::Infallible>(answer(&documents, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn answer<B>(documents: &Documents, request: &Request<B>) -> Response<Full<Bytes>> {
    let body = match request.uri().path() {
        "/.well-known/openid-configuration" => Some(documents.discovery.clone()),
        "/jwks" => Some(documents.jwks.clone()),
        _ => None,
    };
    let mut response = Response::new(Full::new(body.clone().unwrap_or_default()));
    if body.is_none() {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
