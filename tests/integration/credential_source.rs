//! The SDK's credential source against the real broker over real TLS: it renews before expiry
//! at the drawn point of the lifetime, renews at once when its credential is revoked, keeps its
//! last good credential while the broker is unreachable, sends only a CSR of a key made here,
//! re-reads its token at each renewal, and tells a refusal from an outage.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tessera_client::mint::{Jwt, MintParams, X509Svid};
use tessera_client::source::{
    Attestor, Broker, BrokerAddress, CredentialSource, FixedJitter, GrpcBroker, JwtSource,
    Mintable, RevocationStream, SourceError, SourceParams, SourceStatus, TokenFile, X509SvidFiles,
    X509SvidSource,
};
use tessera_core::attest::{Usage, X509SvidVerifier};
use tessera_core::csr::VerifiedCsr;
use tessera_core::domain::id;
use tessera_proto::RevokeRequest;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::revoke_request::Selector;
use tessera_testkit::dev::WORKLOAD_ID;

use crate::common::{DEST, Env, JWT_ONLY_ID, PURPOSE, Relay, listed_status, now};

/// Returns what `work` returns; the test fails if that takes more than 30 s.
async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), work).await {
        Ok(done) => done,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Waits until `done` holds for `source`'s status; the test fails if it never does.
async fn until<C: Mintable>(source: &CredentialSource<C>, done: impl Fn(&SourceStatus) -> bool) {
    within("a status", async {
        while !done(&source.status()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Waits for a credential other than `previous`; returns it.
async fn next_after<C: Mintable>(source: &CredentialSource<C>, previous: &C) -> Arc<C> {
    let mut changes = source.subscribe();
    within("a new credential", async {
        loop {
            if let Some(c) = changes.borrow_and_update().clone()
                && c.issued().credential_id != previous.issued().credential_id
            {
                return c;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
}

/// Returns the broker at `grpc` (the test server's, or a relay's) seen through `attestor`.
fn broker_at(env: &Env, grpc: std::net::SocketAddr, attestor: Arc<dyn Attestor>) -> GrpcBroker {
    let address = BrokerAddress {
        url: format!("https://{grpc}"),
        ca_pem: env.fx.material.tls_ca.cert_pem.clone().into_bytes(),
        server_name: "localhost".to_owned(),
    };
    GrpcBroker::new(address, attestor)
}

/// Returns the dev workload's X509-SVID files as evidence.
fn workload_svid(env: &Env) -> Arc<dyn Attestor> {
    Arc::new(X509SvidFiles {
        cert: env.fx.path("workload.pem"),
        key: env.fx.path("workload-key.pem"),
    })
}

/// Returns parameters for the dev grant with `ttl_seconds` and renewals at half-life.
fn params(ttl_seconds: u32) -> SourceParams {
    SourceParams {
        ttl_seconds,
        jitter: Arc::new(FixedJitter(0.5)),
        ..SourceParams::new(DEST, PURPOSE)
    }
}

#[tokio::test]
async fn a_jwt_source_renews_at_half_of_the_lifetime_before_the_credential_expires() {
    let mut env = Env::start().await;
    let broker = Arc::new(broker_at(&env, env.grpc, workload_svid(&env)));
    let source = JwtSource::start(params(6), broker).await.unwrap();
    let first = source.current().unwrap();
    assert_eq!(first.issued().workload, WORKLOAD_ID);
    assert_eq!(first.token().split('.').count(), 3);
    let second = next_after(&source, &first).await;
    let (was, is) = (first.issued(), second.issued());
    assert!(
        is.issued_ms >= was.received_ms + was.lifetime_ms() / 2,
        "not before half-life: {was:?} {is:?}"
    );
    assert!(is.issued_ms < was.expires_at * 1000, "before expiry");
    assert_eq!(listed_status(&env, &was.credential_id).await, "live");
    assert_eq!((source.renewals(), source.failures()), (2, 0));
    env.shutdown().await;
}

#[tokio::test]
async fn a_revoked_credential_is_replaced_at_once_and_the_old_one_stays_revoked() {
    let mut env = Env::start().await;
    let broker = Arc::new(broker_at(&env, env.grpc, workload_svid(&env)));
    let source = JwtSource::start(params(600), broker).await.unwrap();
    let first = source.current().unwrap();
    until(&source, |s| s.following_revocations).await;
    AdminClient::new(env.channel(Some(&env.fx.material.admin)).await)
        .revoke(RevokeRequest {
            selector: Some(Selector::CredentialId(first.issued().credential_id.clone())),
            reason: "leaked".into(),
        })
        .await
        .unwrap();
    let second = next_after(&source, &first).await;
    assert!(
        second.issued().issued_ms < first.issued().received_ms + 240_000,
        "long before the renewal at half of 600 s"
    );
    assert_eq!(source.revocation_renewals(), 1);
    assert_eq!(
        listed_status(&env, &first.issued().credential_id).await,
        "revoked"
    );
    assert_eq!(
        listed_status(&env, &second.issued().credential_id).await,
        "live"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_broker_leaves_the_last_good_credential_until_it_returns() {
    let mut env = Env::start().await;
    let relay = Relay::start(env.grpc).await;
    let broker = Arc::new(broker_at(&env, relay.addr(), workload_svid(&env)));
    let source = JwtSource::start(params(6), broker).await.unwrap();
    let first = source.current().unwrap();
    until(&source, |s| s.following_revocations).await;
    relay.cut();
    until(&source, |s| s.stale).await;
    let status = source.status();
    assert!(
        status
            .last_error
            .as_ref()
            .is_some_and(SourceError::is_transient),
        "{status:?}"
    );
    assert_eq!(
        status.credential_id.as_deref(),
        Some(first.issued().credential_id.as_str()),
        "the last good credential is kept"
    );
    relay.restore();
    let renewed = next_after(&source, &first).await;
    assert_eq!(
        listed_status(&env, &renewed.issued().credential_id).await,
        "live"
    );
    let status = source.status();
    assert!(!status.stale && status.last_error.is_none(), "{status:?}");
    assert!(source.failures() >= 1);
    until(&source, |s| s.following_revocations).await;
    env.shutdown().await;
}

/// The broker, recording every CSR sent to it.
#[derive(Debug)]
struct Recording {
    inner: GrpcBroker,
    csrs: Mutex<Vec<Vec<u8>>>,
}

impl Broker for Recording {
    fn mint_jwt<'a>(&'a self, p: MintParams<'a>) -> BoxFuture<'a, Result<Jwt, SourceError>> {
        self.inner.mint_jwt(p)
    }

    fn mint_x509<'a>(
        &'a self,
        csr: Vec<u8>,
        p: MintParams<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, SourceError>> {
        self.csrs.lock().unwrap().push(csr.clone());
        self.inner.mint_x509(csr, p)
    }

    fn watch_revocations(
        &self,
        since_sequence: u64,
    ) -> BoxFuture<'_, Result<RevocationStream, SourceError>> {
        self.inner.watch_revocations(since_sequence)
    }
}

/// Returns the private scalar of a P-256 PKCS#8 key (after ECPrivateKey's `02 01 01 04 20`).
fn private_scalar(pkcs8: &[u8]) -> &[u8] {
    let at = pkcs8
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .unwrap();
    &pkcs8[at + 5..at + 37]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn an_x509_source_sends_only_a_csr_of_its_public_key_and_each_svid_has_a_new_key() {
    let mut env = Env::start().await;
    let broker = Arc::new(Recording {
        inner: broker_at(&env, env.grpc, workload_svid(&env)),
        csrs: Mutex::new(Vec::new()),
    });
    let source = X509SvidSource::start(params(6), Arc::clone(&broker) as Arc<dyn Broker>)
        .await
        .unwrap();
    let svid = source.current().unwrap();
    let csr = broker.csrs.lock().unwrap()[0].clone();
    let sent = VerifiedCsr::from_der(&csr).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&svid.cert_chain()[0]).unwrap();
    assert_eq!(
        sent.spki_der(),
        leaf.public_key().raw,
        "certified: the key sent"
    );
    let key_pem = svid.key_pem();
    let scalar = private_scalar(svid.key_pkcs8_der());
    for secret in [key_pem.as_bytes(), svid.key_pkcs8_der(), scalar] {
        assert!(!contains(&csr, secret), "a private key was sent");
    }
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    // The chain and bundle serve as an X509-SVID of the workload.
    let verifier = X509SvidVerifier::for_bundle("example.org", svid.trust_bundle()).unwrap();
    let peer = verifier
        .verify_for(svid.cert_chain(), now(), Usage::ClientAuth)
        .unwrap();
    assert_eq!(peer.identity.to_string(), WORKLOAD_ID);
    assert_eq!(svid.issued().workload, WORKLOAD_ID);
    assert_eq!(
        id::embedded_ms(&svid.issued().credential_id),
        Some(svid.issued().issued_ms)
    );
    assert!(
        svid.cert_chain_pem()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(!svid.trust_bundle_pem().is_empty());
    let renewed = next_after(&source, &svid).await;
    assert_ne!(
        renewed.key_pkcs8_der(),
        svid.key_pkcs8_der(),
        "a new key per SVID"
    );
    assert_eq!(broker.csrs.lock().unwrap().len(), 2);
    env.shutdown().await;
}

#[tokio::test]
async fn a_token_file_is_read_again_at_each_renewal() {
    let mut env = Env::start().await;
    let token = env.fx.path("jwt-svid.token");
    std::fs::write(&token, env.fx.jwt_svid(WORKLOAD_ID)).unwrap();
    let attestor = Arc::new(TokenFile {
        path: token.clone(),
    });
    let broker = Arc::new(broker_at(&env, env.grpc, attestor));
    let source = JwtSource::start(params(6), broker).await.unwrap();
    let first = source.current().unwrap();
    // Replaced by a token the broker refuses: the next renewal says so, and the credential
    // held is kept.
    std::fs::write(&token, "not-a-token").unwrap();
    until(&source, |s| s.stale).await;
    let error = source.status().last_error.unwrap();
    assert!(
        matches!(&error, SourceError::Refused { code, .. } if *code == tonic::Code::Unauthenticated),
        "{error:?}"
    );
    assert_eq!(
        source.current().unwrap().issued().credential_id,
        first.issued().credential_id
    );
    std::fs::write(&token, env.fx.jwt_svid(WORKLOAD_ID)).unwrap();
    next_after(&source, &first).await;
    env.shutdown().await;
}

#[tokio::test]
async fn missing_or_refused_attestation_stops_the_source_with_an_error_that_is_not_transient() {
    let mut env = Env::start().await;
    let missing = Arc::new(X509SvidFiles {
        cert: env.fx.path("absent.pem"),
        key: env.fx.path("absent-key.pem"),
    });
    let error = JwtSource::start(params(60), Arc::new(broker_at(&env, env.grpc, missing)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SourceError::Evidence { attestor: "x509-svid-files", reason } if reason.contains("absent.pem")),
        "{error:?}"
    );
    assert!(!error.is_transient());

    // A workload whose grant does not cover the destination.
    let svid = env.fx.svid(&crate::common::Fixture::svid_spec(JWT_ONLY_ID));
    let dir = env.fx.path("");
    std::fs::write(dir.join("cron.pem"), &svid.cert_pem).unwrap();
    std::fs::write(dir.join("cron-key.pem"), svid.key_pem()).unwrap();
    let cron = Arc::new(X509SvidFiles {
        cert: dir.join("cron.pem"),
        key: dir.join("cron-key.pem"),
    });
    let source = JwtSource::spawn(params(60), Arc::new(broker_at(&env, env.grpc, cron)));
    let error = source.ready().await.unwrap_err();
    assert!(
        matches!(&error, SourceError::Refused { code, .. } if *code == tonic::Code::PermissionDenied),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(source.status().stopped, Some(error));
    assert_eq!((source.renewals(), source.failures()), (0, 1));
    env.shutdown().await;
}
