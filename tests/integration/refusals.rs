//! Every refusal gets the right status and a message that says why, and the server keeps serving.

use serde_json::json;
use tessera_testkit::dev::{JwtSvidSigner, WORKLOAD_ID};

use tonic::Code;

use crate::common::{DEST, Env, Fixture, PURPOSE, mint, now};

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call should be refused");
    assert_eq!(status.code(), code, "status for {needle:?}: {status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} should contain {needle:?}",
        status.message()
    );
}

#[tokio::test]
async fn refuses_bad_jwt_svids_with_unauthenticated_and_keeps_serving() {
    let mut env = Env::start().await;
    let mut client = env.client(None).await;
    let signer = &env.fx.material.jwt_svid_signer;
    let t = now();
    let claims = |aud: &str, iat: i64, exp: i64| json!({"sub": WORKLOAD_ID, "aud": [aud], "iat": iat, "exp": exp});
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none"})),
        b64(claims("tessera", t, t + 60))
    );
    let hs256 = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "HS256", "typ": "JWT"})),
        b64(claims("tessera", t, t + 60))
    );
    let foreign = JwtSvidSigner::generate("other-1").unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            signer.sign(&claims("tessera", t - 600, t - 300)).unwrap(),
            "expired",
        ),
        (
            signer
                .sign(
                    &json!({"sub": WORKLOAD_ID, "aud": "tessera", "nbf": t + 600, "exp": t + 900}),
                )
                .unwrap(),
            "not valid before",
        ),
        (
            signer.sign(&claims("someone-else", t, t + 60)).unwrap(),
            "aud does not contain `tessera`",
        ),
        (unsigned, "alg `none` is not allowed"),
        (hs256, "alg `HS256` is not allowed"),
        (
            signer
                .sign_with_header(
                    &json!({"alg": "ES256", "kid": "nope"}),
                    &claims("tessera", t, t + 60),
                )
                .unwrap(),
            "kid `nope` is not in the JWT bundle",
        ),
        (
            foreign
                .svid("spiffe://other.org/ns/x/sa/y", "tessera", t, 60)
                .unwrap(),
            "trust domain `other.org` is not trusted",
        ),
        (
            foreign
                .sign_with_header(
                    &json!({"alg": "ES256", "kid": signer.kid}),
                    &claims("tessera", t, t + 60),
                )
                .unwrap(),
            "signature does not verify",
        ),
        (
            signer
                .sign(&json!({"sub": WORKLOAD_ID, "aud": "tessera"}))
                .unwrap(),
            "exp is missing",
        ),
        ("not-a-jwt".to_owned(), "not a JWS compact serialization"),
    ];
    for (token, needle) in cases {
        assert_refused(
            mint(&mut client, DEST, PURPOSE, 0, Some(&token)).await,
            Code::Unauthenticated,
            needle,
        );
    }
    let good = env.fx.jwt_svid(WORKLOAD_ID);
    mint(&mut client, DEST, PURPOSE, 0, Some(&good))
        .await
        .expect("still serving");
    env.shutdown().await;
}

#[tokio::test]
async fn refuses_a_call_without_credentials() {
    let mut env = Env::start().await;
    let mut client = env.client(None).await;
    assert_refused(
        mint(&mut client, DEST, PURPOSE, 0, None).await,
        Code::Unauthenticated,
        "no credentials",
    );
    env.shutdown().await;
}

#[tokio::test]
async fn refuses_x509_svids_that_break_spiffe_rules() {
    let mut env = Env::start().await;
    let mut two_uris = Fixture::svid_spec(WORKLOAD_ID);
    two_uris
        .uris
        .push("spiffe://example.org/ns/other/sa/x".into());
    let mut ca_leaf = Fixture::svid_spec(WORKLOAD_ID);
    ca_leaf.is_ca = true;
    let mut expired = Fixture::svid_spec(WORKLOAD_ID);
    expired.not_before = crate::common::offset_now() - time::Duration::hours(2);
    expired.not_after = crate::common::offset_now() - time::Duration::hours(1);
    let foreign_ca = tessera_testkit::pki::ca(
        "foreign",
        Some("spiffe://example.org"),
        None,
        crate::common::offset_now() - time::Duration::hours(1),
        crate::common::offset_now() + time::Duration::hours(1),
    )
    .unwrap();
    let forged = tessera_testkit::pki::leaf(&Fixture::svid_spec(WORKLOAD_ID), &foreign_ca).unwrap();
    let cases = [
        (env.fx.svid(&two_uris), "2 URI SANs"),
        (env.fx.svid(&ca_leaf), "cA=true"),
        (env.fx.svid(&expired), "does not verify against the bundle"),
        (
            forged,
            "does not verify against the bundle of `example.org`",
        ),
    ];
    for (cert, needle) in &cases {
        let mut client = env.client(Some(cert)).await;
        assert_refused(
            mint(&mut client, DEST, PURPOSE, 0, None).await,
            Code::Unauthenticated,
            needle,
        );
    }
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 0, None)
        .await
        .expect("still serving");
    env.shutdown().await;
}

#[tokio::test]
async fn refuses_what_no_grant_allows_with_permission_denied() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let stranger = env
        .fx
        .svid(&Fixture::svid_spec("spiffe://example.org/ns/unknown/sa/x"));
    let mut stranger_client = env.client(Some(&stranger)).await;
    assert_refused(
        mint(&mut stranger_client, DEST, PURPOSE, 0, None).await,
        Code::PermissionDenied,
        "no grant allows spiffe://example.org/ns/unknown/sa/x",
    );
    assert_refused(
        mint(
            &mut client,
            "https://elsewhere.example.org",
            PURPOSE,
            0,
            None,
        )
        .await,
        Code::PermissionDenied,
        "destination `https://elsewhere.example.org` is not granted",
    );
    assert_refused(
        mint(&mut client, DEST, "ledger:delete", 0, None).await,
        Code::PermissionDenied,
        "purpose `ledger:delete` is not granted",
    );
    mint(&mut client, DEST, PURPOSE, 0, None)
        .await
        .expect("still serving");
    env.shutdown().await;
}

#[tokio::test]
async fn refuses_empty_or_oversized_fields_with_invalid_argument() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    assert_refused(
        mint(&mut client, "", PURPOSE, 0, None).await,
        Code::InvalidArgument,
        "destination is required",
    );
    let long = format!("https://{}.example.org", "a".repeat(600));
    assert_refused(
        mint(&mut client, &long, PURPOSE, 0, None).await,
        Code::InvalidArgument,
        "destination is longer than 512 bytes",
    );
    assert_refused(
        mint(&mut client, DEST, "", 0, None).await,
        Code::InvalidArgument,
        "purpose is required",
    );
    assert_refused(
        mint(&mut client, DEST, "two words", 0, None).await,
        Code::InvalidArgument,
        "purpose may not contain spaces",
    );
    mint(&mut client, DEST, PURPOSE, 0, None)
        .await
        .expect("still serving");
    env.shutdown().await;
}
