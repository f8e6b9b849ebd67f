//! RFC 8693 `POST /token`: parameters, issued token types and error bodies (`standards.md` §5).

use serde_json::json;

use crate::ci::{
    EXCHANGE, ID_TOKEN, JWT, PUSH, REGISTRY, assert_oauth_error, ci_env, exchange, exchange_pairs,
};
use crate::common::{https_request, post_form};

#[tokio::test]
async fn asking_for_a_jwt_says_so_in_issued_token_type() {
    let (mut env, issuer) = ci_env().await;
    let token = issuer.github_token(json!({}));
    let pairs = [
        ("grant_type", EXCHANGE),
        ("subject_token", token.as_str()),
        ("subject_token_type", JWT),
        ("requested_token_type", JWT),
        ("resource", REGISTRY),
        ("scope", PUSH),
    ];
    let reply = post_form(&env, "/token", &pairs).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["issued_token_type"], JWT);
    env.shutdown().await;
}

#[tokio::test]
async fn rfc8693_errors_name_the_bad_parameter() {
    let (mut env, issuer) = ci_env().await;
    let token = issuer.github_token(json!({}));
    let t = token.as_str();
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("scope", PUSH),
            ],
            "invalid_request",
            "grant_type is required",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
            ],
            "unsupported_grant_type",
            "token-exchange",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("scope", PUSH),
            ],
            "invalid_request",
            "subject_token is required",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", t),
                ("audience", REGISTRY),
                ("scope", PUSH),
            ],
            "invalid_request",
            "subject_token_type is required",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", t),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
                ("audience", REGISTRY),
                ("scope", PUSH),
            ],
            "invalid_request",
            "subject_token_type must be",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("scope", PUSH),
            ],
            "invalid_request",
            "audience is required",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("audience", "https://other"),
            ],
            "invalid_target",
            "exactly one audience",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("audience", "https://elsewhere.example.org"),
                ("scope", PUSH),
            ],
            "invalid_target",
            "destination `https://elsewhere.example.org` is not granted",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("scope", "image:delete"),
            ],
            "invalid_scope",
            "purpose `image:delete` is not granted",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("scope", "image:push image:pull"),
            ],
            "invalid_scope",
            "exactly one purpose",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", t),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("scope", PUSH),
                ("actor_token", t),
                ("actor_token_type", ID_TOKEN),
            ],
            "invalid_request",
            "actor_token",
        ),
        (
            vec![
                ("grant_type", EXCHANGE),
                ("subject_token", "garbage"),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("scope", PUSH),
            ],
            "invalid_request",
            "subject_token",
        ),
    ];
    for (pairs, error, needle) in cases {
        assert_oauth_error(&post_form(&env, "/token", &pairs).await, error, needle);
    }
    env.shutdown().await;
}

#[tokio::test]
async fn a_form_that_is_not_utf8_once_decoded_is_an_invalid_request_and_issues_nothing() {
    let (mut env, issuer) = ci_env().await;
    let token = issuer.github_token(json!({}));
    // Every parameter but the scope, which is appended undecodable below.
    let pairs = exchange_pairs(&token, REGISTRY, PUSH);
    let valid = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs[..4])
        .finish();
    // `%C3%28` decodes to a lead byte followed by a byte that cannot continue it.
    let reply = https_request(
        &env,
        "POST",
        "/token",
        Some(format!("{valid}&scope=%C3%28")),
    )
    .await;
    assert_oauth_error(&reply, "invalid_request", "not UTF-8");
    // The same token, in a well-formed request, is still unused.
    let reply = exchange(&env, &token, REGISTRY, PUSH).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    env.shutdown().await;
}
