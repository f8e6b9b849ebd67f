//! Governance through the real server: a reload (Admin/Reload, `tessera reload`) puts a new
//! configuration in force without a restart, revokes what it took away from the grants
//! (offboarding: introspection and status lists see it at once), refuses an invalid file while
//! the old one keeps serving, and an expired grant neither stops start-up nor mints.

use tessera_proto::ReloadRequest;
use tonic::Code;

use crate::common::{
    DEST, EXTRA_GRANTS, Env, Fixture, JWT_ONLY_ID, PURPOSE, admin_cli, https_request, mint, run_cli,
};
use crate::revocation::{active, admin};
use crate::status_list::{bit, entry, fetch_until};

const AUDIT_DEST: &str = "https://audit.example.org";
const REPORTS_DEST: &str = "https://reports.example.org";

/// Rewrites the fixture's config file with `edit`.
fn edit_config(env: &Env, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&env.fx.config_path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&env.fx.config_path, edited).unwrap();
}

/// Reloads `env`'s configuration as its admin; returns the reply. Panics if refused.
async fn reload(env: &Env) -> tessera_proto::ReloadResponse {
    admin(env)
        .await
        .reload(ReloadRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Mints a JWT for the `reports-cron` grant's workload.
async fn mint_reports(env: &Env) -> Result<String, tonic::Status> {
    let svid = env.fx.svid(&Fixture::svid_spec(JWT_ONLY_ID));
    let mut client = env.client(Some(&svid)).await;
    mint(&mut client, REPORTS_DEST, "reports:read", 60, None)
        .await
        .map(|r| r.token)
}

/// Returns the status list bit of `token` once the served list shows it set (within 10 s).
async fn listed_as_revoked(env: &Env, token: &str) -> bool {
    let (path, _, idx) = entry(env, token);
    let reply = fetch_until(env, &path, |jwt| bit(jwt, idx) == 1).await;
    bit(&reply.text(), idx) == 1
}

#[tokio::test]
async fn a_reload_that_removes_a_grant_revokes_its_credentials_and_nothing_else() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let kept = mint(&mut client, DEST, PURPOSE, 60, None)
        .await
        .unwrap()
        .token;
    let removed = mint_reports(&env).await.unwrap();
    assert!(active(&env, &removed).await);
    edit_config(&env, |t| t.replace(EXTRA_GRANTS, ""));
    let reply = reload(&env).await;
    assert_eq!(reply.generation, 2);
    assert_eq!(reply.offboarded.len(), 1, "{reply:?}");
    let offboarded = &reply.offboarded[0];
    assert_eq!(offboarded.grant, "reports-cron");
    assert_eq!(
        offboarded.reason,
        "offboarded: grant `reports-cron` removed"
    );
    assert_eq!(offboarded.credentials_revoked, 1);
    assert!(reply.restart_required.is_empty(), "{reply:?}");
    assert!(!active(&env, &removed).await, "introspection, at once");
    assert!(listed_as_revoked(&env, &removed).await, "status list");
    assert!(active(&env, &kept).await, "another grant's token");
    let (path, _, idx) = entry(&env, &kept);
    let list = https_request(&env, "GET", &path, None).await;
    assert_eq!(bit(&list.text(), idx), 0);
    let refused = mint_reports(&env).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn a_reload_that_narrows_a_grant_revokes_only_the_removed_destination() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let kept = mint(&mut client, DEST, PURPOSE, 60, None)
        .await
        .unwrap()
        .token;
    let gone = mint(&mut client, AUDIT_DEST, PURPOSE, 60, None)
        .await
        .unwrap()
        .token;
    edit_config(&env, |t| {
        t.replace(
            r#"destinations = ["https://ledger.example.org", "https://audit.example.org"]"#,
            r#"destinations = ["https://ledger.example.org"]"#,
        )
    });
    let reply = reload(&env).await;
    let offboarded: Vec<_> = reply.offboarded.iter().map(|o| o.grant.as_str()).collect();
    assert_eq!(
        offboarded,
        ["payments-api/destination=https://audit.example.org"]
    );
    assert_eq!(reply.offboarded[0].credentials_revoked, 1);
    assert!(
        !active(&env, &gone).await,
        "the removed destination's token"
    );
    assert!(listed_as_revoked(&env, &gone).await);
    assert!(active(&env, &kept).await, "the kept destination's token");
    let refused = mint(&mut client, AUDIT_DEST, PURPOSE, 60, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let again = mint(&mut client, DEST, PURPOSE, 60, None)
        .await
        .unwrap()
        .token;
    assert!(
        active(&env, &again).await,
        "minted after the offboarding, not covered by it"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing_and_says_why() {
    let mut env = Env::start().await;
    let good = std::fs::read_to_string(&env.fx.config_path).unwrap();
    edit_config(&env, |t| t.replace(EXTRA_GRANTS, "") + "\n[server2]\n");
    let refused = admin(&env)
        .await
        .reload(ReloadRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("not reloaded") && refused.message().contains("server2"),
        "{refused:?}"
    );
    let still = mint_reports(&env).await.unwrap();
    assert!(active(&env, &still).await, "the old configuration serves");
    std::fs::write(&env.fx.config_path, good).unwrap();
    let reply = reload(&env).await;
    assert_eq!(reply.generation, 2, "the refused reload made no generation");
    assert!(reply.offboarded.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn a_reload_names_what_needs_a_restart_and_is_for_admins_only() {
    let mut env = Env::start().await;
    edit_config(&env, |t| {
        t.replace(
            "audience = \"tessera\"",
            "audience = \"tessera\"\nshutdown_grace = \"7s\"",
        )
    });
    let reply = reload(&env).await;
    assert_eq!(reply.restart_required, ["server.shutdown_grace"]);
    let again = reload(&env).await;
    assert_eq!(
        again.restart_required,
        ["server.shutdown_grace"],
        "still not applied, so still reported"
    );
    let mut not_admin = tessera_proto::admin_client::AdminClient::new(
        env.channel(Some(&env.fx.material.workload)).await,
    );
    let refused = not_admin.reload(ReloadRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    env.shutdown().await;
}

#[tokio::test]
async fn tessera_reload_prints_what_the_reload_did() {
    let mut env = Env::start().await;
    edit_config(&env, |t| t.replace(EXTRA_GRANTS, ""));
    let output = run_cli(admin_cli(&env, env.grpc, &["reload", "--json"])).await;
    assert!(output.status.success(), "{output:?}");
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["generation"], 2);
    assert_eq!(shown["offboarded"][0]["grant"], "reports-cron");
    env.shutdown().await;
}

#[tokio::test]
async fn an_expired_grant_at_start_up_serves_and_refuses_its_mints_by_name() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let expired = EXTRA_GRANTS.replace("2099-01-01", "2020-01-01");
    std::fs::write(&fx.config_path, text.replace(EXTRA_GRANTS, &expired)).unwrap();
    let mut env = Env::start_fixture(fx).await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None)
        .await
        .expect("the other grants serve");
    let refused = mint_reports(&env).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    for needle in ["reports-cron", "team-reports", "2020-01-01"] {
        assert!(refused.message().contains(needle), "{refused:?}");
    }
    let metrics = https_request(&env, "GET", "/metrics", None).await.text();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("tessera_grant_expiry_seconds{")
                && l.contains("grant=\"reports-cron\"")
                && l.contains("owner=\"team-reports\"")
        })
        .unwrap_or_else(|| panic!("no expiry gauge for reports-cron in {metrics}"));
    assert!(
        line.ends_with(|c: char| c.is_ascii_digit()) && line.contains(" -"),
        "{line}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_grant_rule_can_be_revoked_by_hand_and_is_checked() {
    let mut env = Env::start().await;
    let token = mint_reports(&env).await.unwrap();
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let mut admin = admin(&env).await;
    let listed = admin
        .list_credentials(tessera_proto::ListCredentialsRequest {
            grant: "reports-cron".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let grants: Vec<_> = listed
        .credentials
        .iter()
        .map(|c| c.grant.as_str())
        .collect();
    assert_eq!(grants, ["reports-cron"], "listed by grant");
    let bad = admin
        .revoke(crate::revocation::revoke_request(
            tessera_proto::revoke_request::Selector::Grant("reports-cron/colour=blue".into()),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let reply = admin
        .revoke(crate::revocation::revoke_request(
            tessera_proto::revoke_request::Selector::Grant("reports-cron/kind=jwt".into()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.credentials_revoked, 1);
    assert!(!active(&env, &token).await);
    env.shutdown().await;
}

#[tokio::test]
async fn a_reload_applies_to_connections_already_open() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    // Every client SVID must now also chain to a CA the workload's does not chain to.
    let tls_ca = env.fx.path("tls-ca.pem");
    edit_config(&env, |t| {
        t.replace(
            "audience = \"tessera\"",
            &format!(
                "audience = \"tessera\"\ntls_client_ca = {:?}",
                tls_ca.display().to_string()
            ),
        )
    });
    admin(&env).await.reload(ReloadRequest {}).await.unwrap();
    let refused = mint(&mut client, DEST, PURPOSE, 60, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("tls_client_ca"), "{refused:?}");
    edit_config(&env, |t| {
        t.replace(
            &format!("\ntls_client_ca = {:?}", tls_ca.display().to_string()),
            "",
        )
    });
    // The admins' SVIDs do not chain to that CA either: reload as SIGHUP does.
    env.server.as_ref().unwrap().reload("test").await.unwrap();
    mint(&mut client, DEST, PURPOSE, 60, None)
        .await
        .expect("the same connection attests again under the restored bundles");
    env.shutdown().await;
}

#[test]
fn sighup_reloads_the_configuration_of_the_running_binary() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let fx = Fixture::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--config"])
        .arg(&fx.config_path)
        .env("TESSERA_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let wait_for = |needle: &str| loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    };
    wait_for("tessera serving");
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(&fx.config_path, text.replace(EXTRA_GRANTS, "")).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloaded = wait_for("configuration reloaded");
    assert!(reloaded.contains("generation=2"), "{reloaded}");
    assert!(reloaded.contains("offboarded=1"), "{reloaded}");
    assert!(child.try_wait().unwrap().is_none(), "still serving");
    child.kill().unwrap();
    child.wait().unwrap();
}
