//! Revocation: rules by every selector, enforced at once, seen by introspection, the CRL and
//! watchers; only admins (or a token's own workload, RFC 7009) may revoke.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{
    ListCredentialsRequest, MintX509Request, RevokeRequest, WatchEventsRequest,
    WatchRevocationsRequest,
};
use tessera_testkit::dev::WORKLOAD_ID;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{
    DEST, Env, Fixture, PURPOSE, crl_serials, csr_der, https_get, mint, post_form_as,
};

pub(crate) async fn admin(env: &Env) -> AdminClient<Channel> {
    AdminClient::new(env.channel(Some(&env.fx.material.admin)).await)
}

pub(crate) fn revoke_request(selector: Selector) -> RevokeRequest {
    RevokeRequest {
        selector: Some(selector),
        reason: "incident 42".into(),
    }
}

/// Introspects `token` as a relying party authenticated with a JWT-SVID.
pub(crate) async fn active(env: &Env, token: &str) -> bool {
    let bearer = env.fx.jwt_svid("spiffe://example.org/ns/ledger/sa/rp");
    let reply = post_form_as(env, "/introspect", &[("token", token)], Some(&bearer)).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    if body["active"] == false {
        assert_eq!(
            body,
            json!({"active": false}),
            "inactive answers carry nothing else"
        );
    }
    body["active"] == true
}

#[tokio::test]
async fn each_selector_revokes_what_was_minted_before_and_not_after() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let mut admin = admin(&env).await;
    for make in [
        (|id: &str| Selector::CredentialId(id.to_owned())) as fn(&str) -> Selector,
        |_| Selector::Workload(WORKLOAD_ID.into()),
        |_| Selector::Destination(DEST.into()),
        |_| Selector::Purpose(PURPOSE.into()),
        |_| Selector::Owner("team-payments".into()),
    ] {
        let before = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
        assert!(active(&env, &before.token).await);
        let reply = admin
            .revoke(revoke_request(make(&before.credential_id)))
            .await
            .unwrap()
            .into_inner();
        assert!(reply.credentials_revoked >= 1, "{reply:?}");
        assert!(!reply.revocation_id.is_empty() && reply.sequence > 0);
        assert!(!active(&env, &before.token).await, "revoked at once");
        let after = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
        assert!(
            active(&env, &after.token).await,
            "minted right after the rule, in the same second"
        );
    }
    env.shutdown().await;
}

#[tokio::test]
async fn only_admins_may_revoke() {
    let mut env = Env::start().await;
    let mut not_admin = AdminClient::new(env.channel(Some(&env.fx.material.workload)).await);
    let status = not_admin
        .revoke(revoke_request(Selector::Workload(WORKLOAD_ID.into())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("is not listed in [admin]"),
        "{status:?}"
    );
    let status = AdminClient::new(env.channel(None).await)
        .list_credentials(ListCredentialsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut admin = admin(&env).await;
    let status = admin
        .revoke(RevokeRequest {
            selector: Some(Selector::Owner("x".into())),
            reason: " ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = admin
        .revoke(RevokeRequest {
            selector: None,
            reason: "r".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = admin
        .revoke(revoke_request(Selector::CredentialId("nope".into())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    env.shutdown().await;
}

#[tokio::test]
async fn watchers_see_revocations_live_and_resume_from_a_sequence() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let minted = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let mut broker = tessera_proto::broker_client::BrokerClient::new(
        env.channel(Some(&env.fx.material.workload)).await,
    );
    let mut live = broker
        .watch_revocations(WatchRevocationsRequest { since_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut admin = admin(&env).await;
    let mut events = admin
        .watch_events(WatchEventsRequest { since_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(
        (first.kind.as_str(), first.credential.unwrap().credential_id),
        ("issued", minted.credential_id.clone())
    );

    // Nothing to replay: the first message says the watcher is up to date.
    let caught_up = live.next().await.unwrap().unwrap();
    assert!(
        caught_up.caught_up && caught_up.selector.is_empty(),
        "{caught_up:?}"
    );

    let reply = admin
        .revoke(revoke_request(Selector::Workload(WORKLOAD_ID.into())))
        .await
        .unwrap()
        .into_inner();
    let seen = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (seen.sequence, seen.selector.as_str(), seen.value.as_str()),
        (reply.sequence, "workload", WORKLOAD_ID)
    );
    let revoked = events.next().await.unwrap().unwrap();
    assert_eq!(
        (revoked.kind.as_str(), revoked.sequence),
        ("revoked", reply.sequence)
    );

    // A watcher that was away resumes from the last sequence it saw and gets what it missed.
    admin
        .revoke(revoke_request(Selector::Purpose("other:purpose".into())))
        .await
        .unwrap();
    let mut resumed = broker
        .watch_revocations(WatchRevocationsRequest {
            since_sequence: reply.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    let missed = resumed.next().await.unwrap().unwrap();
    assert_eq!(missed.value, "other:purpose");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_does_not_block_minting() {
    let mut env = Env::start().await;
    let mut admin = admin(&env).await;
    let _stalled = admin
        .watch_events(WatchEventsRequest { since_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let client = env.workload_client().await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for _ in 0..150 {
                    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(tasks))
        .await
        .expect("minting was not blocked");
    env.shutdown().await;
}

#[tokio::test]
async fn rules_and_events_survive_a_restart() {
    let env = Env::start().await;
    let mut client = env.workload_client().await;
    let minted = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let reply = admin(&env)
        .await
        .revoke(revoke_request(Selector::Owner("team-payments".into())))
        .await
        .unwrap()
        .into_inner();
    let mut env = env.restart().await;
    assert!(
        !active(&env, &minted.token).await,
        "the rule is enforced after a restart"
    );
    let mut events = admin(&env)
        .await
        .watch_events(WatchEventsRequest { since_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<(String, u64)> = vec![
        events.next().await.unwrap().unwrap(),
        events.next().await.unwrap().unwrap(),
    ]
    .into_iter()
    .map(|e| (e.kind, e.sequence))
    .collect();
    assert_eq!(
        kinds,
        vec![
            ("issued".to_owned(), 1),
            ("revoked".to_owned(), reply.sequence)
        ]
    );
    env.shutdown().await;
}

#[tokio::test]
async fn the_crl_lists_a_revoked_certificate_at_once() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let request = MintX509Request {
        csr: csr_der(),
        destination: DEST.into(),
        purpose: PURPOSE.into(),
        ttl_seconds: 0,
    };
    let cert = client.mint_x509(request).await.unwrap().into_inner();
    let (_, _, empty) = https_get(&env, "/crl").await;
    admin(&env)
        .await
        .revoke(revoke_request(Selector::Workload(WORKLOAD_ID.into())))
        .await
        .unwrap();
    let (_, _, body) = https_get(&env, "/crl").await;
    assert_ne!(body, empty);
    assert_eq!(crl_serials(&body), vec![cert.credential_id]);
    env.shutdown().await;
}

#[tokio::test]
async fn a_holder_revokes_its_own_token_with_rfc7009() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let minted = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let stranger = env.fx.jwt_svid("spiffe://example.org/ns/other/sa/x");
    let refused = post_form_as(
        &env,
        "/revoke",
        &[("token", &minted.token)],
        Some(&stranger),
    )
    .await;
    assert_eq!(
        (refused.status, refused.json()["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    assert!(active(&env, &minted.token).await);
    let holder = env.fx.jwt_svid(WORKLOAD_ID);
    assert_eq!(
        post_form_as(&env, "/revoke", &[("token", &minted.token)], Some(&holder))
            .await
            .status,
        200
    );
    assert!(!active(&env, &minted.token).await);
    assert_eq!(
        post_form_as(
            &env,
            "/revoke",
            &[("token", "unknown.token.value")],
            Some(&holder)
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post_form_as(&env, "/introspect", &[("token", "x")], None)
            .await
            .status,
        401,
        "introspection needs a caller"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn lists_credentials_newest_first_with_filters_and_status() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let older = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newer = mint(&mut client, DEST, "ledger:read", 60, None)
        .await
        .unwrap();
    let mut admin = admin(&env).await;
    admin
        .revoke(revoke_request(Selector::CredentialId(
            older.credential_id.clone(),
        )))
        .await
        .unwrap();
    let all = admin
        .list_credentials(ListCredentialsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = all
        .credentials
        .iter()
        .map(|c| c.credential_id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec![newer.credential_id.as_str(), older.credential_id.as_str()]
    );
    assert_eq!(all.credentials[1].status, "revoked");
    let live = admin
        .list_credentials(ListCredentialsRequest {
            status: "live".into(),
            owner: "team-payments".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.credentials.len(), 1);
    assert_eq!(live.credentials[0].purpose, "ledger:read");
    env.shutdown().await;
}

#[tokio::test]
async fn the_audit_chain_verifies_and_an_edited_line_is_named() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    mint(
        &mut client,
        "https://nowhere.example.org",
        PURPOSE,
        60,
        None,
    )
    .await
    .unwrap_err();
    admin(&env)
        .await
        .revoke(revoke_request(Selector::Workload(WORKLOAD_ID.into())))
        .await
        .unwrap();
    env.shutdown().await;
    let log = env.fx.dir.path().join("data/audit.log");
    let verify = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["audit", "verify"])
            .arg(path)
            .output()
            .unwrap()
    };
    let ok = verify(&log);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for wanted in ["issued", "refused", "admin", "revoked"] {
        assert!(
            events.iter().any(|e| e == wanted),
            "{wanted} is audited: {events:?}"
        );
    }
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replace("ledger", "l3dger");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let broken = verify(&log);
    assert!(!broken.status.success());
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("line 2:"),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
}

#[tokio::test]
async fn a_relying_party_following_revocations_refuses_a_revoked_token_at_once() {
    use tessera_client::relying_party::{Presentation, Refusal, RelyingParty, Verdict};
    let mut env = Env::start().await;
    let (_, _, jwks) = https_get(&env, "/.well-known/jwks.json").await;
    let rp = std::sync::Arc::new(
        RelyingParty::new(
            "https://127.0.0.1:0",
            DEST,
            &serde_json::from_slice(&jwks).unwrap(),
            std::sync::Arc::new(tessera_core::clock::SystemClock),
        )
        .unwrap(),
    );
    let follower = std::sync::Arc::clone(&rp);
    let mut watch = tessera_proto::broker_client::BrokerClient::new(
        env.channel(Some(&env.fx.material.workload)).await,
    );
    tokio::spawn(async move { follower.follow(&mut watch).await });
    let mut client = env.workload_client().await;
    // Tokens minted over mTLS are bound to the workload's certificate: present it.
    let presented = Presentation::mtls(&env.fx.material.workload.cert_der, PURPOSE);
    let unsynced = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !rp.is_following() {
        assert!(
            matches!(rp.check(&unsynced.token, presented), Verdict::Introspect(_)),
            "not following: ask"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation stream opened"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    assert!(matches!(
        rp.check(&before.token, presented),
        Verdict::Accept(_)
    ));
    admin(&env)
        .await
        .revoke(revoke_request(Selector::Destination(DEST.into())))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while matches!(rp.check(&before.token, presented), Verdict::Accept(_)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation reached the relying party"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        rp.check(&before.token, presented),
        Verdict::Refuse(Refusal::Revoked("destination"))
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    assert!(
        matches!(rp.check(&after.token, presented), Verdict::Accept(_)),
        "minted after the rule"
    );
    assert!(matches!(rp.check("garbage", presented), Verdict::Refuse(_)));
    env.shutdown().await;
}

#[tokio::test]
async fn watchers_past_the_limit_are_refused_with_resource_exhausted() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(
        &fx.config_path,
        text.replacen("[server]\n", "[server]\nmax_watchers = 1\n", 1),
    )
    .unwrap();
    let mut env = Env::start_fixture(fx).await;
    let mut broker = tessera_proto::broker_client::BrokerClient::new(
        env.channel(Some(&env.fx.material.workload)).await,
    );
    let first = broker
        .watch_revocations(WatchRevocationsRequest { since_sequence: 0 })
        .await
        .unwrap();
    let status = broker
        .watch_revocations(WatchRevocationsRequest { since_sequence: 0 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match broker
            .watch_revocations(WatchRevocationsRequest { since_sequence: 0 })
            .await
        {
            Ok(_) => break,
            Err(s)
                if s.code() == Code::ResourceExhausted && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => panic!("the slot was not released: {s:?}"),
        }
    }
    env.shutdown().await;
}
