//! A minimal HTTPS/1.1 client for the broker's HTTP port in tests: GETs and form POSTs,
//! trusting the fixture's TLS CA, with an optional bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use rustls::pki_types::ServerName;

use super::{Env, Fixture};

/// A response of [`https_request`].
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// Returns the header `name`, or "" when absent. Panics if it is not ASCII.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// Returns the body as JSON. Panics if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Returns the names of the JSON body's top-level members, sorted. Panics if the body is
    /// not a JSON object.
    pub fn json_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.json().as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Returns the body as text (invalid UTF-8 replaced), for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GETs `path`; returns status, content type and body.
pub async fn https_get(env: &Env, path: &str) -> (u16, String, Vec<u8>) {
    let r = https_request(env, "GET", path, None).await;
    let content_type = r.header("content-type");
    (r.status, content_type, r.body)
}

/// POSTs a form to the broker's HTTPS port; returns the reply.
pub async fn post_form(env: &Env, path: &str, pairs: &[(&str, &str)]) -> HttpReply {
    post_form_as(env, path, pairs, None).await
}

/// POSTs a form with `authorization: Bearer <bearer>` when given; returns the reply.
pub async fn post_form_as(
    env: &Env,
    path: &str,
    pairs: &[(&str, &str)],
    bearer: Option<&str>,
) -> HttpReply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    https_request_as(env, "POST", path, Some(body), bearer).await
}

/// Sends one request to the broker's HTTPS port, trusting the fixture's TLS CA; returns the
/// reply.
pub async fn https_request(env: &Env, method: &str, path: &str, form: Option<String>) -> HttpReply {
    https_request_as(env, method, path, form, None).await
}

/// Like [`https_request`], with an optional bearer token. Panics if the connection or the
/// exchange fails (an HTTP error status is a reply, not a failure).
pub async fn https_request_as(
    env: &Env,
    method: &str,
    path: &str,
    form: Option<String>,
    bearer: Option<&str>,
) -> HttpReply {
    https_request_to(&env.fx, env.http, method, path, form, bearer).await
}

/// Like [`https_request_as`], to the HTTPS port `http` of any server on `fx`'s material (a
/// replica in a process of its own, say).
pub async fn https_request_to(
    fx: &Fixture,
    http: SocketAddr,
    method: &str,
    path: &str,
    form: Option<String>,
    bearer: Option<&str>,
) -> HttpReply {
    let mut sender = connect(fx, http).await;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if form.is_some() {
        request = request.header("content-type", "application/x-www-form-urlencoded");
    }
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(
            form.unwrap_or_default(),
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    HttpReply {
        status,
        headers,
        body: body.to_vec(),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// Returns an HTTP/1.1 connection to the HTTPS port `http`, verified against the fixture's
/// TLS CA as `localhost`.
async fn connect(fx: &Fixture, http: SocketAddr) -> Sender {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(fx.material.tls_ca.cert_der.clone().into())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}
