//! Foreign trust domains from a SPIFFE bundle endpoint (`[[trust_domain]] bundle_endpoint_url`,
//! `https_web`): the real broker fetches the test kit's bundle endpoint over HTTPS (its CA in
//! `bundle_endpoint_ca`) at start-up and trusts X509-SVIDs and JWT-SVIDs of that domain, follows
//! a rotation after the refresh hint, keeps the last bundle when a fetch fails, and refuses to
//! start naming the URL when the endpoint is down.

use serde_json::Value;
use tessera_testkit::bundle_endpoint::{BundleEndpointServer, spiffe_bundle};
use tessera_testkit::dev::{Certified, JwtSvidSigner, pki};
use tonic::Code;

use crate::common::{Env, Fixture, https_get, now, offset_now};
use crate::workload_api::{mint_as, mint_with, until};

const PARTNER_ID: &str = "spiffe://partner.org/ns/billing/sa/api";

/// The partner.org material one bundle generation is made of.
struct Generation {
    ca: Certified,
    svid: Certified,
    signer: JwtSvidSigner,
}

impl Generation {
    /// Returns a new root CA of partner.org, an X509-SVID under it and a JWT-SVID key `kid`.
    fn new(kid: &str) -> Generation {
        let now = offset_now();
        let (from, to) = (
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        );
        let ca = pki::ca(kid, Some("spiffe://partner.org"), None, from, to).unwrap();
        let svid = pki::leaf(&Fixture::svid_spec(PARTNER_ID), &ca).unwrap();
        let signer = JwtSvidSigner::generate(kid).unwrap();
        Generation { ca, svid, signer }
    }

    /// Returns its bundle document, with refresh hint 1 s.
    fn bundle(&self, sequence: u64) -> Value {
        spiffe_bundle(&[&self.ca], &[&self.signer], sequence, 1)
    }

    /// Returns a JWT-SVID of [`PARTNER_ID`] signed with its key.
    fn jwt_svid(&self) -> String {
        self.signer.svid(PARTNER_ID, "tessera", now(), 120).unwrap()
    }
}

/// A fixture whose config also has `[[trust_domain]] partner.org` from the bundle endpoint at
/// `url` (its CA written beside), a 1 s floor under refresh hints and a 2 s start-up wait.
fn fixture(url: &str, endpoint: Option<&BundleEndpointServer>) -> Fixture {
    let fx = Fixture::new();
    let ca = fx.path("partner-endpoint-ca.pem");
    match endpoint {
        Some(endpoint) => endpoint.write_ca(&ca),
        None => std::fs::write(&ca, Generation::new("unused").ca.cert_pem).unwrap(),
    }
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text.replacen(
        "[server]\n",
        "[server]\nbundle_endpoint_min_refresh = \"1s\"\nworkload_api_timeout = \"2s\"\n",
        1,
    );
    std::fs::write(&fx.config_path, text).unwrap();
    fx.append_config(&format!(
        "\n[[trust_domain]]\nname = \"partner.org\"\nbundle_endpoint_url = \"{url}\"\n\
         bundle_endpoint_ca = \"{}\"\n",
        ca.display()
    ));
    fx
}

/// Returns the `/metrics` text.
async fn metrics(env: &Env) -> String {
    String::from_utf8(https_get(env, "/metrics").await.2).unwrap()
}

// An SVID of partner.org that the broker trusts is attested but granted nothing
// (PermissionDenied); one it does not trust is refused as Unauthenticated.
const TRUSTED: Result<(), Code> = Err(Code::PermissionDenied);
const UNTRUSTED: Result<(), Code> = Err(Code::Unauthenticated);

#[tokio::test]
async fn a_federated_domain_is_trusted_from_its_bundle_endpoint_and_its_rotation_is_followed() {
    let (first, second) = (Generation::new("partner-1"), Generation::new("partner-2"));
    let endpoint = BundleEndpointServer::start(&first.bundle(1)).await;
    let mut env = Env::start_fixture(fixture(&endpoint.url(), Some(&endpoint))).await;
    assert_eq!(mint_as(&env, &first.svid).await, TRUSTED);
    assert_eq!(mint_with(&env, &first.jwt_svid()).await, TRUSTED);
    assert_eq!(mint_as(&env, &second.svid).await, UNTRUSTED);
    assert_eq!(mint_with(&env, &second.jwt_svid()).await, UNTRUSTED);
    assert_eq!(
        mint_as(&env, &env.fx.material.workload).await,
        Ok(()),
        "the file-based domain is untouched"
    );
    endpoint.serve(&second.bundle(2));
    until(|| async { mint_as(&env, &second.svid).await == TRUSTED }).await;
    assert_eq!(mint_as(&env, &first.svid).await, UNTRUSTED);
    assert_eq!(mint_with(&env, &second.jwt_svid()).await, TRUSTED);
    assert_eq!(mint_with(&env, &first.jwt_svid()).await, UNTRUSTED);
    let text = metrics(&env).await;
    let up = format!("tessera_bundle_endpoint_up{{url=\"{}\"}} 1", endpoint.url());
    assert!(text.contains(&up), "{text}");
    assert!(
        text.contains(
            r#"tessera_trust_bundle_updated_timestamp_seconds{trust_domain="partner.org"}"#
        ),
        "{text}"
    );
    env.shutdown().await;
    let log = std::fs::read_to_string(env.fx.path("data/audit.log")).unwrap();
    let updates: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "trust_bundle_updated")
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["by"], "bundle_endpoint");
    assert_eq!(
        updates[0]["trust_domains"],
        serde_json::json!(["partner.org"])
    );
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_bundle_counts_the_failure_and_is_retried() {
    let (first, second) = (Generation::new("partner-1"), Generation::new("partner-2"));
    let endpoint = BundleEndpointServer::start(&first.bundle(1)).await;
    let mut env = Env::start_fixture(fixture(&endpoint.url(), Some(&endpoint))).await;
    endpoint.serve_text("<html>maintenance</html>");
    let failed = format!(
        "tessera_bundle_endpoint_fetch_failures_total{{url=\"{}\"}} ",
        endpoint.url()
    );
    until(|| async { metrics(&env).await.contains(&failed) }).await;
    assert_eq!(mint_as(&env, &first.svid).await, TRUSTED);
    assert_eq!(mint_with(&env, &first.jwt_svid()).await, TRUSTED);
    endpoint.serve(&second.bundle(2));
    until(|| async { mint_as(&env, &second.svid).await == TRUSTED }).await;
    env.shutdown().await;
}

#[tokio::test]
async fn start_up_fails_naming_the_bundle_endpoint_url_when_the_endpoint_is_down() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/bundle", listener.local_addr().unwrap());
    drop(listener);
    let fx = fixture(&url, None);
    let clock = std::sync::Arc::new(tessera_core::clock::SystemClock);
    let failed = tessera_server::server::start(fx.config(), clock)
        .await
        .unwrap_err();
    let message = failed.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("partner.org"), "{message}");
}
