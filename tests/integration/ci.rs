//! CI runners exchange OIDC tokens (GitHub, GitLab, Kubernetes) over RFC 8693 and gRPC.

use std::sync::Arc;

use serde_json::{Value, json};
use tessera_core::clock::{ManualClock, SharedClock};
use tessera_ledger::{EvidenceKind, Ledger, RedbLedger, RedbOptions};
use tessera_testkit::fixtures::{
    CI_DESTINATION, CI_PURPOSE, CI_SUBJECT, CI_WORKLOAD, GrantToml, ci_grant_toml,
};
use tonic::Code;

use crate::common::{Env, Fixture, HttpReply, claims_of, csr_der, mint, now, post_form};
use crate::issuer::{TestIssuer, rand_hex};

pub(crate) const REGISTRY: &str = CI_DESTINATION;
pub(crate) const PUSH: &str = CI_PURPOSE;
pub(crate) const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub(crate) const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const GITHUB_WORKLOAD: &str = CI_WORKLOAD;

/// Returns the CI grants: the shared GitHub one, and one each for GitLab and Kubernetes.
fn ci_grants(issuer: &TestIssuer) -> String {
    let gitlab = GrantToml {
        name: "gitlab-acme-app",
        workload: "spiffe://example.org/ci/gitlab/acme/app",
        owner: "team-app",
        destinations: &[REGISTRY],
        purposes: &[PUSH, "image:pull"],
        credentials: &[],
        matches: &format!(
            r#"issuer = "{}"
subject = {{ pattern = "project_path:acme/app:ref_type:branch:ref:(main|release-.+)" }}
claims = {{ project_id = "42", ref_protected = "true" }}"#,
            issuer.url("gitlab")
        ),
    };
    let k8s = GrantToml {
        name: "k8s-batch-etl",
        workload: "spiffe://example.org/ns/batch/sa/etl",
        owner: "team-data",
        destinations: &["https://warehouse.example.org"],
        purposes: &["load"],
        credentials: &[],
        matches: &format!(
            r#"issuer = "{}"
subject = "system:serviceaccount:batch:etl"
claims = {{ "kubernetes.io.namespace" = "batch" }}"#,
            issuer.url("k8s")
        ),
    };
    ci_grant_toml(&issuer.url("github")) + &gitlab.render() + &k8s.render()
}

/// A broker trusting a fresh test issuer.
async fn ci_env_with_clock(clock: Option<SharedClock>) -> (Env, TestIssuer) {
    let issuer = TestIssuer::start().await;
    let fx = Fixture::new();
    let ca_file = fx.path("issuer-ca.pem");
    issuer.write_ca(&ca_file);
    fx.append_config(&(issuer.config(&ca_file) + &ci_grants(&issuer)));
    let env = match clock {
        Some(clock) => Env::start_with_clock(fx, clock).await,
        None => Env::start_fixture(fx).await,
    };
    (env, issuer)
}

pub(crate) async fn ci_env() -> (Env, TestIssuer) {
    ci_env_with_clock(None).await
}

/// The form of an RFC 8693 exchange of the CI ID token `token` for `audience` and `scope`,
/// `scope` last.
pub(crate) fn exchange_pairs<'a>(
    token: &'a str,
    audience: &'a str,
    scope: &'a str,
) -> [(&'static str, &'a str); 5] {
    [
        ("grant_type", EXCHANGE),
        ("subject_token", token),
        ("subject_token_type", ID_TOKEN),
        ("audience", audience),
        ("scope", scope),
    ]
}

pub(crate) async fn exchange(env: &Env, token: &str, audience: &str, scope: &str) -> HttpReply {
    post_form(env, "/token", &exchange_pairs(token, audience, scope)).await
}

/// Exchanges a fresh GitHub token for [`REGISTRY`] and [`PUSH`]; panics unless it succeeds.
async fn exchanges_a_fresh_github_token(env: &Env, issuer: &TestIssuer) {
    let reply = exchange(env, &issuer.github_token(json!({})), REGISTRY, PUSH).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[track_caller]
pub(crate) fn assert_oauth_error(reply: &HttpReply, error: &str, needle: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(reply.json_keys(), ["error", "error_description"]);
    let body = reply.json();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains(needle),
        "{body} should mention {needle:?}"
    );
}

#[tokio::test]
async fn exchanges_a_github_token_with_the_exact_rfc8693_response() {
    let (mut env, issuer) = ci_env().await;
    let token = issuer.github_token(json!({}));
    let reply = exchange(&env, &token, REGISTRY, PUSH).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(
        reply.json_keys(),
        [
            "access_token",
            "expires_in",
            "issued_token_type",
            "token_type"
        ]
    );
    let body = reply.json();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let minted = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        minted["sub"], GITHUB_WORKLOAD,
        "the grant's workload becomes sub"
    );
    assert_eq!(
        (minted["aud"].as_str(), minted["scope"].as_str()),
        (Some(REGISTRY), Some(PUSH))
    );

    let jti = minted["jti"].as_str().unwrap().to_owned();
    env.shutdown().await;
    let ledger = RedbLedger::open(&env.fx.ledger_path, RedbOptions::default()).unwrap();
    let record = ledger.get(&jti).await.unwrap().unwrap();
    assert_eq!(record.evidence_kind, EvidenceKind::Oidc);
    let ci = record.ci.expect("CI evidence recorded");
    assert_eq!(ci.issuer, issuer.url("github"));
    assert_eq!(ci.subject, CI_SUBJECT);
    assert_eq!(ci.run_id.as_deref(), Some("9001"));
    assert!(ci.jti.is_some_and(|j| j.starts_with("gh-")));
}

#[tokio::test]
async fn gitlab_and_kubernetes_tokens_work_over_grpc_and_token_exchange() {
    let (mut env, issuer) = ci_env().await;
    let mut client = env.client(None).await;
    let gitlab = issuer.gitlab_token(json!({"sub": "project_path:acme/app:ref_type:branch:ref:release-1.2", "ref": "release-1.2"}));
    let reply = mint(&mut client, REGISTRY, "image:pull", 0, Some(&gitlab))
        .await
        .unwrap();
    assert_eq!(
        claims_of(&reply.token)["sub"],
        "spiffe://example.org/ci/gitlab/acme/app"
    );

    let k8s = issuer.kubernetes_token(json!({}));
    let reply = exchange(&env, &k8s, "https://warehouse.example.org", "load").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        claims_of(reply.json()["access_token"].as_str().unwrap())["sub"],
        "spiffe://example.org/ns/batch/sa/etl"
    );

    // MintX509 accepts a CI bearer too.
    let mut request = tonic::Request::new(tessera_proto::MintX509Request {
        csr: csr_der(),
        destination: REGISTRY.into(),
        purpose: PUSH.into(),
        ttl_seconds: 0,
    });
    let github = issuer.github_token(json!({}));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {github}").parse().unwrap());
    let x509 = client.mint_x509(request).await.unwrap().into_inner();
    assert_eq!(x509.cert_chain.len(), 2);
    env.shutdown().await;
}

#[tokio::test]
async fn refuses_tokens_that_do_not_match_or_do_not_verify() {
    let (mut env, issuer) = ci_env().await;
    let t = now();
    let hs256 = {
        let good = issuer.github_token(json!({}));
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        use base64::Engine;
        parts[0] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        parts.join(".")
    };
    let none = {
        let good = issuer.github_token(json!({}));
        use base64::Engine;
        let claims = good.split('.').nth(1).unwrap().to_owned();
        format!(
            "{}.{claims}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#)
        )
    };
    let legacy = issuer.sign(
        &json!({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:batch:etl",
        "kubernetes.io/serviceaccount/namespace": "batch", "aud": "tessera"}),
    );
    let cases: Vec<(String, &str, &str)> = vec![
        (issuer.github_token(json!({"repository_owner_id": "666", "repository_owner": "evil"})), "invalid_target", "no grant allows"),
        (issuer.github_token(json!({"sub": "repo:evil/app:ref:refs/heads/main", "repository": "evil/app"})), "invalid_target", "no grant allows"),
        (issuer.github_token(json!({"sub": "repo:acme/app:ref:refs/heads/feature"})), "invalid_target", "no grant allows"),
        (issuer.github_token(json!({"aud": "someone-else"})), "invalid_request", "aud does not contain `tessera`"),
        (issuer.github_token(json!({"iat": t - 900, "nbf": t - 900, "exp": t - 600})), "invalid_request", "expired"),
        (issuer.sign(&json!({"iss": "https://unknown.example.org", "sub": "x", "aud": "tessera", "exp": t + 60})), "invalid_request", "not a configured OIDC issuer"),
        (hs256, "invalid_request", "alg `HS256` is not allowed"),
        (none, "invalid_request", "alg `none` is not allowed"),
        (legacy, "invalid_request", "legacy Kubernetes"),
        (issuer.kubernetes_token(json!({"exp": null})), "invalid_request", "legacy Kubernetes"),
        (issuer.github_token(json!({"iat": t, "exp": t + 86_400})), "invalid_request", "lifetime"),
        (issuer.github_token(json!({"repository": null})), "invalid_request", "does not look like a github token"),
        (issuer.github_token(json!({"iat": null, "nbf": null})), "invalid_request", "claim `iat`"),
    ];
    for (token, error, needle) in cases {
        assert_oauth_error(&exchange(&env, &token, REGISTRY, PUSH).await, error, needle);
    }
    assert_eq!(
        exchange(&env, &issuer.github_token(json!({})), REGISTRY, PUSH)
            .await
            .status,
        200,
        "still serving"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_token_is_exchanged_once_per_destination_and_purpose_across_http_and_grpc() {
    let (mut env, issuer) = ci_env().await;
    let token = issuer.github_token(json!({}));
    assert_eq!(exchange(&env, &token, REGISTRY, PUSH).await.status, 200);
    assert_oauth_error(
        &exchange(&env, &token, REGISTRY, PUSH).await,
        "invalid_request",
        "already exchanged",
    );
    let mut client = env.client(None).await;
    let status = mint(&mut client, REGISTRY, PUSH, 0, Some(&token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("already exchanged"), "{status:?}");
    // Another purpose of the same grant is a different exchange.
    let gitlab = issuer.gitlab_token(json!({}));
    assert_eq!(exchange(&env, &gitlab, REGISTRY, PUSH).await.status, 200);
    assert_eq!(
        exchange(&env, &gitlab, REGISTRY, "image:pull").await.status,
        200
    );
    env.shutdown().await;
}

#[tokio::test]
async fn concurrent_first_uses_of_an_issuer_share_one_fetch_and_all_succeed() {
    let (mut env, issuer) = ci_env().await;
    // Slow enough that every exchange arrives while the first fetch is under way.
    issuer.set_delay(std::time::Duration::from_millis(300));
    let tokens: Vec<String> = (0..8).map(|_| issuer.github_token(json!({}))).collect();
    let replies = futures::future::join_all(
        tokens
            .iter()
            .map(|token| exchange(&env, token, REGISTRY, PUSH)),
    )
    .await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(issuer.jwks_fetches(), 1, "one shared fetch");
    env.shutdown().await;
}

#[tokio::test]
async fn the_replay_record_survives_a_restart() {
    let (env, issuer) = ci_env().await;
    let token = issuer.github_token(json!({}));
    assert_eq!(exchange(&env, &token, REGISTRY, PUSH).await.status, 200);
    let mut env = env.restart().await;
    assert_oauth_error(
        &exchange(&env, &token, REGISTRY, PUSH).await,
        "invalid_request",
        "already exchanged",
    );
    env.shutdown().await;
}

#[tokio::test]
async fn picks_up_a_rotated_issuer_key_without_a_restart() {
    let clock = Arc::new(ManualClock::at(now()));
    let (mut env, issuer) = ci_env_with_clock(Some(Arc::clone(&clock) as SharedClock)).await;
    exchanges_a_fresh_github_token(&env, &issuer).await;
    issuer.rotate("key-2");
    clock.advance(15); // past the refresh rate limit
    exchanges_a_fresh_github_token(&env, &issuer).await;
    env.shutdown().await;
}

#[tokio::test]
async fn a_thousand_unknown_kids_cause_at_most_a_handful_of_jwks_fetches() {
    let (mut env, issuer) = ci_env().await;
    exchanges_a_fresh_github_token(&env, &issuer).await;
    let before = issuer.jwks_fetches();
    let client = env.client(None).await;
    let template = issuer.github_token(json!({}));
    let (_, rest) = template.split_once('.').unwrap();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        use base64::Engine;
        let header = json!({"alg": "RS256", "kid": format!("bogus-{}", rand_hex())}).to_string();
        let token = format!(
            "{}.{rest}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
        );
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            mint(&mut client, REGISTRY, PUSH, 0, Some(&token)).await
        }));
    }
    for task in tasks {
        let status = task.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            status.message().contains("is not in the issuer's JWKS"),
            "{status:?}"
        );
    }
    let fetches = issuer.jwks_fetches() - before;
    assert!(fetches <= 3, "{fetches} JWKS fetches for 1000 unknown kids");
    env.shutdown().await;
}

#[tokio::test]
async fn an_issuer_that_is_down_does_not_stop_tokens_with_cached_keys() {
    let (mut env, issuer) = ci_env().await;
    exchanges_a_fresh_github_token(&env, &issuer).await;
    issuer.stop();
    exchanges_a_fresh_github_token(&env, &issuer).await;
    env.shutdown().await;
}

#[tokio::test]
async fn tessera_exchange_prints_the_minted_token() {
    let (mut env, issuer) = ci_env().await;
    let token = issuer.github_token(json!({}));
    let http = env.http;
    let ca = env.fx.path("tls-ca.pem");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "exchange",
                "--server",
                &format!("https://localhost:{}", http.port()),
                "--token-env",
                "CI_TOKEN",
            ])
            .args(["--destination", REGISTRY, "--purpose", PUSH, "--ca"])
            .arg(ca)
            .env("CI_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(claims_of(printed.trim())["sub"], GITHUB_WORKLOAD);
    env.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_with_a_10_kb_issuer_writes_a_short_audit_line() {
    let (mut env, issuer) = ci_env().await;
    let huge = format!("https://{}.example.org", "a".repeat(10 * 1024));
    let token = issuer.sign(&json!({"iss": huge, "sub": "x", "aud": "tessera", "exp": now() + 60}));
    let reply = exchange(&env, &token, REGISTRY, PUSH).await;
    assert_oauth_error(&reply, "invalid_request", "not a configured OIDC issuer");
    env.shutdown().await;
    let log = std::fs::read_to_string(env.fx.dir.path().join("data/audit.log")).unwrap();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""event":"refused""#))
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(refused[0].len() < 1024, "{} bytes", refused[0].len());
    let line: Value = serde_json::from_str(refused[0]).unwrap();
    let reason = line["reason"].as_str().unwrap();
    assert!(reason.contains("…[truncated, "), "{reason}");
}

#[tokio::test]
async fn repeated_refusals_of_one_bad_token_are_audited_once_with_a_count() {
    let clock = Arc::new(ManualClock::at(now()));
    let (mut env, issuer) = ci_env_with_clock(Some(Arc::clone(&clock) as SharedClock)).await;
    let unknown = "https://unknown.example.org";
    let token =
        issuer.sign(&json!({"iss": unknown, "sub": "x", "aud": "tessera", "exp": now() + 60}));
    for _ in 0..5 {
        let reply = exchange(&env, &token, REGISTRY, PUSH).await;
        assert_oauth_error(&reply, "invalid_request", "not a configured OIDC issuer");
    }
    env.shutdown().await;
    let log = std::fs::read_to_string(env.fx.dir.path().join("data/audit.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l["event"].as_str().unwrap().starts_with("refused"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[0]["event"], "refused");
    assert_eq!(lines[1]["event"], "refused_repeated");
    assert_eq!(lines[1]["count"], 4);
    assert_eq!(lines[1]["reason"], lines[0]["reason"]);
}
