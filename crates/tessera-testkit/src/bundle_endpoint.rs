//! A fake SPIFFE bundle endpoint (`https_web`) inside the test process: HTTPS with its own CA
//! (the same material as the fake CI issuer), serving at `/bundle` a SPIFFE bundle document the
//! test replaces at will, and counting how many times it was served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::ci_issuer::{serve, tls_material};
use crate::dev::{Certified, JwtSvidSigner};

/// What the endpoint serves now.
#[derive(Debug, Default)]
struct Shared {
    body: Mutex<String>,
    fetches: AtomicU64,
}

/// A running bundle endpoint; it stops when dropped.
pub struct BundleEndpointServer {
    ca: Certified,
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for BundleEndpointServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleEndpointServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Returns a SPIFFE bundle document: an `x509-svid` key per root (its certificate in `x5c`),
/// a `jwt-svid` key per signer, `spiffe_sequence` and `spiffe_refresh_hint` (seconds).
pub fn spiffe_bundle(
    roots: &[&Certified],
    signers: &[&JwtSvidSigner],
    sequence: u64,
    refresh_hint: u64,
) -> Value {
    let mut keys: Vec<Value> = roots
        .iter()
        .map(|ca| json!({"kty": "EC", "use": "x509-svid", "x5c": [STANDARD.encode(&ca.cert_der)]}))
        .collect();
    keys.extend(signers.iter().map(|s| s.bundle_jwk()));
    json!({"keys": keys, "spiffe_sequence": sequence, "spiffe_refresh_hint": refresh_hint})
}

async fn bundle(
    State(s): State<Arc<Shared>>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    s.fetches.fetch_add(1, Ordering::SeqCst);
    let body = s.body.lock().unwrap().clone();
    (StatusCode::OK, [("content-type", "application/json")], body)
}

impl BundleEndpointServer {
    /// Starts serving `document` on 127.0.0.1 (a free port) with a fresh CA; returns once the
    /// listener is bound. Panics if the material cannot be made or the port bound.
    pub async fn start(document: &Value) -> BundleEndpointServer {
        let (ca, tls) = tls_material();
        let shared = Arc::new(Shared::default());
        *shared.body.lock().unwrap() = document.to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/bundle", get(bundle))
            .with_state(Arc::clone(&shared));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let task = tokio::spawn(serve(listener, acceptor, router));
        BundleEndpointServer {
            ca,
            addr,
            shared,
            task,
        }
    }

    /// Serves `body` (any text, a bundle document or not) from now on.
    pub fn serve_text(&self, body: &str) {
        *self.shared.body.lock().unwrap() = body.to_owned();
    }

    /// Serves `document` from now on.
    pub fn serve(&self, document: &Value) {
        self.serve_text(&document.to_string());
    }

    /// Returns how many times the bundle was served.
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::SeqCst)
    }

    /// Writes the endpoint's CA certificate (PEM) to `path`, for `bundle_endpoint_ca`. Panics
    /// if it cannot be written.
    pub fn write_ca(&self, path: &std::path::Path) {
        std::fs::write(path, &self.ca.cert_pem).unwrap();
    }

    /// The bundle endpoint URL.
    pub fn url(&self) -> String {
        format!("https://{}/bundle", self.addr)
    }
}

impl Drop for BundleEndpointServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
