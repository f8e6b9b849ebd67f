//! A SPIFFE Workload API server for tests: the `SpiffeWorkloadAPI` service of the vendored
//! `proto/spiffe/workload/workload.proto`, served with tonic on a Unix socket, as a SPIRE agent
//! serves it. It requires the `workload.spiffe.io: true` header on every call (else
//! `InvalidArgument`), streams `FetchX509SVID`, `FetchX509Bundles` and `FetchJWTBundles` (the full
//! state first, then again on every change), signs `FetchJWTSVID` answers when given a signer,
//! and answers `ValidateJWTSVID` with `Unimplemented`.
//!
//! A test starts it with [`WorkloadApiServer::start`] and the [`WorkloadApiMaterial`] it serves,
//! then rotates bundles or the SVID mid-test ([`WorkloadApiServer::rotate_x509_bundle`],
//! [`WorkloadApiServer::rotate_jwt_bundle`], [`WorkloadApiServer::set_svid`], …): every open
//! stream is sent the new state at once. [`WorkloadApiServer::stop`] takes it away as a killed
//! agent goes (streams cut, socket removed); `start` on the same path brings one back.
//! DEV AND TEST ONLY.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tessera_proto::spiffe_workload as pb;
use tessera_proto::spiffe_workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::dev::{DevMaterial, TRUST_DOMAIN, WORKLOAD_ID};
use crate::pki::{Certified, JwtSvidSigner};

/// The header every Workload API call must carry (SPIFFE Workload Endpoint §3).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";
/// Lifetime of the JWT-SVIDs `FetchJWTSVID` signs, in seconds.
pub const JWT_SVID_TTL_SECS: i64 = 300;

/// An X509-SVID as the Workload API hands it out: chain (leaf first) and PKCS#8 key, DER.
#[derive(Clone)]
pub struct Svid {
    pub spiffe_id: String,
    pub chain_der: Vec<Vec<u8>>,
    pub key_pkcs8_der: Vec<u8>,
    pub hint: String,
}

impl fmt::Debug for Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Svid")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain", &self.chain_der.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Svid {
    /// Returns the SVID `spiffe_id` of the leaf `leaf` (chain: the leaf alone).
    pub fn of(spiffe_id: &str, leaf: &Certified) -> Svid {
        Svid {
            spiffe_id: spiffe_id.to_owned(),
            chain_der: vec![leaf.cert_der.clone()],
            key_pkcs8_der: leaf.key.serialize_der(),
            hint: String::new(),
        }
    }
}

/// What the server serves. Trust domains are named without scheme (`example.org`); on the wire
/// bundles are keyed by the trust domain's SPIFFE ID (`spiffe://example.org`).
#[derive(Clone, Debug, Default)]
pub struct WorkloadApiMaterial {
    /// The SVID of `FetchX509SVID` (and the subject of `FetchJWTSVID`); none answers
    /// `PermissionDenied`, as an agent does for a workload it has no entry for.
    pub svid: Option<Svid>,
    /// DER roots by trust domain: the SVID's own and federated ones.
    pub x509_bundles: BTreeMap<String, Vec<Vec<u8>>>,
    /// JWKS documents by trust domain.
    pub jwt_bundles: BTreeMap<String, serde_json::Value>,
    /// Signs `FetchJWTSVID` answers; none answers `Unimplemented`.
    pub jwt_signer: Option<Arc<JwtSvidSigner>>,
}

impl WorkloadApiMaterial {
    /// Returns material with one trust domain `trust_domain`: its X.509 root `root` and the JWT
    /// key of `signer` (which also signs `FetchJWTSVID` answers), and no SVID.
    pub fn bundles(trust_domain: &str, root: &Certified, signer: Arc<JwtSvidSigner>) -> Self {
        let mut material = WorkloadApiMaterial::default();
        material
            .x509_bundles
            .insert(trust_domain.to_owned(), vec![root.cert_der.clone()]);
        material
            .jwt_bundles
            .insert(trust_domain.to_owned(), jwks(&[&signer]));
        material.jwt_signer = Some(signer);
        material
    }
}

impl WorkloadApiMaterial {
    /// Returns what a SPIRE agent of the dev trust domain would serve for `material`: the
    /// domain's SPIFFE root and JWT-SVID key (which signs `FetchJWTSVID` answers), and the dev
    /// workload's X509-SVID.
    pub fn of_dev(material: &DevMaterial) -> Self {
        let signer = JwtSvidSigner::from_pkcs8_pem(
            material.jwt_svid_signer.key_pem(),
            &material.jwt_svid_signer.kid,
        )
        .unwrap();
        let mut served = Self::bundles(TRUST_DOMAIN, &material.spiffe_ca, Arc::new(signer));
        served.svid = Some(Svid::of(WORKLOAD_ID, &material.workload));
        served
    }
}

/// Returns a JWKS holding the `use: jwt-svid` keys of `signers`.
pub fn jwks(signers: &[&JwtSvidSigner]) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = signers.iter().map(|s| s.bundle_jwk()).collect();
    serde_json::json!({ "keys": keys })
}

/// A running Workload API server on a Unix socket.
pub struct WorkloadApiServer {
    path: PathBuf,
    state: Arc<watch::Sender<WorkloadApiMaterial>>,
    /// Ends every stream and stops serving.
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl fmt::Debug for WorkloadApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WorkloadApiServer {
    /// Serves `material` on a Unix socket at `socket_path` (a stale socket file there is
    /// removed first). Panics if the socket cannot be bound.
    pub async fn start(socket_path: &Path, material: WorkloadApiMaterial) -> WorkloadApiServer {
        let _ = std::fs::remove_file(socket_path);
        let listener = tokio::net::UnixListener::bind(socket_path).unwrap();
        let state = Arc::new(watch::Sender::new(material));
        let stop = CancellationToken::new();
        let service = Service {
            state: Arc::clone(&state),
            stop: stop.clone(),
        };
        let server = SpiffeWorkloadApiServer::with_interceptor(service, require_header);
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming_shutdown(
                    UnixListenerStream::new(listener),
                    stopped.cancelled_owned(),
                )
                .await;
        });
        WorkloadApiServer {
            path: socket_path.to_owned(),
            state,
            stop,
            task,
        }
    }

    /// Returns the endpoint address clients use: `unix://<socket path>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Returns the socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Returns the material served now.
    pub fn material(&self) -> WorkloadApiMaterial {
        self.state.borrow().clone()
    }

    /// Changes the material with `change` and sends the new state on every open stream.
    pub fn update(&self, change: impl FnOnce(&mut WorkloadApiMaterial)) {
        self.state.send_modify(change);
    }

    /// Replaces the X.509 bundle of `trust_domain` (adding the domain if new) with `roots`.
    pub fn rotate_x509_bundle(&self, trust_domain: &str, roots: Vec<Vec<u8>>) {
        self.update(|m| {
            m.x509_bundles.insert(trust_domain.to_owned(), roots);
        });
    }

    /// Replaces the JWT bundle of `trust_domain` (adding the domain if new) with `jwks`.
    pub fn rotate_jwt_bundle(&self, trust_domain: &str, jwks: serde_json::Value) {
        self.update(|m| {
            m.jwt_bundles.insert(trust_domain.to_owned(), jwks);
        });
    }

    /// Adds (or replaces) the bundles of a federated trust domain.
    pub fn set_federated_bundles(
        &self,
        trust_domain: &str,
        roots: Vec<Vec<u8>>,
        jwks: serde_json::Value,
    ) {
        self.update(|m| {
            m.x509_bundles.insert(trust_domain.to_owned(), roots);
            m.jwt_bundles.insert(trust_domain.to_owned(), jwks);
        });
    }

    /// Stops serving any bundle of `trust_domain` (a federation relationship removed).
    pub fn remove_bundles(&self, trust_domain: &str) {
        self.update(|m| {
            m.x509_bundles.remove(trust_domain);
            m.jwt_bundles.remove(trust_domain);
        });
    }

    /// Replaces the served SVID (a rotation, or a first SVID).
    pub fn set_svid(&self, svid: Svid) {
        self.update(|m| m.svid = Some(svid));
    }

    /// Returns how many streams are open now (each stream watches the state).
    pub fn open_streams(&self) -> usize {
        self.state.receiver_count()
    }

    /// Goes away as a stopped agent does: every stream ends, every connection is closed and
    /// the socket file removed.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Refuses a call without `workload.spiffe.io: true` with `InvalidArgument`.
fn require_header(request: Request<()>) -> Result<Request<()>, Status> {
    match request.metadata().get(SECURITY_HEADER) {
        Some(value) if value.as_bytes() == b"true" => Ok(request),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// The service: every stream watches `state` until `stop`.
struct Service {
    state: Arc<watch::Sender<WorkloadApiMaterial>>,
    stop: CancellationToken,
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Service {
    /// Returns a stream of `answer(state)`: for the state now, then for each new state.
    fn watch<T: Send + 'static>(
        &self,
        answer: fn(&WorkloadApiMaterial) -> Result<T, Status>,
    ) -> Response<Streamed<T>> {
        let stream = WatchStream::new(self.state.subscribe())
            .map(move |m| answer(&m))
            .take_until(self.stop.clone().cancelled_owned());
        Response::new(Box::pin(stream))
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Service {
    type FetchX509SVIDStream = Streamed<pb::X509svidResponse>;
    type FetchX509BundlesStream = Streamed<pb::X509BundlesResponse>;
    type FetchJWTBundlesStream = Streamed<pb::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _request: Request<pb::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        Ok(self.watch(x509_svid_response))
    }

    async fn fetch_x509_bundles(
        &self,
        _request: Request<pb::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Ok(self.watch(|m| {
            Ok(pb::X509BundlesResponse {
                crl: Vec::new(),
                bundles: m
                    .x509_bundles
                    .iter()
                    .map(|(td, roots)| (td_id(td), roots.concat()))
                    .collect(),
            })
        }))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<pb::JwtsvidRequest>,
    ) -> Result<Response<pb::JwtsvidResponse>, Status> {
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let material = self.state.borrow().clone();
        let Some(signer) = material.jwt_signer else {
            return Err(Status::unimplemented("this test server signs no JWT-SVIDs"));
        };
        let svid = match material.svid {
            Some(svid) if request.spiffe_id.is_empty() || request.spiffe_id == svid.spiffe_id => {
                svid
            }
            _ => return Err(Status::permission_denied("no identity issued")),
        };
        let now = crate::harness::now();
        let claims = serde_json::json!({
            "sub": svid.spiffe_id, "aud": request.audience, "iat": now,
            "exp": now + JWT_SVID_TTL_SECS,
        });
        let token = signer
            .sign(&claims)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::JwtsvidResponse {
            svids: vec![pb::Jwtsvid {
                spiffe_id: svid.spiffe_id,
                svid: token,
                hint: svid.hint,
            }],
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        _request: Request<pb::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Ok(self.watch(|m| {
            Ok(pb::JwtBundlesResponse {
                bundles: m
                    .jwt_bundles
                    .iter()
                    .map(|(td, jwks)| (td_id(td), jwks.to_string().into_bytes()))
                    .collect(),
            })
        }))
    }

    async fn validate_jwtsvid(
        &self,
        _request: Request<pb::ValidateJwtsvidRequest>,
    ) -> Result<Response<pb::ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented(
            "this test server does not validate JWT-SVIDs",
        ))
    }
}

/// Returns the `FetchX509SVID` answer for `m`: its SVID with its own trust domain's bundle,
/// every other X.509 bundle as federated; `PermissionDenied` without an SVID.
fn x509_svid_response(m: &WorkloadApiMaterial) -> Result<pb::X509svidResponse, Status> {
    let svid = m
        .svid
        .as_ref()
        .ok_or_else(|| Status::permission_denied("no identity issued"))?;
    let own = own_trust_domain(&svid.spiffe_id);
    let bundle = m
        .x509_bundles
        .get(own)
        .map(|r| r.concat())
        .unwrap_or_default();
    Ok(pb::X509svidResponse {
        svids: vec![pb::X509svid {
            spiffe_id: svid.spiffe_id.clone(),
            x509_svid: svid.chain_der.concat(),
            x509_svid_key: svid.key_pkcs8_der.clone(),
            bundle,
            hint: svid.hint.clone(),
        }],
        crl: Vec::new(),
        federated_bundles: m
            .x509_bundles
            .iter()
            .filter(|(td, _)| td.as_str() != own)
            .map(|(td, roots)| (td_id(td), roots.concat()))
            .collect(),
    })
}

/// Returns the trust domain name of a SPIFFE ID (`example.org` of `spiffe://example.org/a`).
fn own_trust_domain(spiffe_id: &str) -> &str {
    let rest = spiffe_id.strip_prefix("spiffe://").unwrap_or(spiffe_id);
    rest.split('/').next().unwrap_or(rest)
}

/// Returns the SPIFFE ID of trust domain `name` (`spiffe://example.org`).
fn td_id(name: &str) -> String {
    format!("spiffe://{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki;
    use tessera_proto::spiffe_workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
    use tonic::transport::{Channel, Endpoint, Uri};

    fn material() -> (WorkloadApiMaterial, Certified) {
        let now = crate::harness::offset_now();
        let ca = pki::ca("td CA", None, None, now, now + time::Duration::hours(1)).unwrap();
        let spec = pki::LeafSpec::svid(
            "spiffe://example.org/w",
            now,
            now + time::Duration::hours(1),
        );
        let leaf = pki::leaf(&spec, &ca).unwrap();
        let signer = Arc::new(JwtSvidSigner::generate("k1").unwrap());
        let mut m = WorkloadApiMaterial::bundles("example.org", &ca, signer);
        m.svid = Some(Svid::of("spiffe://example.org/w", &leaf));
        (m, ca)
    }

    async fn channel(path: &Path) -> Channel {
        let path = path.to_owned();
        Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .unwrap()
    }

    fn with_header<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(SECURITY_HEADER, "true".parse().unwrap());
        request
    }

    #[tokio::test]
    async fn a_call_without_the_security_header_is_refused_with_invalid_argument() {
        let dir = tempfile::tempdir().unwrap();
        let server = WorkloadApiServer::start(&dir.path().join("a.sock"), material().0).await;
        let mut client = SpiffeWorkloadApiClient::new(channel(server.socket_path()).await);
        let refused = client
            .fetch_x509_bundles(pb::X509BundlesRequest {})
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        server.stop().await;
    }

    #[tokio::test]
    async fn every_open_stream_is_sent_the_rotated_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let (material, old_ca) = material();
        let server = WorkloadApiServer::start(&dir.path().join("a.sock"), material).await;
        let mut client = SpiffeWorkloadApiClient::new(channel(server.socket_path()).await);
        let mut bundles = client
            .fetch_x509_bundles(with_header(pb::X509BundlesRequest {}))
            .await
            .unwrap()
            .into_inner();
        let mut svids = client
            .fetch_x509svid(with_header(pb::X509svidRequest {}))
            .await
            .unwrap()
            .into_inner();
        let first = bundles.message().await.unwrap().unwrap();
        assert_eq!(first.bundles["spiffe://example.org"], old_ca.cert_der);
        let first_svid = svids.message().await.unwrap().unwrap();
        assert_eq!(first_svid.svids[0].bundle, old_ca.cert_der);
        let now = crate::harness::offset_now();
        let new_ca = pki::ca("new CA", None, None, now, now + time::Duration::hours(1)).unwrap();
        server.rotate_x509_bundle("example.org", vec![new_ca.cert_der.clone()]);
        let rotated = bundles.message().await.unwrap().unwrap();
        assert_eq!(rotated.bundles["spiffe://example.org"], new_ca.cert_der);
        let rotated_svid = svids.message().await.unwrap().unwrap();
        assert_eq!(rotated_svid.svids[0].bundle, new_ca.cert_der);
        server.stop().await;
    }

    #[tokio::test]
    async fn federated_bundles_travel_beside_the_svid_and_jwt_svids_are_signed_for_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let (material, ca) = material();
        let server = WorkloadApiServer::start(&dir.path().join("a.sock"), material).await;
        server.set_federated_bundles(
            "partner.org",
            vec![ca.cert_der.clone()],
            serde_json::json!({"keys": []}),
        );
        let mut client = SpiffeWorkloadApiClient::new(channel(server.socket_path()).await);
        let mut svids = client
            .fetch_x509svid(with_header(pb::X509svidRequest {}))
            .await
            .unwrap()
            .into_inner();
        let answer = svids.message().await.unwrap().unwrap();
        let federated: Vec<&String> = answer.federated_bundles.keys().collect();
        assert_eq!(federated, ["spiffe://partner.org"]);
        let jwt = client
            .fetch_jwtsvid(with_header(pb::JwtsvidRequest {
                audience: vec!["tessera".into()],
                spiffe_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(jwt.svids[0].spiffe_id, "spiffe://example.org/w");
        assert_eq!(jwt.svids[0].svid.split('.').count(), 3);
        server.stop().await;
    }
}
