//! The mint path (attest a JWT-SVID + policy + sign a JWT; ledger excluded) against the bare
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
use tessera::attest::Evidence;
use tessera::clock::{Clock, SharedClock, SystemClock};
use tessera::config::Config;
use tessera::csr::VerifiedCsr;
use tessera::dev::{DevMaterial, WORKLOAD_ID};
use tessera::ledger::{CredentialKind, RedbLedger, RedbOptions};
use tessera::request::CredentialRequest;
use x509_parser::prelude::FromDer;

fn mint(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.unix_seconds();
    let material =
        DevMaterial::generate(time::OffsetDateTime::from_unix_timestamp(now).unwrap()).unwrap();
    material.write(dir.path()).unwrap();
    let ledger_path = dir.path().join("ledger.redb");
    let toml = material.config_toml(dir.path(), "127.0.0.1:0", "127.0.0.1:0", &ledger_path);
    let config_path = dir.path().join("bench.toml");
    std::fs::write(&config_path, toml).unwrap();
    let config = Config::load(&config_path, &SystemClock).unwrap();
    let ledger = Arc::new(RedbLedger::open(&ledger_path, RedbOptions::default()).unwrap());
    let clock: SharedClock = Arc::new(SystemClock);
    let broker = tessera::server::build_broker(&config, ledger, clock).unwrap();

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
        b.iter(|| {
            let evidence = Evidence {
                authorization: Some(black_box(&authorization)),
                peer: None,
            };
            let (attestation, decision) = broker
                .authorize(evidence, &request, CredentialKind::Jwt)
                .unwrap();
            black_box(broker.sign_jwt(&attestation, &decision, &request).unwrap());
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
    let evidence = Evidence {
        authorization: Some(&authorization),
        peer: None,
    };
    let (_, decision) = broker
        .authorize(evidence, &x509_request, CredentialKind::X509)
        .unwrap();

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
            black_box(broker.sign_x509(&decision, &x509_request, &csr).unwrap());
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4));
    targets = mint
}
criterion_main!(benches);
