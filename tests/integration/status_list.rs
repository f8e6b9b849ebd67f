//! Token Status Lists (draft-ietf-oauth-status-list) through the real server, read back with
//! an independent implementation (`@sd-jwt/jwt-status-list`, see [`crate::status_list_npm`]):
//! every minted JWT points at a served list signed with the minting key, a revoke flips
//! exactly the bits of what it covers — also for a rule covering 100,000 credentials — lists
//! survive a restart, and unknown lists are not found.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tessera_core::clock::{ManualClock, SharedClock};
use tessera_core::domain::{
    CredentialKind, CredentialRecord, EvidenceKind, NewRule, RevocationRule, Selector, Status,
    StatusListRef,
};
use tessera_core::keys::SecretKey;
use tessera_core::mint::JwtMinter;
use tessera_ledger::{Ledger, RedbLedger, RedbOptions};
use tessera_proto::RevokeRequest;
use tessera_proto::revoke_request::Selector as RevokeSelector;
use tessera_server::signing::JwtKeys;
use tessera_server::status_list::{Served, StatusListConfig, StatusListParts, StatusLists};

use crate::common::{DEST, Env, HttpReply, PURPOSE, claims_of, https_request, mint};
use crate::status_list_npm::decode;

/// Returns the (path, uri, idx) of a minted token's status list entry.
pub(crate) fn entry(env: &Env, token: &str) -> (String, String, u64) {
    let reference = &claims_of(token)["status"]["status_list"];
    let uri = reference["uri"].as_str().unwrap().to_owned();
    let issuer = env.fx.config().server.issuer;
    let path = uri.strip_prefix(&issuer).unwrap().to_owned();
    (path, uri, reference["idx"].as_u64().unwrap())
}

/// GETs `path` until it is served (not 503) and `done` holds for the body, for at most 10 s;
/// returns the last reply. Panics if it never is.
pub(crate) async fn fetch_until(env: &Env, path: &str, done: impl Fn(&str) -> bool) -> HttpReply {
    for _ in 0..200 {
        let reply = https_request(env, "GET", path, None).await;
        if reply.status == 200 && done(&reply.text()) {
            return reply;
        }
        assert!(
            matches!(reply.status, 200 | 503),
            "{} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never reached the expected state");
}

/// Returns the status of `idx` in the list JWT `jwt`, decoded in Rust.
pub(crate) fn bit(jwt: &str, idx: u64) -> u8 {
    let list: tessera_core::status_list::EncodedList =
        serde_json::from_value(claims_of(jwt)["status_list"].clone()).unwrap();
    list.decompress().unwrap().status(idx).unwrap()
}

async fn jwks(env: &Env) -> Value {
    https_request(env, "GET", "/.well-known/jwks.json", None)
        .await
        .json()
}

#[tokio::test]
async fn a_minted_jwt_names_a_served_list_that_an_independent_implementation_reads() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let token = mint(&mut client, DEST, PURPOSE, 60, None)
        .await
        .unwrap()
        .token;
    let (path, uri, idx) = entry(&env, &token);
    assert!(path.starts_with("/statuslists/"), "{path}");
    let reply = fetch_until(&env, &path, |_| true).await;
    assert_eq!(reply.header("content-type"), "application/statuslist+jwt");
    assert_eq!(reply.header("cache-control"), "public, max-age=60");
    let keys = jwks(&env).await;
    let read = decode(&reply.text(), Some(&keys), &[idx], &[&token]);
    assert_eq!(read["signature_valid"], json!(true), "{read}");
    assert_eq!(read["header"]["typ"], json!("statuslist+jwt"));
    assert_eq!(read["header"]["kid"], keys["keys"][0]["kid"]);
    assert_eq!(read["claims"]["sub"], json!(uri));
    assert_eq!(read["claims"]["ttl"], json!(60));
    assert_eq!(read["claims"]["status_list"]["bits"], json!(1));
    let iat = read["claims"]["iat"].as_i64().unwrap();
    assert_eq!(read["claims"]["exp"], json!(iat + 120));
    assert_eq!(read["token_refs"], json!([{"idx": idx, "uri": uri}]));
    assert_eq!(read["statuses"], json!([0]));
    assert_eq!(read["ones"], json!(0));
    env.shutdown().await;
}

#[tokio::test]
async fn a_revoke_flips_exactly_the_bit_of_the_revoked_credential() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap());
    }
    let entries: Vec<(String, String, u64)> =
        tokens.iter().map(|t| entry(&env, &t.token)).collect();
    assert!(entries.iter().all(|e| e.0 == entries[0].0), "one list");
    env.admin_client()
        .await
        .revoke(RevokeRequest {
            selector: Some(RevokeSelector::CredentialId(
                tokens[1].credential_id.clone(),
            )),
            reason: "status list test".into(),
        })
        .await
        .unwrap();
    let revoked = entries[1].2;
    let reply = fetch_until(&env, &entries[0].0, |jwt| bit(jwt, revoked) == 1).await;
    let idx: Vec<u64> = entries.iter().map(|e| e.2).collect();
    let read = decode(&reply.text(), Some(&jwks(&env).await), &idx, &[]);
    assert_eq!(read["statuses"], json!([0, 1, 0]), "{read}");
    assert_eq!(read["ones"], json!(1), "no other bit is set");
    env.shutdown().await;
}

#[tokio::test]
async fn lists_survive_a_restart_with_their_bits() {
    let env = Env::start().await;
    let mut client = env.workload_client().await;
    let kept = mint(&mut client, DEST, PURPOSE, 300, None).await.unwrap();
    let gone = mint(&mut client, DEST, PURPOSE, 300, None).await.unwrap();
    env.admin_client()
        .await
        .revoke(RevokeRequest {
            selector: Some(RevokeSelector::CredentialId(gone.credential_id.clone())),
            reason: "status list restart test".into(),
        })
        .await
        .unwrap();
    let (path, _, kept_idx) = entry(&env, &kept.token);
    let gone_idx = entry(&env, &gone.token).2;
    fetch_until(&env, &path, |jwt| bit(jwt, gone_idx) == 1).await;

    let mut env = env.restart().await;
    let reply = fetch_until(&env, &path, |_| true).await;
    let read = decode(
        &reply.text(),
        Some(&jwks(&env).await),
        &[kept_idx, gone_idx],
        &[],
    );
    assert_eq!(read["statuses"], json!([0, 1]), "{read}");
    assert_eq!(read["ones"], json!(1));
    let mut client = env.workload_client().await;
    let after = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    assert_ne!(
        entry(&env, &after.token).0,
        path,
        "a restart opens a list of its own"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn unknown_lists_are_not_found() {
    let mut env = Env::start().await;
    // Well-formed but never opened: 404 once the lists are rebuilt (503 before).
    let unknown = "/statuslists/1767225600-00000000000000ff";
    let mut status = 503;
    for _ in 0..200 {
        status = https_request(&env, "GET", unknown, None).await.status;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 404);
    for path in [
        "/statuslists/nope",
        "/statuslists/..%2Fcrl",
        "/statuslists/",
    ] {
        let reply = https_request(&env, "GET", path, None).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
    }
    env.shutdown().await;
}

/// A P-256 minting key made for the test.
fn minter() -> JwtMinter {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let key = SecretKey::from_pkcs8_der(pkcs8.as_ref().to_vec());
    JwtMinter::new("https://tessera.example.org", &key).unwrap()
}

#[tokio::test]
async fn a_rule_covering_100000_credentials_flips_all_their_bits() {
    const COVERED: usize = 100_000;
    let now = 1_767_225_600;
    let dir = tempfile::tempdir().unwrap();
    let ledger: Arc<dyn Ledger> =
        Arc::new(RedbLedger::open(&dir.path().join("l.redb"), RedbOptions::default()).unwrap());
    let clock = Arc::new(ManualClock::at(now)) as SharedClock;
    let jwt = Arc::new(JwtKeys::single(minter(), Arc::clone(&clock)));
    let lists = StatusLists::new(StatusListParts {
        issuer: "https://tessera.example.org".into(),
        jwt: Arc::clone(&jwt),
        ledger,
        clock,
        config: StatusListConfig::default(),
    });
    let mut covered = Vec::with_capacity(COVERED);
    let mut spared = Vec::new();
    for i in 0..COVERED + 100 {
        let at = lists.allocate(now).unwrap();
        let workload = if i < COVERED {
            "spiffe://t/covered"
        } else {
            "spiffe://t/spared"
        };
        let record = CredentialRecord {
            credential_id: format!("c{i}"),
            kind: CredentialKind::Jwt,
            workload: workload.into(),
            owner: "team".into(),
            destination: DEST.into(),
            purpose: PURPOSE.into(),
            grant: "g".into(),
            evidence_kind: EvidenceKind::X509Svid,
            evidence_hash: String::new(),
            issued_at: now,
            expires_at: now + 300,
            status: Status::Live,
            ci: None,
            status_list: Some(StatusListRef {
                list: at.list.to_string(),
                idx: at.idx,
            }),
        };
        lists.note_issued(&record);
        if i < COVERED {
            &mut covered
        } else {
            &mut spared
        }
        .push((at.list, u64::from(at.idx)));
    }
    let rule = RevocationRule {
        rule: NewRule {
            revocation_id: "r".into(),
            selector: Selector::Workload,
            value: "spiffe://t/covered".into(),
            effective_at: now,
            effective_at_ms: None,
            reason: "test".into(),
            revoked_by: "admin".into(),
            scope: None,
        },
        sequence: 1,
    };
    assert_eq!(lists.apply(&[rule]).await.unwrap(), COVERED);
    let name = covered[0].0.to_string();
    assert!(
        covered
            .iter()
            .chain(&spared)
            .all(|(l, _)| l.to_string() == name)
    );
    lists.rebuild().await.unwrap();
    let Served::List(list_jwt) = lists.serve(&name).unwrap() else {
        panic!("not served");
    };
    let list_jwt = std::str::from_utf8(&list_jwt).unwrap();
    let keys: Value = serde_json::from_slice(&jwt.published().jwks).unwrap();
    let idx: Vec<u64> = covered.iter().chain(&spared).map(|(_, i)| *i).collect();
    let read = decode(list_jwt, Some(&keys), &idx, &[]);
    assert_eq!(read["signature_valid"], json!(true));
    assert_eq!(read["ones"], json!(COVERED), "exactly the covered bits");
    let statuses = read["statuses"].as_array().unwrap();
    assert!(statuses[..COVERED].iter().all(|s| s == 1));
    assert!(statuses[COVERED..].iter().all(|s| s == 0));
}

/// Starts a server whose issuer is its real HTTPS address (`https://localhost:<port>`), so
/// that the URIs in `status` claims can be fetched.
async fn start_fetchable() -> Env {
    let fx = crate::common::Fixture::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text
        .replacen(
            "issuer = \"https://127.0.0.1:0\"",
            &format!("issuer = \"https://localhost:{port}\""),
            1,
        )
        .replacen(
            "http_addr = \"127.0.0.1:0\"",
            &format!("http_addr = \"127.0.0.1:{port}\""),
            1,
        );
    std::fs::write(&fx.config_path, text).unwrap();
    Env::start_fixture(fx).await
}

#[tokio::test]
async fn the_client_sdk_reads_a_revocation_offline_from_the_list() {
    use tessera_client::relying_party::status_list::{
        StatusError, StatusLists as RpLists, StatusListsParams, TokenStatus,
    };
    let mut env = start_fetchable().await;
    let issuer = env.fx.config().server.issuer;
    assert!(issuer.starts_with("https://localhost:"), "{issuer}");
    let mut client = env.workload_client().await;
    let minted = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let token_claims = claims_of(&minted.token);
    let jwks = serde_json::from_value(jwks(&env).await).unwrap();
    let roots = [env.fx.material.tls_ca.cert_der.clone().into()];
    let clock: SharedClock = Arc::new(tessera_core::clock::SystemClock);
    let params = StatusListsParams {
        issuer: &issuer,
        jwks: &jwks,
        roots: &roots,
        clock: &clock,
    };
    let cached = RpLists::new(params).unwrap();
    // Served once the lists are rebuilt after the start (503 before: not a statement).
    let mut first = cached.status(&token_claims).await;
    for _ in 0..100 {
        if !matches!(first, Err(StatusError::Fetch(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        first = cached.status(&token_claims).await;
    }
    assert_eq!(first.unwrap(), TokenStatus::Valid);

    env.admin_client()
        .await
        .revoke(RevokeRequest {
            selector: Some(RevokeSelector::CredentialId(minted.credential_id.clone())),
            reason: "sdk status list test".into(),
        })
        .await
        .unwrap();
    let (path, _, idx) = entry(&env, &minted.token);
    fetch_until(&env, &path, |jwt| bit(jwt, idx) == 1).await;
    let fresh = RpLists::new(params).unwrap();
    assert_eq!(
        fresh.status(&token_claims).await.unwrap(),
        TokenStatus::Invalid
    );
    assert_eq!(
        cached.status(&token_claims).await.unwrap(),
        TokenStatus::Valid,
        "a fetched list is used for its ttl"
    );
    let mut foreign = token_claims.clone();
    foreign["status"]["status_list"]["uri"] = json!("https://elsewhere.example.org/statuslists/x");
    assert!(matches!(
        fresh.status(&foreign).await,
        Err(StatusError::ForeignList(_))
    ));
    assert!(matches!(
        fresh.status(&json!({})).await,
        Err(StatusError::NoStatus)
    ));
    env.shutdown().await;
}
