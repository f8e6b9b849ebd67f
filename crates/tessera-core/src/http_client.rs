//! A small HTTPS client for talking to OIDC issuers and to the broker itself: rustls with the
//! aws-lc-rs provider, the Mozilla roots plus any configured extra root, bounded time and body
//! size, and no redirects (a 3xx is an error, so an issuer cannot bounce us elsewhere).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use rustls::pki_types::{CertificateDer, ServerName};

/// Longest a request may take, connect to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("`{0}` is not an https URL with a host")]
    Url(String),
    #[error("connecting to {0} failed: {1}")]
    Connect(String, String),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    #[error("request to {0} failed: {1}")]
    Request(String, String),
    #[error("{0} answered a redirect, which is not followed")]
    Redirect(String),
    #[error("{0} answered HTTP {1}")]
    Status(String, u16),
    #[error("{0} took longer than {REQUEST_TIMEOUT:?}")]
    Timeout(String),
    #[error("reading the response of {0} failed, or it is larger than {MAX_BODY} bytes")]
    TooLarge(String),
    #[error("TLS client configuration: {0}")]
    Config(String),
}

/// The one extra header a request carries, if any.
#[derive(Debug, Clone, Copy)]
enum ExtraHeader<'a> {
    /// `authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `accept: <media type>`.
    Accept(&'a str),
}

/// A successful (2xx) response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Bytes,
}

/// An HTTPS client; cheap to clone.
#[derive(Clone)]
pub struct HttpsClient {
    tls: tokio_rustls::TlsConnector,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient").finish_non_exhaustive()
    }
}

/// A TLS connector (aws-lc-rs, safe default versions, ALPN `http/1.1`, no client
/// certificate) trusting exactly `roots`. Fails only if the provider refuses the versions.
pub fn http1_connector(
    roots: rustls::RootCertStore,
) -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl HttpsClient {
    /// Trusts the Mozilla root set plus `extra_roots`. Fails when a root is unusable.
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Result<Self, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| HttpError::Config(e.to_string()))?;
        }
        Ok(HttpsClient {
            tls: http1_connector(roots).map_err(|e| HttpError::Config(e.to_string()))?,
        })
    }

    /// GETs `url`; returns a 2xx response. Fails on any other status, a redirect, a body over
    /// [`MAX_BODY`], or after [`REQUEST_TIMEOUT`].
    pub async fn get(&self, url: &str) -> Result<HttpResponse, HttpError> {
        self.send(url, "GET", None, None).await
    }

    /// Like [`HttpsClient::get`], asking for media type `accept` (`Accept` header).
    pub async fn get_accept(&self, url: &str, accept: &str) -> Result<HttpResponse, HttpError> {
        self.send(url, "GET", None, Some(ExtraHeader::Accept(accept)))
            .await
    }

    /// POSTs an `application/x-www-form-urlencoded` body; returns the response whatever its
    /// status (OAuth endpoints answer errors with JSON bodies). Fails like [`HttpsClient::get`]
    /// otherwise.
    pub async fn post_form(&self, url: &str, form: String) -> Result<HttpResponse, HttpError> {
        self.send(url, "POST", Some(form), None).await
    }

    /// Like [`HttpsClient::post_form`], authenticated with `authorization: Bearer <bearer>`.
    pub async fn post_form_bearer(
        &self,
        url: &str,
        form: String,
        bearer: &str,
    ) -> Result<HttpResponse, HttpError> {
        self.send(url, "POST", Some(form), Some(ExtraHeader::Bearer(bearer)))
            .await
    }

    async fn send(
        &self,
        url: &str,
        method: &str,
        form: Option<String>,
        extra: Option<ExtraHeader<'_>>,
    ) -> Result<HttpResponse, HttpError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(url, method, form, extra))
            .await
            .map_err(|_| HttpError::Timeout(url.to_owned()))?
    }

    async fn send_inner(
        &self,
        url: &str,
        method: &str,
        form: Option<String>,
        extra: Option<ExtraHeader<'_>>,
    ) -> Result<HttpResponse, HttpError> {
        let uri: hyper::Uri = url.parse().map_err(|_| HttpError::Url(url.to_owned()))?;
        let host = uri
            .host()
            .filter(|_| uri.scheme_str() == Some("https"))
            .ok_or_else(|| HttpError::Url(url.to_owned()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect(url.to_owned(), e.to_string()))?;
        let name =
            ServerName::try_from(host.clone()).map_err(|_| HttpError::Url(url.to_owned()))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Tls(url.to_owned(), e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| HttpError::Request(url.to_owned(), e.to_string()))?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, authority)
            .header(USER_AGENT, "tessera");
        if form.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        match extra {
            Some(ExtraHeader::Bearer(token)) => {
                builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            Some(ExtraHeader::Accept(accept)) => {
                builder = builder.header(hyper::header::ACCEPT, accept)
            }
            None => {}
        }
        let request = builder
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|e| HttpError::Request(url.to_owned(), e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| HttpError::Request(url.to_owned(), e.to_string()))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(HttpError::Redirect(url.to_owned()));
        }
        if method == "GET" && !status.is_success() {
            return Err(HttpError::Status(url.to_owned(), status.as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| HttpError::TooLarge(url.to_owned()))?
            .to_bytes();
        Ok(HttpResponse {
            status: status.as_u16(),
            body,
        })
    }
}
