//! Happy paths: a JWT minted over mTLS and with a JWT-SVID, verified against the served JWKS.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use tessera_ledger::{CredentialKind, EvidenceKind, Ledger, RedbLedger, RedbOptions, Status};
use tessera_testkit::dev::WORKLOAD_ID;

use crate::common::{DEST, Env, PURPOSE, https_get, mint, now};

/// Verifies `token` with the server's JWKS as a relying party would; returns header and claims.
async fn verify_with_jwks(env: &Env, token: &str) -> (jsonwebtoken::Header, serde_json::Value) {
    let (status, _, body) = https_get(env, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: JwkSet = serde_json::from_slice(&body).unwrap();
    let header = decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid is in the JWKS");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[DEST]);
    let claims =
        decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    (header, claims)
}

fn claim_names(claims: &serde_json::Value) -> BTreeSet<&str> {
    claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn mints_a_jwt_over_mtls_with_exactly_the_contract_claims() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let before = now();
    let reply = mint(&mut client, DEST, PURPOSE, 120, None).await.unwrap();
    let (header, claims) = verify_with_jwks(&env, &reply.token).await;

    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let expected: BTreeSet<&str> = [
        "iss",
        "sub",
        "aud",
        "scope",
        "client_id",
        "iat",
        "nbf",
        "exp",
        "jti",
        "cnf",
        "status",
    ]
    .into();
    assert_eq!(claim_names(&claims), expected);
    assert_eq!(claims["sub"], WORKLOAD_ID);
    assert_eq!(claims["client_id"], WORKLOAD_ID);
    assert_eq!(claims["aud"], DEST, "aud is one string, not an array");
    assert_eq!(claims["scope"], PURPOSE);
    assert_eq!(claims["iss"], "https://127.0.0.1:0");
    let iat = claims["iat"].as_i64().expect("iat is an integer");
    assert!(iat >= before && iat <= now());
    assert_eq!(claims["nbf"].as_i64(), Some(iat));
    assert_eq!(claims["exp"].as_i64(), Some(iat + 120));
    assert_eq!(reply.expires_at, iat + 120);
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti, reply.credential_id);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(jti).unwrap().len(),
        6 + 16,
        "the issue millisecond, then 128 random bits"
    );
    let issued_ms = tessera_core::domain::id::embedded_ms(jti).unwrap();
    assert_eq!(issued_ms.div_euclid(1000), iat);
    let leaf_hash = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &env.fx.material.workload.cert_der,
    );
    assert_eq!(claims["cnf"]["x5t#S256"], URL_SAFE_NO_PAD.encode(leaf_hash));
    let entry = &claims["status"]["status_list"];
    assert!(entry["idx"].is_u64(), "{entry}");
    assert!(
        entry["uri"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:0/statuslists/"),
        "{entry}"
    );
    assert_eq!(entry.as_object().unwrap().len(), 2, "{entry}");
    env.shutdown().await;
}

#[tokio::test]
async fn mints_a_jwt_for_a_jwt_svid_bearer_without_cnf() {
    let mut env = Env::start().await;
    let mut client = env.client(None).await;
    let svid = env.fx.jwt_svid(WORKLOAD_ID);
    let reply = mint(&mut client, DEST, "ledger:read", 0, Some(&svid))
        .await
        .unwrap();
    let (_, claims) = verify_with_jwks(&env, &reply.token).await;
    assert_eq!(claims["sub"], WORKLOAD_ID);
    assert_eq!(claims["scope"], "ledger:read");
    assert!(claims.get("cnf").is_none(), "no cnf without mTLS");
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 300, "ttl 0 means the grant's default_ttl (5m)");
    env.shutdown().await;
}

#[tokio::test]
async fn clamps_a_ttl_above_max_ttl_and_says_the_real_expiry() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let reply = mint(&mut client, DEST, PURPOSE, 86_400, None)
        .await
        .unwrap();
    let (_, claims) = verify_with_jwks(&env, &reply.token).await;
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(
        reply.expires_at,
        iat + 900,
        "max_ttl of the dev grant is 15m"
    );
    assert_eq!(claims["exp"].as_i64(), Some(reply.expires_at));
    env.shutdown().await;
}

#[tokio::test]
async fn every_minted_credential_is_in_the_ledger_with_its_binding() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let mut ids = Vec::new();
    for purpose in ["ledger:write", "ledger:read"] {
        ids.push(mint(&mut client, DEST, purpose, 60, None).await.unwrap());
    }
    env.shutdown().await;
    let ledger = RedbLedger::open(&env.fx.ledger_path, RedbOptions::default()).unwrap();
    assert_eq!(ledger.len().await.unwrap(), 2);
    for reply in ids {
        let record = ledger
            .get(&reply.credential_id)
            .await
            .unwrap()
            .expect("recorded");
        assert_eq!(record.kind, CredentialKind::Jwt);
        assert_eq!(record.workload, WORKLOAD_ID);
        assert_eq!(record.owner, "team-payments");
        assert_eq!(record.destination, DEST);
        assert_eq!(record.grant, "payments-api");
        assert_eq!(record.evidence_kind, EvidenceKind::X509Svid);
        assert_eq!(record.evidence_hash.len(), 64);
        assert_eq!(record.expires_at, reply.expires_at);
        assert_eq!(record.status, Status::Live);
    }
}

#[tokio::test]
async fn concurrent_mints_all_succeed_with_distinct_ids() {
    let mut env = Env::start().await;
    let client = env.workload_client().await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            mint(&mut client, DEST, PURPOSE, 60, None).await
        }));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap().unwrap().credential_id);
    }
    assert_eq!(ids.len(), 64);
    env.shutdown().await;
}
