//! A fake CI OIDC issuer inside the test process: HTTPS with its own CA, discovery and JWKS
//! under several tenants (`/github`, `/gitlab`, `/k8s`), RS256 keys it can rotate, a count of
//! JWKS fetches, and GitHub, GitLab and Kubernetes tokens signed with its current key.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use axum::extract::{Path, State};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use crate::dev::{Certified, LeafSpec, pki};
use crate::fixtures::{CI_AUDIENCE, github_claims, oidc_issuer_toml};
use crate::harness::{now, offset_now};

struct Key {
    kid: String,
    pair: RsaKeyPair,
}

impl Key {
    fn generate(kid: &str) -> Key {
        let rcgen_key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        Key {
            kid: kid.into(),
            pair: RsaKeyPair::from_pkcs8(&rcgen_key.serialize_der()).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)})
    }
}

#[derive(Default)]
struct Shared {
    keys: Mutex<Vec<Arc<Key>>>,
    jwks_fetches: AtomicU64,
    base: Mutex<String>,
    /// How long each answer waits (milliseconds): a slow issuer.
    delay_ms: AtomicU64,
}

/// The running issuer; it stops serving when dropped.
pub struct TestIssuer {
    pub ca: Certified,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

async fn discovery(State(s): State<Arc<Shared>>, Path(tenant): Path<String>) -> axum::Json<Value> {
    slow(&s).await;
    let base = s.base.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": format!("{base}/{tenant}"),
        "jwks_uri": format!("{base}/{tenant}/jwks"),
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(State(s): State<Arc<Shared>>) -> axum::Json<Value> {
    slow(&s).await;
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = s.keys.lock().unwrap().iter().map(|k| k.jwk()).collect();
    axum::Json(json!({ "keys": keys }))
}

/// Waits as long as the issuer was told to ([`TestIssuer::set_delay`]).
async fn slow(s: &Shared) {
    let ms = s.delay_ms.load(Ordering::SeqCst);
    if ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestIssuer {
    /// Starts serving on 127.0.0.1 (a free port) with a fresh CA and key `key-1`; returns once
    /// the listener is bound. Panics if the material cannot be made or the port bound.
    pub async fn start() -> TestIssuer {
        let (ca, tls) = tls_material();
        let shared = Arc::new(Shared::default());
        shared
            .keys
            .lock()
            .unwrap()
            .push(Arc::new(Key::generate("key-1")));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *shared.base.lock().unwrap() = format!("https://{addr}");
        let router = axum::Router::new()
            .route("/{tenant}/.well-known/openid-configuration", get(discovery))
            .route("/{tenant}/jwks", get(jwks))
            .with_state(Arc::clone(&shared));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let task = tokio::spawn(serve(listener, acceptor, router));
        TestIssuer {
            ca,
            addr,
            shared,
            task,
        }
    }

    /// Writes the issuer's CA certificate (PEM) to `path`, for an `[[oidc_issuer]] ca_file`.
    /// Panics if it cannot be written.
    pub fn write_ca(&self, path: &std::path::Path) {
        std::fs::write(path, &self.ca.cert_pem).unwrap();
    }

    /// The issuer URL of `tenant`.
    pub fn url(&self, tenant: &str) -> String {
        format!("https://{}/{tenant}", self.addr)
    }

    /// Returns how many times the JWKS has been served.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Makes every answer (discovery, JWKS) wait `delay` first.
    pub fn set_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Replaces every key with a new one named `kid`.
    pub fn rotate(&self, kid: &str) {
        *self.shared.keys.lock().unwrap() = vec![Arc::new(Key::generate(kid))];
    }

    /// Stops serving (the issuer is down).
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Returns `claims` signed RS256 with the current key (header `kid` names it).
    pub fn sign(&self, claims: &Value) -> String {
        let key = Arc::clone(&self.shared.keys.lock().unwrap()[0]);
        sign_with(
            &key.pair,
            &json!({"alg": "RS256", "typ": "JWT", "kid": key.kid}),
            claims,
        )
    }

    /// Returns the current key's public half as a DER `RSAPublicKey`, for verifying what
    /// [`TestIssuer::sign`] signs without the broker (benchmarks' bare-crypto baseline).
    pub fn public_key_der(&self) -> Vec<u8> {
        let key = Arc::clone(&self.shared.keys.lock().unwrap()[0]);
        key.pair.public_key().as_ref().to_vec()
    }

    /// Returns the `[[oidc_issuer]]` sections for the three tenants, trusting this issuer's CA
    /// (written by the caller to `ca_file`).
    pub fn config(&self, ca_file: &std::path::Path) -> String {
        [
            ("github", "github"),
            ("gitlab", "gitlab"),
            ("k8s", "kubernetes"),
        ]
        .iter()
        .map(|(tenant, profile)| oidc_issuer_toml(&self.url(tenant), profile, ca_file))
        .collect()
    }

    /// Returns a GitHub Actions token for `acme/app` on `main` (the claims of
    /// [`github_claims`]), with `extra` claims merged over it.
    pub fn github_token(&self, extra: Value) -> String {
        let jti = format!("gh-{}", rand_hex());
        let mut claims = github_claims(&self.url("github"), now(), &jti);
        merge(&mut claims, extra);
        self.sign(&claims)
    }

    /// Returns a GitLab CI token for project `acme/app` (id 42) on branch `main`, with `extra`
    /// claims merged over it.
    pub fn gitlab_token(&self, extra: Value) -> String {
        let t = now();
        let mut claims = json!({
            "iss": self.url("gitlab"), "aud": CI_AUDIENCE, "iat": t, "nbf": t, "exp": t + 300,
            "jti": format!("gl-{}", rand_hex()), "sub": "project_path:acme/app:ref_type:branch:ref:main",
            "project_path": "acme/app", "project_id": "42", "namespace_id": "7", "namespace_path": "acme",
            "pipeline_id": "77", "job_id": "770", "ref": "main", "ref_type": "branch", "ref_protected": "true",
        });
        merge(&mut claims, extra);
        self.sign(&claims)
    }

    /// Returns a projected Kubernetes service account token for `batch/etl`, with `extra`
    /// claims merged over it.
    pub fn kubernetes_token(&self, extra: Value) -> String {
        let t = now();
        let mut claims = json!({
            "iss": self.url("k8s"), "aud": [CI_AUDIENCE], "iat": t, "nbf": t, "exp": t + 600,
            "sub": "system:serviceaccount:batch:etl",
            "kubernetes.io": {"namespace": "batch", "serviceaccount": {"name": "etl", "uid": "sa-uid"},
                              "pod": {"name": "etl-1", "uid": "pod-uid-1"}, "node": {"name": "n1", "uid": "node-uid"}},
        });
        merge(&mut claims, extra);
        self.sign(&claims)
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returns a fresh CA, valid from an hour ago for three hours, and a TLS server config with a
/// leaf for 127.0.0.1 under it.
pub(crate) fn tls_material() -> (Certified, rustls::ServerConfig) {
    let (nb, na) = (
        offset_now() - ::time::Duration::hours(1),
        offset_now() + ::time::Duration::hours(2),
    );
    let ca = pki::ca("test OIDC issuer CA", None, None, nb, na).unwrap();
    let mut spec = LeafSpec::svid("spiffe://unused/x", nb, na);
    spec.uris.clear();
    spec.ips = vec![std::net::Ipv4Addr::LOCALHOST.into()];
    let leaf = pki::leaf(&spec, &ca).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.cert_der.clone().into()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der())),
        )
        .unwrap();
    (ca, config)
}

/// Serves `router` over TLS, HTTP/1.1, on every connection `listener` accepts, until the
/// listener fails or the task is aborted.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Returns the compact JWS of `claims` under `header`, signed RS256 with `pair`.
fn sign_with(pair: &RsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Sets or (for `null`) removes top-level claims.
fn merge(claims: &mut Value, extra: Value) {
    let (Some(base), Value::Object(extra)) = (claims.as_object_mut(), extra) else {
        return;
    };
    for (k, v) in extra {
        if v.is_null() {
            base.remove(&k);
        } else {
            base.insert(k, v);
        }
    }
}

/// Returns 16 random hex digits.
pub fn rand_hex() -> String {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}
