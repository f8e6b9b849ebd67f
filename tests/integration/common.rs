//! Shared fixtures: a fresh PKI, config and running server per test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tessera_core::clock::{SharedClock, SystemClock};
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::{MintJwtRequest, MintJwtResponse};
use tessera_server::config::Config;
use tessera_server::server::ServerHandle;
use tessera_testkit::dev::{Certified, DevMaterial, LeafSpec, pki};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// Destination and purpose granted to the dev workload.
pub const DEST: &str = "https://ledger.example.org";
pub const PURPOSE: &str = "ledger:write";
/// A workload whose grant allows only JWTs.
pub const JWT_ONLY_ID: &str = "spiffe://example.org/ns/reports/sa/cron";

/// Extra grants every test environment has.
pub const EXTRA_GRANTS: &str = r#"
[[grant]]
name = "reports-cron"
workload = "spiffe://example.org/ns/reports/sa/cron"
owner = "team-reports"
expires = "2099-01-01"
destinations = ["https://reports.example.org"]
purposes = ["reports:read"]
[grant.match]
spiffe_id = "spiffe://example.org/ns/reports/sa/cron"
"#;

pub fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

pub fn offset_now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(now()).unwrap()
}

/// A test directory with dev material and a config that listens on 127.0.0.1:0.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub material: DevMaterial,
    pub config_path: PathBuf,
    pub ledger_path: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_extra(EXTRA_GRANTS)
    }

    pub fn with_extra(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let material = DevMaterial::generate(offset_now()).unwrap();
        material.write(dir.path()).unwrap();
        let ledger_path = dir.path().join("data/ledger.redb");
        let toml = material.config_toml(dir.path(), "127.0.0.1:0", "127.0.0.1:0", &ledger_path);
        let config_path = dir.path().join("test.toml");
        std::fs::write(&config_path, format!("{toml}\n{extra}")).unwrap();
        Fixture {
            dir,
            material,
            config_path,
            ledger_path,
        }
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path, &SystemClock).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues an X509-SVID leaf from the trust domain CA.
    pub fn svid(&self, spec: &LeafSpec) -> Certified {
        pki::leaf(spec, &self.material.spiffe_ca).unwrap()
    }

    /// A valid X509-SVID spec for `uri`.
    pub fn svid_spec(uri: &str) -> LeafSpec {
        LeafSpec::svid(
            uri,
            offset_now() - time::Duration::hours(1),
            offset_now() + time::Duration::hours(1),
        )
    }

    /// A JWT-SVID for `sub` with our audience, signed by the trust domain's JWT key.
    pub fn jwt_svid(&self, sub: &str) -> String {
        self.material
            .jwt_svid_signer
            .svid(sub, "tessera", now(), 120)
            .unwrap()
    }
}

/// A running server with its fixture.
pub struct Env {
    pub fx: Fixture,
    pub server: Option<ServerHandle>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Env {
    pub async fn start() -> Env {
        Self::start_fixture(Fixture::new()).await
    }

    pub async fn start_fixture(fx: Fixture) -> Env {
        Self::start_with_clock(fx, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(fx: Fixture, clock: SharedClock) -> Env {
        let server = tessera_server::server::start(fx.config(), clock)
            .await
            .unwrap();
        let (grpc, http) = (server.grpc_addr(), server.http_addr());
        Env {
            fx,
            server: Some(server),
            grpc,
            http,
        }
    }

    /// A gRPC client, presenting `identity` as client certificate when given.
    pub async fn client(&self, identity: Option<&Certified>) -> BrokerClient<Channel> {
        BrokerClient::new(self.channel(identity).await)
    }

    pub async fn channel(&self, identity: Option<&Certified>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.fx.material.tls_ca.cert_pem))
            .domain_name("localhost");
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(&id.cert_pem, id.key_pem()));
        }
        Endpoint::from_shared(format!("https://{}", self.grpc))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// The dev workload's client, over mTLS.
    pub async fn workload_client(&self) -> BrokerClient<Channel> {
        self.client(Some(&self.fx.material.workload)).await
    }

    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}

/// Calls MintJwt, with `bearer` as `authorization: Bearer` when given.
pub async fn mint(
    client: &mut BrokerClient<Channel>,
    destination: &str,
    purpose: &str,
    ttl_seconds: u32,
    bearer: Option<&str>,
) -> Result<MintJwtResponse, Status> {
    let mut request = Request::new(MintJwtRequest {
        destination: destination.into(),
        purpose: purpose.into(),
        ttl_seconds,
    });
    if let Some(token) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    client
        .mint_jwt(request)
        .await
        .map(tonic::Response::into_inner)
}

/// A minimal HTTPS GET, trusting the fixture's TLS CA; returns status, content type and body.
pub async fn https_get(env: &Env, path: &str) -> (u16, String, Vec<u8>) {
    let r = https_request(env, "GET", path, None).await;
    let content_type = r.header("content-type");
    (r.status, content_type, r.body)
}

/// A response of [`https_request`].
pub struct HttpReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// POSTs a form to the broker's HTTPS port.
pub async fn post_form(env: &Env, path: &str, pairs: &[(&str, &str)]) -> HttpReply {
    post_form_as(env, path, pairs, None).await
}

/// POSTs a form with `authorization: Bearer <bearer>` when given.
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

/// A minimal HTTPS request to the broker, trusting the fixture's TLS CA.
pub async fn https_request(env: &Env, method: &str, path: &str, form: Option<String>) -> HttpReply {
    https_request_as(env, method, path, form, None).await
}

/// Like [`https_request`], with an optional bearer token.
pub async fn https_request_as(
    env: &Env,
    method: &str,
    path: &str,
    form: Option<String>,
    bearer: Option<&str>,
) -> HttpReply {
    use http_body_util::BodyExt;
    use rustls::pki_types::ServerName;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(env.fx.material.tls_ca.cert_der.clone().into())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(env.http).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
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
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    HttpReply {
        status,
        headers,
        body,
    }
}
