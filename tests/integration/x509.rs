//! X.509-SVIDs from CSRs: every rule of the leaf, chain and TLS interop, refusals, the CRL.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tessera_client::spiffe_tls::SpiffeServerVerifier;
use tessera_core::der;
use tessera_core::domain::{BINDING_OID, BINDING_UUID};
use tessera_core::spiffe_id::SpiffeId;
use tessera_ledger::{CredentialKind, Ledger, RedbLedger, RedbOptions};
use tessera_proto::{MintX509Request, MintX509Response};
use tessera_testkit::dev::{WORKLOAD_ID, pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use x509_parser::prelude::*;

use crate::common::{DEST, Env, Fixture, JWT_ONLY_ID, PURPOSE, https_get, now, offset_now};

/// A workload key and a CSR for it that asks for everything it must not get.
struct Csr {
    key: rcgen::KeyPair,
    der: Vec<u8>,
}

fn greedy_csr(alg: &'static rcgen::SignatureAlgorithm) -> Csr {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example.org".to_owned()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://example.org/ops/admin".try_into().unwrap(),
    ));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "root of all evil");
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    Csr { key, der }
}

async fn mint_x509(
    env: &Env,
    csr: &[u8],
    ttl_seconds: u32,
) -> Result<MintX509Response, tonic::Status> {
    let mut client = env.workload_client().await;
    let request = MintX509Request {
        csr: csr.to_vec(),
        destination: DEST.into(),
        purpose: PURPOSE.into(),
        ttl_seconds,
    };
    client
        .mint_x509(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Returns the dotted form of an extension's OID. x509-parser prints arcs over 64 bits in hex,
/// so the 2.25 binding OID is compared by its DER bytes.
fn oid_of(e: &X509Extension<'_>) -> String {
    let binding = der::oid(&[2, 25, BINDING_UUID]);
    if e.oid.as_bytes() == &binding[2..] {
        BINDING_OID.to_owned()
    } else {
        e.oid.to_id_string()
    }
}

fn extension<'a>(cert: &'a X509Certificate<'a>, oid: &str) -> &'a X509Extension<'a> {
    cert.extensions()
        .iter()
        .find(|e| oid_of(e) == oid)
        .unwrap_or_else(|| panic!("extension {oid} is present"))
}

#[tokio::test]
async fn mints_a_leaf_that_obeys_every_x509_svid_rule_whatever_the_csr_asks() {
    let mut env = Env::start().await;
    let csr = greedy_csr(&rcgen::PKCS_ECDSA_P256_SHA256);
    let before = now();
    let reply = mint_x509(&env, &csr.der, 120).await.unwrap();
    let (_, leaf) = X509Certificate::from_der(&reply.cert_chain[0]).unwrap();

    let uris: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => (*u).to_owned(),
            other => panic!("only a URI SAN is allowed, found {other:?}"),
        })
        .collect();
    assert_eq!(uris, vec![WORKLOAD_ID.to_owned()]);
    let bc = leaf
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints present");
    assert!(!bc.value.ca);
    let ku = leaf.key_usage().unwrap().expect("keyUsage present");
    assert!(ku.critical);
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = leaf
        .extended_key_usage()
        .unwrap()
        .expect("EKU present")
        .value;
    assert!(eku.server_auth && eku.client_auth);
    let ski = match extension(&leaf, "2.5.29.14").parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => k.0.to_vec(),
        other => panic!("{other:?}"),
    };
    assert!(!ski.is_empty());
    let (_, ca) = X509Certificate::from_der(&reply.cert_chain[1]).unwrap();
    let ca_ski = match extension(&ca, "2.5.29.14").parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => k.0.to_vec(),
        other => panic!("{other:?}"),
    };
    match extension(&leaf, "2.5.29.35").parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => {
            assert_eq!(aki.key_identifier.as_ref().unwrap().0, ca_ski.as_slice())
        }
        other => panic!("{other:?}"),
    }
    let serial = leaf.raw_serial();
    assert!(
        serial[0] & 0x80 == 0 && serial.len() * 8 >= 64,
        "positive serial of at least 64 bits"
    );
    assert_eq!(
        reply.credential_id,
        leaf.raw_serial_as_string().replace(':', "")
    );
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    assert!(
        not_before <= before && not_before >= before - 61,
        "backdated by at most 60 s"
    );
    assert_eq!(not_after, reply.expires_at);
    assert!((reply.expires_at - before - 120).abs() <= 1);
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        csr.key.public_key_raw()
    );
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
    let binding = extension(&leaf, BINDING_OID);
    assert!(!binding.critical);
    let expected = der::sequence(&[
        &der::tlv(der::tag::UTF8_STRING, DEST.as_bytes()),
        &der::tlv(der::tag::UTF8_STRING, PURPOSE.as_bytes()),
    ]);
    assert_eq!(binding.value, expected.as_slice());
    assert!(
        leaf.extensions().iter().all(|e| [
            "2.5.29.19",
            "2.5.29.15",
            "2.5.29.37",
            "2.5.29.14",
            "2.5.29.35",
            "2.5.29.17",
            BINDING_OID
        ]
        .contains(&oid_of(e).as_str())),
        "no CSR extension is copied"
    );
    assert_eq!(reply.cert_chain[1], env.fx.material.mint_ca.cert_der);
    assert_eq!(
        reply.trust_bundle,
        vec![env.fx.material.spiffe_ca.cert_der.clone()]
    );
    env.shutdown().await;
}

#[tokio::test]
async fn the_chain_verifies_with_webpki_against_the_trust_bundle() {
    let mut env = Env::start().await;
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let reply = mint_x509(&env, &greedy_csr(alg).der, 0).await.unwrap();
        let roots: Vec<CertificateDer<'static>> = reply
            .trust_bundle
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let anchors: Vec<_> = roots
            .iter()
            .map(|c| webpki::anchor_from_trusted_cert(c).unwrap())
            .collect();
        let leaf = CertificateDer::from(reply.cert_chain[0].clone());
        let intermediates: Vec<CertificateDer<'_>> = reply.cert_chain[1..]
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
        let time = UnixTime::since_unix_epoch(Duration::from_secs(now() as u64));
        for usage in [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ] {
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &intermediates,
                time,
                usage,
                None,
                None,
            )
            .unwrap();
        }
    }
    env.shutdown().await;
}

/// Mints an SVID for a fresh key; returns the chain (leaf first), key and bundle.
async fn svid_with_key(
    env: &Env,
) -> (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    Vec<CertificateDer<'static>>,
) {
    let csr = greedy_csr(&rcgen::PKCS_ECDSA_P256_SHA256);
    let reply = mint_x509(env, &csr.der, 0).await.unwrap();
    let chain = reply
        .cert_chain
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(csr.key.serialize_der()));
    (
        chain,
        key,
        reply
            .trust_bundle
            .into_iter()
            .map(CertificateDer::from)
            .collect(),
    )
}

#[tokio::test]
async fn minted_svids_complete_a_real_mtls_handshake_both_ways() {
    let mut env = Env::start().await;
    let (server_chain, server_key, bundle) = svid_with_key(&env).await;
    let (client_chain, client_key, _) = svid_with_key(&env).await;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

    let mut roots = rustls::RootCertStore::empty();
    for root in &bundle {
        roots.add(root.clone()).unwrap();
    }
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(server_chain, server_key)
        .unwrap();
    let expected: SpiffeId = WORKLOAD_ID.parse().unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(SpiffeServerVerifier::new(expected, &bundle).unwrap())
        .with_client_auth_cert(client_chain, client_key)
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(b"pong!").await.unwrap();
        tls.shutdown().await.unwrap();
        peer
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let mut tls = connector
        .connect(ServerName::try_from("workload.invalid").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"ping!").await.unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong!");
    let client_cert_seen_by_server = server.await.unwrap();
    let (_, seen) = X509Certificate::from_der(&client_cert_seen_by_server).unwrap();
    assert!(
        format!(
            "{:?}",
            seen.subject_alternative_name().unwrap().unwrap().value
        )
        .contains(WORKLOAD_ID)
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_server_with_another_spiffe_id_is_refused_by_the_client_verifier() {
    let mut env = Env::start().await;
    let (chain, _, bundle) = svid_with_key(&env).await;
    let verifier = SpiffeServerVerifier::new(
        "spiffe://example.org/ns/other/sa/x".parse().unwrap(),
        &bundle,
    )
    .unwrap();
    let err = rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &chain[0],
        &chain[1..],
        &ServerName::try_from("x").unwrap(),
        &[],
        UnixTime::since_unix_epoch(Duration::from_secs(now() as u64)),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected spiffe://example.org/ns/other/sa/x"),
        "{err}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn serials_are_distinct_over_many_issues_and_every_certificate_is_in_the_ledger() {
    let mut env = Env::start().await;
    let csr = greedy_csr(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mut ids = BTreeSet::new();
    for _ in 0..200 {
        ids.insert(mint_x509(&env, &csr.der, 60).await.unwrap().credential_id);
    }
    assert_eq!(ids.len(), 200);
    env.shutdown().await;
    let ledger = RedbLedger::open(&env.fx.ledger_path, RedbOptions::default()).unwrap();
    for id in &ids {
        let record = ledger.get(id).await.unwrap().expect("certificate recorded");
        assert_eq!(record.kind, CredentialKind::X509);
        assert_eq!(
            (record.destination.as_str(), record.purpose.as_str()),
            (DEST, PURPOSE)
        );
    }
}

/// A syntactically valid CSR for a 1024-bit RSA key (its signature is never reached).
fn weak_rsa_csr() -> Vec<u8> {
    let mut modulus = vec![0xc5u8; 128];
    modulus[127] |= 1;
    let rsa_key = der::sequence(&[
        &der::unsigned_integer(&modulus),
        &der::small_integer(65_537),
    ]);
    let alg = der::sequence(&[
        &der::oid(&[1, 2, 840, 113_549, 1, 1, 1]),
        &der::tlv(der::tag::NULL, &[]),
    ]);
    let spki = der::sequence(&[&alg, &der::bit_string(&rsa_key)]);
    let info = der::sequence(&[
        &der::small_integer(0),
        &der::sequence(&[]),
        &spki,
        &der::tlv(0xa0, &[]),
    ]);
    let sig_alg = der::sequence(&[
        &der::oid(&[1, 2, 840, 113_549, 1, 1, 11]),
        &der::tlv(der::tag::NULL, &[]),
    ]);
    der::sequence(&[&info, &sig_alg, &der::bit_string(&[0x55; 128])])
}

#[tokio::test]
async fn refuses_bad_csrs_with_invalid_argument_naming_the_problem() {
    let mut env = Env::start().await;
    let mut tampered = greedy_csr(&rcgen::PKCS_ECDSA_P256_SHA256).der;
    let n = tampered.len();
    tampered[n - 3] ^= 0x5a;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (tampered, "signature does not verify"),
        (
            b"definitely not DER".to_vec(),
            "not a DER-encoded PKCS#10 request",
        ),
        (
            greedy_csr(&rcgen::PKCS_ECDSA_P521_SHA512).der,
            "key type EC P-521 is not supported",
        ),
        (weak_rsa_csr(), "RSA 1024-bit"),
        (vec![0x30; 16 * 1024 + 1], "the limit is 16384"),
        (Vec::new(), "csr is required"),
    ];
    for (csr, needle) in cases {
        let status = mint_x509(&env, &csr, 0).await.expect_err(needle);
        assert_eq!(status.code(), Code::InvalidArgument, "{needle}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{:?} should contain {needle:?}",
            status.message()
        );
    }
    mint_x509(&env, &greedy_csr(&rcgen::PKCS_ECDSA_P256_SHA256).der, 0)
        .await
        .expect("still serving");
    env.shutdown().await;
}

#[tokio::test]
async fn refuses_x509_to_a_grant_that_allows_only_jwt() {
    let mut env = Env::start().await;
    let svid = env.fx.jwt_svid(JWT_ONLY_ID);
    let mut request = tonic::Request::new(MintX509Request {
        csr: greedy_csr(&rcgen::PKCS_ECDSA_P256_SHA256).der,
        destination: "https://reports.example.org".into(),
        purpose: "reports:read".into(),
        ttl_seconds: 0,
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {svid}").parse().unwrap());
    let status = env.client(None).await.mint_x509(request).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("credential kind `x509` is not granted"),
        "{status:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn the_crl_is_a_signed_empty_v2_crl_of_the_mint_ca() {
    let mut env = Env::start().await;
    let (status, content_type, body) = https_get(&env, "/crl").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/pkix-crl")
    );
    let (rest, crl) = CertificateRevocationList::from_der(&body).unwrap();
    assert!(rest.is_empty());
    let (_, ca) = X509Certificate::from_der(&env.fx.material.mint_ca.cert_der).unwrap();
    crl.verify_signature(ca.public_key())
        .expect("signed by the mint CA");
    assert_eq!(crl.version(), Some(X509Version::V2));
    assert_eq!(crl.issuer().as_raw(), ca.subject().as_raw());
    assert!(crl.crl_number().is_some(), "CRL number present");
    assert!(crl.extensions().iter().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::AuthorityKeyIdentifier(_)
    )));
    let this_update = crl.last_update().timestamp();
    let next_update = crl.next_update().expect("nextUpdate present").timestamp();
    assert!(this_update <= now() && next_update > now());
    assert_eq!(crl.iter_revoked_certificates().count(), 0);
    let (_, _, again) = https_get(&env, "/crl").await;
    assert_eq!(again, body, "cached between changes");
    env.shutdown().await;
}

#[tokio::test]
async fn a_mint_ca_expiring_soon_caps_the_ttl() {
    let fx = Fixture::new();
    let short = pki::ca(
        "short-lived mint CA",
        Some("spiffe://example.org"),
        Some(&fx.material.spiffe_ca),
        offset_now() - ::time::Duration::hours(1),
        offset_now() + ::time::Duration::seconds(120),
    )
    .unwrap();
    std::fs::write(fx.path("mint-ca.pem"), &short.cert_pem).unwrap();
    std::fs::write(fx.path("mint-ca-key.pem"), short.key_pem()).unwrap();
    let mut env = Env::start_fixture(fx).await;
    let reply = mint_x509(&env, &greedy_csr(&rcgen::PKCS_ECDSA_P256_SHA256).der, 900)
        .await
        .unwrap();
    let (_, leaf) = X509Certificate::from_der(&reply.cert_chain[0]).unwrap();
    assert!(
        reply.expires_at <= now() + 120,
        "capped by the CA's notAfter"
    );
    assert_eq!(leaf.validity().not_after.timestamp(), reply.expires_at);
    env.shutdown().await;
}

#[tokio::test]
async fn a_mint_ca_outside_the_trust_domain_stops_start_up() {
    let fx = Fixture::new();
    let foreign = pki::ca(
        "foreign",
        Some("spiffe://example.org"),
        None,
        offset_now() - ::time::Duration::hours(1),
        offset_now() + ::time::Duration::hours(1),
    )
    .unwrap();
    std::fs::write(fx.path("mint-ca.pem"), &foreign.cert_pem).unwrap();
    std::fs::write(fx.path("mint-ca-key.pem"), foreign.key_pem()).unwrap();
    let clock: tessera_core::clock::SharedClock = Arc::new(tessera_core::clock::SystemClock);
    let err = tessera_server::server::start(fx.config(), clock)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("signing.ca_cert") && err.contains("example.org"),
        "{err}"
    );
}

#[tokio::test]
async fn a_minted_svid_cannot_attest_for_more_credentials() {
    let mut env = Env::start().await;
    let csr = greedy_csr(&rcgen::PKCS_ECDSA_P256_SHA256);
    let reply = mint_x509(&env, &csr.der, 0).await.unwrap();
    let chain_pem: String = reply
        .cert_chain
        .iter()
        .map(|der| pki::pem("CERTIFICATE", der))
        .collect();
    let minted = tonic::transport::Identity::from_pem(chain_pem, csr.key.serialize_pem());
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            &env.fx.material.tls_ca.cert_pem,
        ))
        .domain_name("localhost")
        .identity(minted);
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", env.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tessera_proto::broker_client::BrokerClient::new(channel);
    let status = crate::common::mint(&mut client, DEST, PURPOSE, 0, None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("minted by Tessera"), "{status:?}");
    env.shutdown().await;
}
