//! CI token checks (`standards.md` §8): `iss` exact, `aud` contains, `exp`/`nbf`/`iat` with
//! leeway, lifetime cap, the `alg` allow-list, the signature against the seeded JWKS, legacy
//! Kubernetes tokens, and what a verified token attests.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::clock::ManualClock;
use crate::http_client::HttpsClient;
use crate::test_jws::{Case, Change, TestKey, case, unsigned};
use crate::test_pki::NOW;

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const K8S: &str = "https://kubernetes.default.svc.cluster.local";
const GENERIC: &str = "https://idp.example.org";
const AUDIENCE: &str = "tessera";
const KID: &str = "k1";
const MAX_LIFETIME: i64 = 600;

fn issuer(issuer: &str, profile: Profile) -> IssuerConfig {
    IssuerConfig {
        issuer: issuer.to_owned(),
        profile,
        audience: AUDIENCE.to_owned(),
        max_token_lifetime: Duration::from_secs(MAX_LIFETIME as u64),
    }
}

/// A verifier for the GitHub, Kubernetes and generic issuers at [`NOW`], with `key` seeded as
/// every issuer's JWKS under [`KID`]. Nothing is fetched unless a token names an unknown `kid`,
/// and then from a closed local port.
async fn verifier(key: &TestKey) -> OidcVerifier {
    let http = HttpsClient::new(&[]).unwrap();
    let issuers = [
        issuer(GITHUB, Profile::Github),
        issuer(K8S, Profile::Kubernetes),
        issuer(GENERIC, Profile::Generic),
    ];
    let sources = issuers
        .iter()
        .map(|i| KeySource {
            issuer: i.issuer.clone(),
            jwks_uri: Some("https://127.0.0.1:1/jwks".into()),
            http: http.clone(),
        })
        .collect();
    let clock: SharedClock = Arc::new(ManualClock::at(NOW));
    let verifier = OidcVerifier::new(issuers.to_vec(), sources, clock);
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(json!({"keys": [key.jwk(KID, Some("sig"))]})).unwrap();
    for i in [GITHUB, K8S, GENERIC] {
        verifier.seed_keys(i, &jwks).await.unwrap();
    }
    verifier
}

fn header() -> Value {
    json!({"alg": "ES256", "kid": KID, "typ": "JWT"})
}

fn github_claims() -> Value {
    json!({
        "iss": GITHUB,
        "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW,
        "nbf": NOW,
        "jti": "6f0c6b5e",
        "repository": "octo-org/octo-repo",
        "repository_owner": "octo-org",
        "repository_id": "123",
        "run_id": "42",
    })
}

fn k8s_claims() -> Value {
    json!({
        "iss": K8S,
        "sub": "system:serviceaccount:payments:deployer",
        "aud": [AUDIENCE],
        "exp": NOW + 600,
        "iat": NOW,
        "kubernetes.io": {
            "namespace": "payments",
            "serviceaccount": {"name": "deployer", "uid": "sa-uid"},
            "pod": {"name": "deployer-7f9", "uid": "pod-uid"},
        },
    })
}

fn remove(v: &mut Value, key: &str) {
    v.as_object_mut().unwrap().remove(key);
}

fn cases() -> Vec<Case<OidcError>> {
    use OidcError as E;
    vec![
        case("a_valid_github_token_is_accepted", Change::None, None),
        case(
            "an_iss_that_differs_by_a_trailing_slash_is_unknown",
            Change::Claims(|c| c["iss"] = json!(format!("{GITHUB}/"))),
            Some(E::UnknownIssuer(format!("{GITHUB}/"))),
        ),
        case(
            "an_aud_array_holding_ours_is_accepted",
            Change::Claims(|c| c["aud"] = json!(["sts.amazonaws.com", AUDIENCE])),
            None,
        ),
        case(
            "an_aud_without_ours_is_refused",
            Change::Claims(|c| c["aud"] = json!("https://github.com/octo-org")),
            Some(E::Audience(AUDIENCE.into())),
        ),
        case(
            "a_missing_aud_is_refused",
            Change::Claims(|c| remove(c, "aud")),
            Some(E::MissingClaim("iss, sub and aud")),
        ),
        case(
            "a_missing_exp_is_refused",
            Change::Claims(|c| remove(c, "exp")),
            Some(E::MissingClaim("exp")),
        ),
        case(
            "an_exp_within_the_leeway_is_accepted",
            Change::Claims(|c| c["exp"] = json!(NOW - LEEWAY_SECS + 1)),
            None,
        ),
        case(
            "an_exp_past_the_leeway_is_refused",
            Change::Claims(|c| c["exp"] = json!(NOW - LEEWAY_SECS)),
            Some(E::Expired {
                exp: NOW - LEEWAY_SECS,
                now: NOW,
            }),
        ),
        case(
            "an_nbf_beyond_the_leeway_is_refused",
            Change::Claims(|c| c["nbf"] = json!(NOW + LEEWAY_SECS + 1)),
            Some(E::NotYetValid {
                nbf: NOW + LEEWAY_SECS + 1,
                now: NOW,
            }),
        ),
        case(
            "an_iat_beyond_the_leeway_is_refused",
            Change::Claims(|c| {
                remove(c, "nbf");
                c["iat"] = json!(NOW + LEEWAY_SECS + 1);
            }),
            Some(E::IssuedInFuture {
                iat: NOW + LEEWAY_SECS + 1,
                now: NOW,
            }),
        ),
        case(
            "a_token_without_iat_or_nbf_is_refused_as_unbounded",
            Change::Claims(|c| {
                remove(c, "iat");
                remove(c, "nbf");
            }),
            Some(E::MissingClaim("iat")),
        ),
        case(
            "nbf_stands_in_for_a_missing_iat",
            Change::Claims(|c| remove(c, "iat")),
            None,
        ),
        case(
            "a_lifetime_of_exactly_the_cap_is_accepted",
            Change::Claims(|c| c["iat"] = json!(NOW + 300 - MAX_LIFETIME)),
            None,
        ),
        case(
            "a_lifetime_over_the_cap_is_refused",
            Change::Claims(|c| c["iat"] = json!(NOW + 300 - MAX_LIFETIME - 1)),
            Some(E::TooLongLived {
                lifetime: MAX_LIFETIME + 1,
                max: MAX_LIFETIME,
            }),
        ),
        case(
            "alg_none_is_refused",
            Change::Token(|_, c, _, _| unsigned(&json!({"alg": "none"}), c)),
            Some(E::AlgNotAllowed("none".into())),
        ),
        case(
            "alg_hs256_is_refused",
            Change::Header(|h| h["alg"] = json!("HS256")),
            Some(E::AlgNotAllowed("HS256".into())),
        ),
        case(
            "a_header_without_alg_is_refused",
            Change::Header(|h| remove(h, "alg")),
            Some(E::AlgNotAllowed(String::new())),
        ),
        case(
            "an_alg_the_named_key_cannot_verify_is_refused",
            Change::Header(|h| h["alg"] = json!("RS256")),
            Some(E::AlgKeyMismatch {
                kid: KID.into(),
                alg: "RS256".into(),
            }),
        ),
        case(
            "a_signature_by_a_stranger_is_refused",
            Change::Token(|h, c, _, stranger| stranger.sign(h, c)),
            Some(E::BadSignature),
        ),
        case(
            "a_token_not_shaped_like_github_is_refused_by_the_profile",
            Change::Claims(|c| c["sub"] = json!("project_path:group/project:ref_type:branch")),
            Some(E::Profile {
                profile: Profile::Github,
                reason: "sub does not start with `repo:`".into(),
            }),
        ),
        case(
            "a_legacy_kubernetes_token_is_refused_even_unconfigured",
            Change::Claims(|c| {
                c["iss"] = json!(LEGACY_KUBERNETES_ISSUER);
                remove(c, "exp");
            }),
            Some(E::LegacyKubernetes),
        ),
        case(
            "two_parts_are_not_compact",
            Change::Token(|_, _, _, _| "eyJhbGciOiJFUzI1NiJ9.e30".into()),
            Some(E::NotCompact),
        ),
        case(
            "claims_that_are_not_json_are_refused",
            Change::Token(|_, _, _, _| "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln".into()),
            Some(E::BadEncoding("claims")),
        ),
        case(
            "a_header_that_is_not_json_is_refused",
            Change::Token(|h, c, key, _| {
                let token = key.sign(h, c);
                format!("bm90IGpzb24.{}", token.split_once('.').unwrap().1)
            }),
            Some(E::BadEncoding("header")),
        ),
    ]
}

#[tokio::test]
async fn each_ci_token_check_refuses_its_violation_and_nothing_else() {
    let key = TestKey::es256();
    let stranger = TestKey::es256();
    let verifier = verifier(&key).await;
    for case in cases() {
        let (h, c) = (header(), github_claims());
        let token = case.change.token(h, c, &key, &stranger);
        match (&case.refused, verifier.verify(&token).await) {
            (None, Ok(a)) => assert_eq!(a.evidence_kind, EvidenceKind::Oidc, "{}", case.name),
            (Some(want), Err(got)) => assert_eq!(&got, want, "{}", case.name),
            (None, Err(e)) => panic!("{}: refused with {e:?}", case.name),
            (Some(want), Ok(_)) => panic!("{}: accepted, expected {want:?}", case.name),
        }
    }
    // The unknown-kid case is not in the table: it is the only one that fetches.
    assert_eq!(verifier.jwks_fetches(), 0);
}

#[tokio::test]
async fn a_verified_github_token_attests_its_run_once_until_exp() {
    let key = TestKey::es256();
    let token = key.sign(&header(), &github_claims());
    let attestation = verifier(&key).await.verify(&token).await.unwrap();
    let Principal::Ci(ci) = &attestation.principal else {
        panic!("not a CI principal: {:?}", attestation.principal);
    };
    assert_eq!(ci.issuer, GITHUB);
    assert_eq!(ci.subject, "repo:octo-org/octo-repo:ref:refs/heads/main");
    assert_eq!(ci.run_id.as_deref(), Some("42"));
    assert_eq!(ci.jti.as_deref(), Some("6f0c6b5e"));
    assert_eq!(ci.claim("repository_id").as_deref(), Some("123"));
    assert_eq!(attestation.evidence_kind, EvidenceKind::Oidc);
    assert_eq!(attestation.evidence_hash, sha256_hex(token.as_bytes()));
    let signing_input = token.rsplit_once('.').unwrap().0;
    assert_eq!(
        attestation.one_time,
        Some(OneTime {
            key: sha256_hex(signing_input.as_bytes()),
            until: NOW + 300,
        })
    );
}

#[tokio::test]
async fn a_kubernetes_token_names_its_pod_and_needs_exp() {
    let key = TestKey::es256();
    let verifier = verifier(&key).await;
    let token = key.sign(&header(), &k8s_claims());
    let attestation = verifier.verify(&token).await.unwrap();
    let Principal::Ci(ci) = &attestation.principal else {
        panic!("not a CI principal");
    };
    assert_eq!(ci.run_id.as_deref(), Some("pod-uid"));
    assert_eq!(
        ci.claim("kubernetes.io.serviceaccount.name").as_deref(),
        Some("deployer")
    );

    let mut claims = k8s_claims();
    remove(&mut claims, "exp");
    let token = key.sign(&header(), &claims);
    assert_eq!(
        verifier.verify(&token).await,
        Err(OidcError::LegacyKubernetes)
    );

    let mut claims = k8s_claims();
    claims["sub"] = json!("system:serviceaccount:payments:other");
    let token = key.sign(&header(), &claims);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(OidcError::Profile {
            profile: Profile::Kubernetes,
            ..
        })
    ));
}

#[tokio::test]
async fn eddsa_is_allowed_for_ci_tokens() {
    let key = TestKey::ed25519();
    let verifier = verifier(&key).await;
    let claims =
        json!({"iss": GENERIC, "sub": "anything", "aud": AUDIENCE, "exp": NOW + 60, "iat": NOW});
    let token = key.sign(&json!({"alg": "EdDSA", "kid": KID}), &claims);
    let attestation = verifier.verify(&token).await.unwrap();
    let Principal::Ci(ci) = attestation.principal else {
        panic!("not a CI principal");
    };
    assert_eq!((ci.subject.as_str(), ci.run_id), ("anything", None));
}

#[tokio::test]
async fn an_unknown_kid_refreshes_once_and_keeps_the_cached_keys_when_the_issuer_is_down() {
    let key = TestKey::es256();
    let verifier = verifier(&key).await;
    let token = key.sign(&json!({"alg": "ES256", "kid": "k2"}), &github_claims());
    assert_eq!(
        verifier.verify(&token).await,
        Err(OidcError::UnknownKid("k2".into()))
    );
    assert_eq!(verifier.jwks_fetches(), 1);
    // Rate-limited: a second unknown kid within MIN_REFRESH_SECS does not fetch again.
    assert_eq!(
        verifier.verify(&token).await,
        Err(OidcError::UnknownKid("k2".into()))
    );
    assert_eq!(verifier.jwks_fetches(), 1);
    // The seeded keys still verify.
    let token = key.sign(&header(), &github_claims());
    assert!(verifier.verify(&token).await.is_ok());
}

#[test]
fn a_claim_path_walks_nested_objects_and_prints_scalars_as_platforms_mean_them() {
    let Value::Object(claims) = json!({
        "ref_protected": true,
        "run_number": 7,
        "kubernetes.io": {"namespace": "payments", "pod": {"uid": "u"}},
        "list": ["a"],
    }) else {
        unreachable!()
    };
    let ci = CiIdentity {
        issuer: GENERIC.into(),
        subject: "s".into(),
        claims,
        run_id: None,
        jti: None,
    };
    assert_eq!(ci.claim("ref_protected").as_deref(), Some("true"));
    assert_eq!(ci.claim("run_number").as_deref(), Some("7"));
    assert_eq!(
        ci.claim("kubernetes.io.namespace").as_deref(),
        Some("payments")
    );
    assert_eq!(ci.claim("kubernetes.io.pod.uid").as_deref(), Some("u"));
    assert_eq!(ci.claim("list"), None);
    assert_eq!(ci.claim("kubernetes.io.missing"), None);
}
