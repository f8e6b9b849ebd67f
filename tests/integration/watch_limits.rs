//! Watch streams that cannot be starved and revocations that cannot flood them (issue 12):
//! relying parties' and admins' streams have separate pools with a per-identity share, a resume
//! past the last sequence is `OUT_OF_RANGE`, and RFC 7009 revocations are rate-limited per
//! workload (on the injected clock) and idempotent.

use std::sync::Arc;

use futures::StreamExt;
use tessera_core::clock::{ManualClock, SharedClock};
use tessera_proto::admin_client::AdminClient;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::{RevocationEvent, WatchEventsRequest, WatchRevocationsRequest};
use tessera_testkit::dev::{ADMIN_ID, WORKLOAD_ID};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::common::{DEST, Env, Fixture, HttpReply, PURPOSE, https_get, mint, now, post_form_as};

/// A relying party other than the dev workload.
const OTHER_RP: &str = "spiffe://example.org/ns/ledger/sa/rp";

/// Starts a server whose `[server]` section also has `keys`.
async fn start_with(keys: &str) -> Env {
    start_with_clock(keys, None).await
}

async fn start_with_clock(keys: &str, clock: Option<SharedClock>) -> Env {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text.replacen("[server]\n", &format!("[server]\n{keys}\n"), 1);
    std::fs::write(&fx.config_path, text).unwrap();
    match clock {
        Some(clock) => Env::start_with_clock(fx, clock).await,
        None => Env::start_fixture(fx).await,
    }
}

async fn broker_as(env: &Env, spiffe_id: &str) -> BrokerClient<Channel> {
    let svid = env.fx.svid(&Fixture::svid_spec(spiffe_id));
    env.client(Some(&svid)).await
}

async fn follow(
    broker: &mut BrokerClient<Channel>,
    since: u64,
) -> Result<Streaming<RevocationEvent>, Status> {
    broker
        .watch_revocations(WatchRevocationsRequest {
            since_sequence: since,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Reads a revocation stream up to its `caught_up` marker; returns the rules replayed.
async fn replayed(stream: &mut Streaming<RevocationEvent>) -> Vec<RevocationEvent> {
    let mut rules = Vec::new();
    loop {
        let event = stream.next().await.unwrap().unwrap();
        if event.caught_up {
            return rules;
        }
        rules.push(event);
    }
}

async fn watch_events(
    admin: &mut AdminClient<Channel>,
    since: u64,
) -> Result<Streaming<tessera_proto::Event>, Status> {
    admin
        .watch_events(WatchEventsRequest {
            since_sequence: since,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_full_event_pool_does_not_stop_relying_parties_from_following_revocations() {
    let mut env = start_with("max_event_watchers = 2\nmax_watchers_per_identity = 2").await;
    let mut admin = env.admin_client().await;
    let _held = [
        watch_events(&mut admin, 0).await.unwrap(),
        watch_events(&mut admin, 0).await.unwrap(),
    ];
    let refused = watch_events(&mut admin, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("WatchEvents"), "{refused:?}");

    for id in [WORKLOAD_ID, OTHER_RP] {
        let mut broker = broker_as(&env, id).await;
        let mut stream = follow(&mut broker, 0).await.unwrap();
        assert!(replayed(&mut stream).await.is_empty(), "{id} is up to date");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn a_full_revocation_pool_does_not_stop_admins_from_watching_events() {
    let mut env = start_with("max_revocation_watchers = 2\nmax_watchers_per_identity = 2").await;
    let mut broker = env.workload_client().await;
    let _held = [
        follow(&mut broker, 0).await.unwrap(),
        follow(&mut broker, 0).await.unwrap(),
    ];
    let mut other = broker_as(&env, OTHER_RP).await;
    let refused = follow(&mut other, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("WatchRevocations"),
        "{refused:?}"
    );
    let mut admin = env.admin_client().await;
    assert!(watch_events(&mut admin, 0).await.is_ok());
    env.shutdown().await;
}

#[tokio::test]
async fn one_identity_at_its_share_cannot_lock_out_another_relying_party_or_an_admin() {
    let mut env = start_with("max_watchers_per_identity = 2").await;
    let mut greedy = broker_as(&env, WORKLOAD_ID).await;
    let _held = [
        follow(&mut greedy, 0).await.unwrap(),
        follow(&mut greedy, 0).await.unwrap(),
    ];
    let refused = follow(&mut greedy, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains(WORKLOAD_ID), "{refused:?}");

    let mut other = broker_as(&env, OTHER_RP).await;
    let mut stream = follow(&mut other, 0).await.unwrap();
    assert!(replayed(&mut stream).await.is_empty());
    let mut admin = env.admin_client().await;
    assert!(watch_events(&mut admin, 0).await.is_ok());
    env.shutdown().await;
}

#[tokio::test]
async fn a_resume_beyond_the_last_sequence_is_out_of_range_naming_the_last() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let mut broker = env.workload_client().await;
    let refused = follow(&mut broker, 5).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(
        refused.message().contains("last sequence, 1"),
        "{refused:?}"
    );
    let mut admin = env.admin_client().await;
    let refused = watch_events(&mut admin, 2).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(
        watch_events(&mut admin, 1).await.is_ok(),
        "the last is fine"
    );
    env.shutdown().await;
}

/// Posts `/revoke` of `token` as `who` (a JWT-SVID bearer); returns the reply.
async fn revoke_as(env: &Env, who: &str, token: &str) -> HttpReply {
    let bearer = env.fx.jwt_svid(who);
    post_form_as(env, "/revoke", &[("token", token)], Some(&bearer)).await
}

#[tokio::test]
async fn rfc7009_revocations_past_a_workloads_burst_get_429_and_are_admitted_again_later() {
    let clock = Arc::new(ManualClock::at(now()));
    let keys = "revoke_rate_per_workload = 1\nrevoke_burst_per_workload = 3";
    let mut env = start_with_clock(keys, Some(clock.clone())).await;
    for _ in 0..3 {
        assert_eq!(revoke_as(&env, WORKLOAD_ID, "unknown").await.status, 200);
    }
    let refused = revoke_as(&env, WORKLOAD_ID, "unknown").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(refused.json()["error"], "slow_down");
    let description = refused.json()["error_description"].to_string();
    assert!(description.contains(WORKLOAD_ID), "{description}");

    assert_eq!(
        revoke_as(&env, OTHER_RP, "unknown").await.status,
        200,
        "another workload has its own bucket"
    );
    for _ in 0..5 {
        assert_eq!(
            revoke_as(&env, ADMIN_ID, "unknown").await.status,
            200,
            "admins are not limited"
        );
    }
    clock.advance(1);
    assert_eq!(revoke_as(&env, WORKLOAD_ID, "unknown").await.status, 200);
    assert_eq!(revoke_as(&env, WORKLOAD_ID, "unknown").await.status, 429);
    let (_, _, metrics) = https_get(&env, "/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("tessera_refused_total{reason=\"rate_limited\"} 2"),
        "{metrics}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn revoking_a_token_again_or_ten_times_at_once_adds_one_rule() {
    let env = Env::start().await;
    let mut client = env.workload_client().await;
    let minted = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let env = Arc::new(env);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (env, token) = (Arc::clone(&env), minted.token.clone());
            tokio::spawn(async move { revoke_as(&env, WORKLOAD_ID, &token).await.status })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(
        revoke_as(&env, WORKLOAD_ID, &minted.token).await.status,
        200
    );
    let mut broker = env.workload_client().await;
    let rules = replayed(&mut follow(&mut broker, 0).await.unwrap()).await;
    assert_eq!(
        rules
            .iter()
            .map(|r| (r.selector.as_str(), r.value.as_str()))
            .collect::<Vec<_>>(),
        [("credential_id", minted.credential_id.as_str())]
    );
    let mut env = Arc::into_inner(env).unwrap();
    env.shutdown().await;
}
