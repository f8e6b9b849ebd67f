//! The inventory of grants: `Admin/ListGrants` shows the grants in force (a reload replaces
//! them), each with its usage (kept in the ledger, so it survives a restart), its live
//! credentials and what it allows but never issued;
//! `tessera grants` prints it; `tessera review` finds what owners should act on and exits 1,
//! or 0 on a clean review.

use std::process::Output;

use tessera_proto::admin_client::AdminClient;
use tessera_proto::{
    GrantInfo, ListGrantsRequest, ListGrantsResponse, MintX509Request, ReloadRequest,
};
use tessera_testkit::dev::WORKLOAD_ID;
use tessera_testkit::postgres::TestDatabase;
use tonic::Code;

use crate::common::{
    DEST, EXTRA_GRANTS, Env, Fixture, PURPOSE, admin_cli, csr_der, mint, offset_now, run_cli,
};

const AUDIT: &str = "https://audit.example.org";

async fn list(env: &Env) -> ListGrantsResponse {
    env.admin_client()
        .await
        .list_grants(ListGrantsRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn grant<'a>(reply: &'a ListGrantsResponse, name: &str) -> &'a GrantInfo {
    reply.grants.iter().find(|g| g.name == name).unwrap()
}

/// Mints an X.509-SVID for the dev workload, for the ledger destination.
async fn mint_x509(env: &Env) {
    env.workload_client()
        .await
        .mint_x509(MintX509Request {
            csr: csr_der(),
            destination: DEST.into(),
            purpose: PURPOSE.into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap();
}

/// Runs the `tessera` binary with `args` as the fixture's admin against `env`, off the
/// runtime the server runs on.
async fn cli(env: &Env, args: &[&str]) -> Output {
    run_cli(admin_cli(env, env.grpc, args)).await
}

#[tokio::test]
async fn list_grants_shows_counts_the_last_issue_and_what_was_never_used() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    for _ in 0..2 {
        mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    }
    mint_x509(&env).await;
    let reply = list(&env).await;
    assert_eq!(reply.grants.len(), 2, "in configuration order");
    let g = &reply.grants[0];
    assert_eq!(
        (g.name.as_str(), g.owner.as_str()),
        ("payments-api", "team-payments")
    );
    assert_eq!(g.workload, WORKLOAD_ID);
    assert_eq!(g.r#match.as_ref().unwrap().spiffe_id, WORKLOAD_ID);
    assert_eq!(g.expires, env.fx.material.not_after.date().to_string());
    assert_eq!((g.max_ttl_seconds, g.default_ttl_seconds), (900, 300));
    assert_eq!(
        (g.issued_total, g.issued_24h, g.issued_30d, g.live),
        (3, 3, 3, 3)
    );
    let age = reply.now_ms - g.last_issued_at_ms;
    assert!((0..60_000).contains(&age), "last issued {age} ms ago");
    assert!(g.first_issued_at_ms <= g.last_issued_at_ms);
    assert_eq!(g.unused_destinations, vec![AUDIT.to_owned()]);
    assert_eq!(g.unused_purposes, vec!["ledger:read".to_owned()]);
    assert!(g.unused_credential_kinds.is_empty());
    let kinds: Vec<(&str, u64)> = g
        .usage
        .iter()
        .map(|u| (u.kind.as_str(), u.issued_total))
        .collect();
    assert_eq!(kinds, vec![("jwt", 2), ("x509", 1)]);
    let idle = grant(&reply, "reports-cron");
    assert_eq!(
        (idle.last_issued_at_ms, idle.issued_total, idle.live),
        (0, 0, 0)
    );
    assert_eq!(idle.unused_credential_kinds, vec!["jwt".to_owned()]);
    // Admins only.
    let workload = env.channel(Some(&env.fx.material.workload)).await;
    let refused = AdminClient::new(workload)
        .list_grants(ListGrantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    env.shutdown().await;
}

/// Mints two credentials on `fx`, restarts the server on the same ledger, and checks that
/// ListGrants shows the same usage.
async fn usage_survives_a_restart(fx: Fixture) {
    let env = Env::start_fixture(fx).await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    mint(&mut client, AUDIT, "ledger:read", 60, None)
        .await
        .unwrap();
    let before = grant(&list(&env).await, "payments-api").clone();
    let mut env = env.restart().await;
    let after = list(&env).await;
    let after = grant(&after, "payments-api");
    assert_eq!(after.issued_total, 2);
    assert_eq!(after.usage, before.usage);
    assert_eq!(
        (after.first_issued_at_ms, after.last_issued_at_ms),
        (before.first_issued_at_ms, before.last_issued_at_ms)
    );
    assert!(after.unused_destinations.is_empty());
    assert_eq!(after.live, 2, "live counts are restored too");
    env.shutdown().await;
}

#[tokio::test]
async fn usage_survives_a_restart_on_the_same_embedded_ledger() {
    usage_survives_a_restart(Fixture::new()).await;
}

#[tokio::test]
async fn usage_survives_a_restart_on_the_same_postgres_ledger() {
    let db = TestDatabase::create().await;
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let path_line = text
        .lines()
        .find(|l| l.starts_with("path = "))
        .unwrap()
        .to_owned();
    let url = format!("url = \"{}\"", db.url());
    std::fs::write(&fx.config_path, text.replacen(&path_line, &url, 1)).unwrap();
    usage_survives_a_restart(fx).await;
    let keys = db.query("SELECT count(*) FROM grant_usage").await;
    assert_eq!(keys, vec![vec!["2".to_owned()]], "kept in the database");
}

#[tokio::test]
async fn the_cli_prints_the_grants_as_a_table_and_as_json_lines() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let table = cli(&env, &["grants"]).await;
    assert!(table.status.success(), "{table:?}");
    let text = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{text}");
    assert!(lines[1].starts_with("payments-api"), "{text}");
    assert!(
        lines[1].contains("dest:https://audit.example.org"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("reports-cron") && lines[2].contains("never"),
        "{text}"
    );
    let json = cli(&env, &["grants", "--json"]).await;
    assert!(json.status.success(), "{json:?}");
    let first: serde_json::Value = serde_json::from_str(
        std::str::from_utf8(&json.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["name"], "payments-api");
    assert_eq!(first["issued_24h"], 1);
    assert_eq!(first["match"]["spiffe_id"], WORKLOAD_ID);
    env.shutdown().await;
}

/// A CI issuer, and a grant for it that trusts every repository's main branch.
const WIDE_CI_GRANT: &str = r#"
[[oidc_issuer]]
issuer = "https://ci.example.org"
profile = "github"
audience = "tessera"

[[grant]]
name = "ci-deploy"
workload = "spiffe://example.org/ci/deploy"
owner = "team-ci"
expires = "2099-01-01"
destinations = ["https://deploy.example.org"]
purposes = ["deploy"]
[grant.match]
issuer = "https://ci.example.org"
subject = { pattern = "repo:.*:ref:refs/heads/main" }
"#;

/// Returns a grant named `name` of workload `ns/batch/sa/<name>` that expires `days` from
/// today (before today when negative).
fn grant_expiring(name: &str, days: i64) -> String {
    let expires = (offset_now() + time::Duration::days(days)).date();
    format!(
        r#"
[[grant]]
name = "{name}"
workload = "spiffe://example.org/ns/batch/sa/{name}"
owner = "team-batch"
expires = "{expires}"
destinations = ["https://batch.example.org"]
purposes = ["batch:run"]
[grant.match]
spiffe_id = "spiffe://example.org/ns/batch/sa/{name}"
"#
    )
}

#[tokio::test]
async fn review_finds_each_kind_of_finding_and_exits_1() {
    let extra = format!(
        "{EXTRA_GRANTS}{WIDE_CI_GRANT}{}{}",
        grant_expiring("soon", 3),
        grant_expiring("gone", -1)
    );
    let fx = Fixture::with_extra(&extra);
    let mut env = Env::start_fixture(fx).await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let out = cli(&env, &["review", "--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let review: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(String, String)> = review["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let who = f["grant"].as_str().or(f["owner"].as_str()).unwrap();
            (f["kind"].as_str().unwrap().to_owned(), who.to_owned())
        })
        .collect();
    let has = |kind: &str, who: &str| found.contains(&(kind.to_owned(), who.to_owned()));
    assert!(has("unused-grant", "reports-cron"), "{found:?}");
    assert!(has("unused-grant", "soon"), "{found:?}");
    assert!(has("never-used", "payments-api"), "{found:?}");
    assert!(has("expiring", "soon"), "{found:?}");
    assert!(has("expired", "gone"), "{found:?}");
    assert!(!has("expiring", "gone"), "{found:?}");
    assert!(has("wide-ci-trust", "ci-deploy"), "{found:?}");
    assert!(has("owner-nothing-live", "team-reports"), "{found:?}");
    assert!(!has("owner-nothing-live", "team-payments"), "{found:?}");
    let narrow = review["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["kind"] == "never-used" && f["message"].as_str().unwrap().contains("destination")
        })
        .unwrap();
    assert_eq!(
        narrow["suggestion"],
        r#"narrow the grant: destinations = ["https://ledger.example.org"]"#
    );
    assert_eq!(review["longest_max_ttl"][0]["max_ttl_seconds"], 900);
    let markdown = cli(&env, &["review", "--markdown", "--unused-for", "1h"]).await;
    assert_eq!(markdown.status.code(), Some(1), "{markdown:?}");
    let text = String::from_utf8(markdown.stdout).unwrap();
    assert!(text.starts_with("# Grant review"), "{text}");
    assert!(
        text.contains("## CI grants that trust too widely"),
        "{text}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn review_exits_0_when_every_grant_is_used_live_and_far_from_expiry() {
    // Only the dev grant: two destinations, two purposes, both kinds.
    let mut env = Env::start_fixture(Fixture::with_extra("")).await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    mint(&mut client, AUDIT, "ledger:read", 60, None)
        .await
        .unwrap();
    mint_x509(&env).await;
    let out = cli(&env, &["review"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("0 findings in 1 grants"), "{text}");
    env.shutdown().await;
}

#[tokio::test]
async fn review_exits_2_when_it_cannot_reach_the_broker() {
    let mut env = Env::start().await;
    let grpc = env.grpc;
    env.shutdown().await;
    let out = run_cli(admin_cli(&env, grpc, &["review"])).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn a_reload_puts_its_grants_in_the_inventory() {
    let mut env = Env::start().await;
    let text = std::fs::read_to_string(&env.fx.config_path).unwrap();
    let edited = text.replace(EXTRA_GRANTS, &grant_expiring("added", 100));
    std::fs::write(&env.fx.config_path, edited).unwrap();
    env.admin_client()
        .await
        .reload(ReloadRequest {})
        .await
        .unwrap();
    let names: Vec<String> = list(&env)
        .await
        .grants
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, vec!["payments-api".to_owned(), "added".to_owned()]);
    env.shutdown().await;
}
