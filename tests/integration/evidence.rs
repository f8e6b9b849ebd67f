//! Evidence that access is gone: `Admin/GetRevocation` (and `tessera revocation show`) names
//! the rule, what it covered and until when, the relying parties that acknowledged it (the SDK
//! does, for every rule it applies), CRL fetches and introspections refused after it — and no
//! introspection accepted after it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use tessera_client::relying_party::RelyingParty;
use tessera_core::clock::SystemClock;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{AcknowledgeRevocationsRequest, GetRevocationRequest, GetRevocationResponse};
use tessera_testkit::dev::WORKLOAD_ID;
use tonic::Code;

use crate::common::{DEST, Env, Fixture, PURPOSE, admin_cli, https_get, mint, run_cli};
use crate::revocation::{active, admin, revoke_request};

const RELYING_PARTY: &str = "spiffe://example.org/ns/ledger/sa/rp";

async fn evidence(env: &Env, id: &str) -> Result<GetRevocationResponse, tonic::Status> {
    admin(env)
        .await
        .get_revocation(GetRevocationRequest {
            revocation_id: id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Starts a relying party (the SDK) following revocations with its own X509-SVID.
async fn follow(env: &Env) -> Arc<RelyingParty> {
    let (_, _, jwks) = https_get(env, "/.well-known/jwks.json").await;
    let jwks = serde_json::from_slice(&jwks).unwrap();
    let rp = Arc::new(
        RelyingParty::new("https://127.0.0.1:0", DEST, &jwks, Arc::new(SystemClock)).unwrap(),
    );
    let svid = env.fx.svid(&Fixture::svid_spec(RELYING_PARTY));
    let mut client = BrokerClient::new(env.channel(Some(&svid)).await);
    let following = Arc::clone(&rp);
    tokio::spawn(async move { following.follow(&mut client).await });
    rp
}

/// Polls `GetRevocation` until `done` holds; the test fails if it never does.
async fn wait_for(
    env: &Env,
    id: &str,
    done: impl Fn(&GetRevocationResponse) -> bool,
) -> GetRevocationResponse {
    for _ in 0..500 {
        let got = evidence(env, id).await.unwrap();
        if done(&got) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the evidence of {id} never showed what was expected");
}

#[tokio::test]
async fn a_revocation_shows_what_it_covered_and_who_enforced_it() {
    let mut env = Env::start().await;
    let rp = follow(&env).await;
    let mut client = env.workload_client().await;
    let mut tokens = Vec::new();
    for ttl in [60, 300] {
        tokens.push(mint(&mut client, DEST, PURPOSE, ttl, None).await.unwrap());
    }
    let reply = admin(&env)
        .await
        .revoke(revoke_request(Selector::Workload(WORKLOAD_ID.into())))
        .await
        .unwrap()
        .into_inner();
    for token in &tokens {
        assert!(!active(&env, &token.token).await);
    }
    let (status, _, _) = https_get(&env, "/crl").await;
    assert_eq!(status, 200);
    let claims = tokens[0].token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    let uri = claims["status"]["status_list"]["uri"].as_str().unwrap();
    let path = &uri[uri.find("/statuslists/").unwrap()..];
    assert_eq!(https_get(&env, path).await.0, 200);
    let got = wait_for(&env, &reply.revocation_id, |e| {
        !e.acknowledgements.is_empty()
    })
    .await;
    let rule = got.rule.clone().unwrap();
    assert_eq!(
        (rule.selector.as_str(), rule.value.as_str()),
        ("workload", WORKLOAD_ID)
    );
    assert_eq!(got.credentials_covered, 2);
    let latest_exp = tokens.iter().map(|t| t.expires_at).max().unwrap();
    assert!(
        got.access_ends_at >= latest_exp && got.access_ends_at < latest_exp + 60,
        "access could not outlive the latest exp ({latest_exp}), to its minute: {got:?}"
    );
    assert!(!got.access_ended);
    assert_eq!(got.acknowledgements[0].relying_party, RELYING_PARTY);
    assert!(got.acknowledgements[0].after_ms >= 0);
    assert_eq!(got.introspections_refused, 2);
    assert_eq!(got.introspections_accepted, 0, "{got:?}");
    assert!(got.crl_fetches_after >= 1);
    assert!(got.status_list_fetches_after >= 1);
    assert!(rp.rule_count() >= 1);
    let metrics = String::from_utf8(https_get(&env, "/metrics").await.2).unwrap();
    assert!(
        metrics.contains("tessera_revocation_enforced_seconds_count 1"),
        "one acknowledgement observed"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn an_unknown_revocation_is_not_found_and_acknowledgements_need_a_workload() {
    let mut env = Env::start().await;
    let missing = evidence(&env, "no-such-rule").await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let empty = evidence(&env, "").await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let anonymous = BrokerClient::new(env.channel(None).await)
        .acknowledge_revocations(AcknowledgeRevocationsRequest {
            revocation_ids: vec!["x".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let too_many = env
        .workload_client()
        .await
        .acknowledge_revocations(AcknowledgeRevocationsRequest {
            revocation_ids: vec!["x".into(); 1001],
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    env.shutdown().await;
}

#[tokio::test]
async fn the_cli_shows_the_evidence_of_a_revocation() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let reply = admin(&env)
        .await
        .revoke(revoke_request(Selector::Owner("team-payments".into())))
        .await
        .unwrap()
        .into_inner();
    let command = admin_cli(
        &env,
        env.grpc,
        &["revocation", "show", &reply.revocation_id, "--json"],
    );
    let output = run_cli(command).await;
    assert!(output.status.success(), "{output:?}");
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["revocation_id"], reply.revocation_id.as_str());
    assert_eq!(shown["selector"], "owner");
    assert_eq!(shown["credentials_covered"], 1);
    assert_eq!(shown["introspections_accepted"], 0);
    env.shutdown().await;
}
