//! The real-server harness: a [`Fixture`] (fresh dev PKI and a config listening on
//! 127.0.0.1:0), an [`Env`] that starts the real server on it with real TLS, and gRPC and
//! HTTPS clients that talk to it over mTLS or with a bearer token; a [`Relay`] in front of it
//! makes it unreachable and reachable again on the same address.

mod https;
mod relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tessera_core::clock::{SharedClock, SystemClock};
use tessera_proto::admin_client::AdminClient;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::{MintJwtRequest, MintJwtResponse};
use tessera_server::config::Config;
use tessera_server::server::ServerHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::dev::{Certified, DevMaterial, LeafSpec, pki};

pub use self::https::{
    HttpReply, https_get, https_request, https_request_as, https_request_to, post_form,
    post_form_as,
};
pub use self::relay::Relay;

/// Destination and purpose granted to the dev workload.
pub const DEST: &str = "https://ledger.example.org";
pub const PURPOSE: &str = "ledger:write";
/// A workload whose grant allows only JWTs.
pub const JWT_ONLY_ID: &str = "spiffe://example.org/ns/reports/sa/cron";

/// Extra grants every test environment has: `reports-cron` lets [`JWT_ONLY_ID`] mint JWTs
/// (and only JWTs) for the reports service.
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

/// Returns the current Unix time in seconds. Panics if the system clock is before 1970.
pub fn now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_secs()).unwrap()
}

/// Returns [`now`] as an `OffsetDateTime`.
pub fn offset_now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(now()).unwrap()
}

/// A test directory with dev material and a config that listens on 127.0.0.1:0.
#[derive(Debug)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub material: DevMaterial,
    pub config_path: PathBuf,
    pub ledger_path: PathBuf,
}

impl Fixture {
    /// Returns a fixture whose config has the dev grants and [`EXTRA_GRANTS`].
    pub fn new() -> Fixture {
        Self::with_extra(EXTRA_GRANTS)
    }

    /// Returns a fixture whose config is the dev config followed by `extra` (TOML). Panics if
    /// the material cannot be made or written.
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

    /// Appends `toml` to the config file. Panics if the file cannot be read or written.
    pub fn append_config(&self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config_path).unwrap();
        text.push_str(toml);
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Rewrites the config so that its trust domain takes both bundles from the SPIFFE Workload
    /// API at `endpoint` (`workload_api = …` in place of `x509_bundle` and `jwt_bundle`).
    /// Panics if the file cannot be read or written.
    pub fn use_workload_api(&self, endpoint: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("x509_bundle = ") {
                out.push_str(&format!(
                    "workload_api = {}\n",
                    crate::dev::toml_str(endpoint)
                ));
            } else if !line.starts_with("jwt_bundle = ") {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(&self.config_path, out).unwrap();
    }

    /// Returns the loaded config. Panics if it does not load.
    pub fn config(&self) -> Config {
        Config::load(&self.config_path, &SystemClock).unwrap()
    }

    /// Returns the path of `name` in the fixture's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Returns an X509-SVID leaf issued by the trust domain CA. Panics if `spec` is unusable.
    pub fn svid(&self, spec: &LeafSpec) -> Certified {
        pki::leaf(spec, &self.material.spiffe_ca).unwrap()
    }

    /// Returns a valid X509-SVID spec for `uri`, valid from an hour ago for two hours.
    pub fn svid_spec(uri: &str) -> LeafSpec {
        LeafSpec::svid(
            uri,
            offset_now() - time::Duration::hours(1),
            offset_now() + time::Duration::hours(1),
        )
    }

    /// Returns a channel to the gRPC port `grpc` of a server on this fixture's material
    /// (trusting its TLS CA), presenting `identity` as client certificate when given. Panics if
    /// it cannot connect.
    pub async fn channel_to(&self, grpc: SocketAddr, identity: Option<&Certified>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.material.tls_ca.cert_pem))
            .domain_name("localhost");
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(&id.cert_pem, id.key_pem()));
        }
        Endpoint::from_shared(format!("https://{grpc}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Returns a JWT-SVID for `sub` with our audience, signed by the trust domain's JWT key.
    pub fn jwt_svid(&self, sub: &str) -> String {
        self.material
            .jwt_svid_signer
            .svid(sub, "tessera", now(), 120)
            .unwrap()
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// A running server with its fixture.
#[derive(Debug)]
pub struct Env {
    pub fx: Fixture,
    pub server: Option<ServerHandle>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Env {
    /// Starts the server on a fresh [`Fixture::new`].
    pub async fn start() -> Env {
        Self::start_fixture(Fixture::new()).await
    }

    /// Starts the server on `fx` with the system clock.
    pub async fn start_fixture(fx: Fixture) -> Env {
        Self::start_with_clock(fx, Arc::new(SystemClock)).await
    }

    /// Starts the server on `fx` with `clock`. Panics if the server does not start.
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

    /// Shuts the server down and starts it again on the same fixture (config and ledger), on
    /// new ports; returns the new environment.
    pub async fn restart(mut self) -> Env {
        self.shutdown().await;
        Env::start_fixture(self.fx).await
    }

    /// Returns a gRPC broker client, presenting `identity` as client certificate when given.
    pub async fn client(&self, identity: Option<&Certified>) -> BrokerClient<Channel> {
        BrokerClient::new(self.channel(identity).await)
    }

    /// Returns a channel to the gRPC port trusting the fixture's TLS CA, presenting `identity`
    /// as client certificate when given. Panics if it cannot connect.
    pub async fn channel(&self, identity: Option<&Certified>) -> Channel {
        self.fx.channel_to(self.grpc, identity).await
    }

    /// Returns the dev workload's client, over mTLS.
    pub async fn workload_client(&self) -> BrokerClient<Channel> {
        self.client(Some(&self.fx.material.workload)).await
    }

    /// Returns the dev admin's admin client, over mTLS.
    pub async fn admin_client(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel(Some(&self.fx.material.admin)).await)
    }

    /// Shuts the server down (once; later calls do nothing). Panics if shutdown fails.
    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}

/// Calls MintJwt, with `bearer` as `authorization: Bearer` when given; returns the response
/// or the status the broker refused with.
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

/// Returns a fresh PKCS#10 CSR (DER) for a new P-256 key, for MintX509.
pub fn csr_der() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

/// Returns the serials (hex, no colons) a DER CRL lists. Panics if `der` is not a CRL.
pub fn crl_serials(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', ""))
        .collect()
}
