//! The mint path (attest a JWT-SVID + policy + sign a JWT; ledger excluded), built from the
//! core's own stages (`Attestor`, `Policy`, `JwtMinter`, `X509Minter`), against the bare
//! crypto it cannot avoid (one ES256 verify + one ES256 sign, aws-lc-rs, cached keys), measured
//! in the same run; and CSR → signed X.509-SVID against CSR verify + one CA signature.
//! `BENCHMARKS.md` reports the ratios.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use tessera_core::attest::{Attestation, Attestor, Evidence};
use tessera_core::clock::{Clock, SystemClock};
use tessera_core::csr::VerifiedCsr;
use tessera_core::domain::CredentialKind;
use tessera_core::mint::{MintCa, MintJwtParams, MintX509Params, MintedJwt, X509Minter};
use tessera_core::policy::{DecideParams, Decision, Policy};
use tessera_core::request::CredentialRequest;
use tessera_ledger::{RedbLedger, RedbOptions};
use tessera_server::config::Config;
use tessera_server::metrics::Metrics;
use tessera_server::signing::JwtKeys;
use tessera_testkit::ci_issuer::TestIssuer;
use tessera_testkit::dev::WORKLOAD_ID;
use tessera_testkit::fixtures;
use tessera_testkit::harness::Fixture;
use x509_parser::prelude::FromDer;

/// The stages a mint runs through before the ledger, as the server assembles them.
struct MintPath {
    attestor: Arc<Attestor>,
    policy: Policy,
    jwt: Arc<JwtKeys>,
    x509: X509Minter,
}

impl MintPath {
    fn new(config: &Config, dir: &std::path::Path) -> MintPath {
        let ledger =
            Arc::new(RedbLedger::open(&dir.join("bench.redb"), RedbOptions::default()).unwrap());
        let services = tessera_server::assemble::services(
            config,
            ledger,
            Arc::new(Metrics::new()),
            Arc::new(SystemClock),
        )
        .unwrap();
        let ca = config.signing.active_ca().unwrap();
        MintPath {
            attestor: Arc::clone(&services.settings.load().attestor),
            policy: Policy::new(config.grants.clone()),
            jwt: services.signing.jwt,
            x509: X509Minter::new(MintCa::new(&ca.chain, &ca.key).unwrap()),
        }
    }

    /// Attests `token` and decides on `request`.
    async fn authorize(
        &self,
        token: &str,
        request: &CredentialRequest,
        kind: CredentialKind,
    ) -> (Attestation, Decision) {
        let now = SystemClock.unix_seconds();
        let attestation = self.attestor.attest_token(token, now).await.unwrap();
        let decision = self
            .policy
            .decide(DecideParams {
                identity: &attestation.principal,
                request,
                kind,
                now,
            })
            .unwrap();
        (attestation, decision)
    }

    /// Signs the JWT an authorized request gets.
    fn sign_jwt(&self, a: &Attestation, d: &Decision, request: &CredentialRequest) -> MintedJwt {
        self.jwt
            .signer()
            .mint(MintJwtParams {
                workload: &d.grant.workload,
                destination: &request.destination,
                purpose: &request.purpose,
                ttl: d.ttl,
                issued_ms: SystemClock.unix_millis(),
                cnf_x5t_s256: a.cnf_x5t_s256.as_deref(),
                status: None,
            })
            .unwrap()
    }
}

fn mint(c: &mut Criterion) {
    let fx = Fixture::new();
    let material = &fx.material;
    let now = SystemClock.unix_seconds();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let broker = rt.block_on(async { MintPath::new(&fx.config(), fx.dir.path()) });

    let svid = material
        .jwt_svid_signer
        .svid(WORKLOAD_ID, "tessera", now, 3600)
        .unwrap();
    let authorization = format!("Bearer {svid}");
    let request =
        CredentialRequest::parse("https://ledger.example.org", "ledger:write", 300).unwrap();

    // Bare crypto: verify the same JWT-SVID signature, sign a message the size of a minted token.
    let (signing_input, signature_b64) = svid.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).unwrap();
    let jwk = material.jwt_svid_signer.bundle_jwk();
    let point: Vec<u8> = [
        vec![4u8],
        URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
        URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap(),
    ]
    .concat();
    let sign_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let sign_key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &sign_key.serialize_der())
            .unwrap();
    let _ = sign_key.public_key();
    let rng = SystemRandom::new();
    let message = vec![b'a'; 420];

    let mut group = c.benchmark_group("mint_jwt");
    group.bench_function("bare_crypto_es256_verify_plus_sign", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                .verify(black_box(signing_input.as_bytes()), &signature)
                .unwrap();
            black_box(sign_key.sign(&rng, black_box(&message)).unwrap());
        });
    });
    group.bench_function("mint_path_attest_policy_sign", |b| {
        // Iterations run inside one async context, as requests do in the server.
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let evidence = Evidence {
                        authorization: Some(black_box(&authorization)),
                        peer: None,
                    };
                    let attestation = broker.attestor.attest(evidence, now).await.unwrap();
                    let decision = broker
                        .policy
                        .decide(DecideParams {
                            identity: &attestation.principal,
                            request: &request,
                            kind: CredentialKind::Jwt,
                            now,
                        })
                        .unwrap();
                    black_box(broker.sign_jwt(&attestation, &decision, &request));
                }
                start.elapsed()
            })
        });
    });
    group.finish();

    // X.509: CSR → signed leaf. Mint path: parse + verify the CSR, build and sign the leaf
    // (authorization decided once, outside the loop). Bare crypto: verify the CSR's signature and
    // make one CA signature over a TBS-sized message.
    let csr_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr_der = rcgen::CertificateParams::default()
        .serialize_request(&csr_key)
        .unwrap()
        .der()
        .to_vec();
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr_der).unwrap();
    let csr_info = parsed.certification_request_info.raw.to_vec();
    let csr_sig = parsed.signature_value.data.to_vec();
    let csr_point = parsed
        .certification_request_info
        .subject_pki
        .subject_public_key
        .data
        .to_vec();
    let ca_key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        material.mint_ca.key.serialized_der(),
    )
    .unwrap();
    let tbs = vec![b'x'; 560];
    let mut x509_request = request.clone();
    x509_request.ttl = Some(std::time::Duration::from_secs(300));
    let (_, decision) = rt.block_on(broker.authorize(&svid, &x509_request, CredentialKind::X509));

    let mut group = c.benchmark_group("mint_x509");
    group.bench_function("bare_crypto_csr_verify_plus_ca_sign", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &csr_point)
                .verify(black_box(&csr_info), &csr_sig)
                .unwrap();
            black_box(ca_key.sign(&rng, black_box(&tbs)).unwrap());
        });
    });
    group.bench_function("mint_path_csr_to_signed_leaf", |b| {
        b.iter(|| {
            let csr = VerifiedCsr::from_der(black_box(&csr_der)).unwrap();
            let minted = broker.x509.mint(MintX509Params {
                workload: &decision.grant.workload,
                destination: &x509_request.destination,
                purpose: &x509_request.purpose,
                csr: &csr,
                ttl: decision.ttl,
                issued_ms: now * 1000,
            });
            black_box(minted.unwrap());
        });
    });
    group.finish();
}

/// Token exchange with the issuer's JWKS cached: verify an RS256 GitHub-shaped token, match the
/// CI grant, sign the ES256 JWT (ledger and replay record excluded), against one RS256 verify
/// plus one ES256 sign. The test kit's CI issuer serves the JWKS over HTTPS; one exchange before
/// measuring fetches and caches it.
fn exchange(c: &mut Criterion) {
    use aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issuer = rt.block_on(TestIssuer::start());
    let fx = Fixture::new();
    let ca_file = fx.path("ci-issuer-ca.pem");
    issuer.write_ca(&ca_file);
    fx.append_config(&fixtures::ci_broker_config(&issuer.url("github"), &ca_file));
    let broker = rt.block_on(async { MintPath::new(&fx.config(), fx.dir.path()) });
    let token = issuer.github_token(serde_json::json!({}));
    let (input, sig_b64) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
    let request =
        CredentialRequest::parse(fixtures::CI_DESTINATION, fixtures::CI_PURPOSE, 300).unwrap();
    let spki = issuer.public_key_der();
    let es = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &rcgen::KeyPair::generate().unwrap().serialize_der(),
    )
    .unwrap();
    let rng = SystemRandom::new();
    let message = vec![b'a'; 480];
    // Warm-up: the first exchange fetches the issuer's JWKS; the rest verify from the cache.
    rt.block_on(broker.authorize(&token, &request, CredentialKind::Jwt));

    let mut group = c.benchmark_group("exchange");
    group.bench_function("bare_crypto_rs256_verify_plus_es256_sign", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &spki)
                .verify(black_box(input.as_bytes()), &sig)
                .unwrap();
            black_box(es.sign(&rng, black_box(&message)).unwrap());
        });
    });
    group.bench_function("exchange_path_cached_jwks", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let (attestation, decision) = broker
                        .authorize(black_box(&token), &request, CredentialKind::Jwt)
                        .await;
                    black_box(broker.sign_jwt(&attestation, &decision, &request));
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4));
    targets = mint, exchange
}
criterion_main!(benches);
