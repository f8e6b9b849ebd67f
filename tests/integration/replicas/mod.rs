//! Replicas: two and three `tessera serve` processes on one PostgreSQL database. Each test gets
//! a database of its own and one fixture (signing material, grants) that every replica shares;
//! each replica has its own config file and audit log, and listens on ports it picks itself
//! (read from its log). Replicas are killed when the test ends, also when it fails.

mod cluster;
mod ssf;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tessera_ledger::Ledger;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{MintX509Request, RevokeRequest, WatchEventsRequest, WatchRevocationsRequest};
use tessera_testkit::dev::WORKLOAD_ID;
use tessera_testkit::fixtures::ci_grant_toml;
use tokio::time::{Instant, sleep, timeout};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::ci::{EXCHANGE, ID_TOKEN, PUSH, REGISTRY, assert_oauth_error};
use crate::common::claims_of;
use crate::common::{DEST, Fixture, HttpReply, PURPOSE, crl_serials, csr_der, mint};
use crate::issuer::TestIssuer;

use self::cluster::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_minted_on_one_replica_are_listed_on_the_other() {
    let cluster = Cluster::start(2).await;
    let jwt = mint(&mut cluster.workload(0).await, DEST, PURPOSE, 60, None)
        .await
        .unwrap();
    let x509 = cluster
        .workload(1)
        .await
        .mint_x509(MintX509Request {
            csr: csr_der(),
            destination: DEST.into(),
            purpose: PURPOSE.into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let both = BTreeSet::from([jwt.credential_id, x509.credential_id]);
    for i in 0..2 {
        assert_eq!(
            listed(&mut cluster.admin(i).await).await,
            both,
            "replica {i} lists what either minted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_on_one_replica_counts_and_lists_what_the_other_issued() {
    let cluster = Cluster::start(2).await;
    let mut events_on_a = cluster
        .admin(0)
        .await
        .watch_events(WatchEventsRequest { since_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let x509 = cluster
        .workload(1)
        .await
        .mint_x509(MintX509Request {
            csr: csr_der(),
            destination: DEST.into(),
            purpose: PURPOSE.into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    // A has followed B's issue once its own event stream carries it.
    loop {
        let event = timeout(FAN_OUT, events_on_a.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if event
            .credential
            .is_some_and(|c| c.credential_id == x509.credential_id)
        {
            break;
        }
    }
    let reply = cluster
        .admin(0)
        .await
        .revoke(RevokeRequest {
            selector: Some(Selector::Workload(WORKLOAD_ID.into())),
            reason: "replica test: what B issued".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.credentials_revoked, 1,
        "A counts the credential B issued"
    );
    let crl = cluster.http(0, "GET", "/crl", None, None).await;
    assert_eq!(crl.status, 200);
    assert!(
        crl_serials(&crl.body).contains(&x509.credential_id),
        "A's CRL lists B's revoked certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_on_one_replica_reaches_introspection_and_watchers_on_the_other() {
    let cluster = Cluster::start(2).await;
    let mut minter = cluster.workload(0).await;
    let first = mint(&mut minter, DEST, PURPOSE, 60, None).await.unwrap();
    let second = mint(&mut minter, DEST, PURPOSE, 60, None).await.unwrap();
    assert!(cluster.active(1, &first.token).await, "B knows A's token");
    assert!(cluster.active(1, &second.token).await);
    let mut watcher = cluster
        .workload(1)
        .await
        .watch_revocations(WatchRevocationsRequest { since_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let caught_up = timeout(FAN_OUT, watcher.next()).await.unwrap().unwrap();
    assert!(
        caught_up.unwrap().caught_up,
        "no rule yet: caught up at once"
    );

    let mut admin = cluster.admin(0).await;
    let by_id = admin
        .revoke(RevokeRequest {
            selector: Some(Selector::CredentialId(first.credential_id.clone())),
            reason: "replica test: one token".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let rule = next_rule(&mut watcher).await;
    assert_eq!(
        (
            rule.revocation_id.as_str(),
            rule.sequence,
            rule.selector.as_str()
        ),
        (
            by_id.revocation_id.as_str(),
            by_id.sequence,
            "credential_id"
        )
    );
    assert_eq!(rule.value, first.credential_id);
    let deadline = Instant::now() + FAN_OUT;
    while cluster.active(1, &first.token).await {
        assert!(
            Instant::now() < deadline,
            "B still accepts the revoked token"
        );
        sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cluster.active(1, &second.token).await,
        "a credential-id rule revokes that credential only"
    );

    let by_workload = admin
        .revoke(RevokeRequest {
            selector: Some(Selector::Workload(WORKLOAD_ID.into())),
            reason: "replica test: the workload".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let rule = next_rule(&mut watcher).await;
    assert_eq!(
        (
            rule.revocation_id.as_str(),
            rule.selector.as_str(),
            rule.value.as_str()
        ),
        (by_workload.revocation_id.as_str(), "workload", WORKLOAD_ID)
    );
    let deadline = Instant::now() + FAN_OUT;
    while cluster.active(1, &second.token).await {
        assert!(
            Instant::now() < deadline,
            "B still accepts the workload's token"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mints_on_two_replicas_reach_a_third_as_one_gap_free_sequence() {
    const CLIENTS_PER_REPLICA: usize = 4;
    const MINTS_PER_CLIENT: usize = 25;
    let cluster = Cluster::start(3).await;
    let mut events = cluster
        .admin(2)
        .await
        .watch_events(WatchEventsRequest { since_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut tasks = Vec::new();
    for replica in 0..2 {
        let client = cluster.workload(replica).await;
        for _ in 0..CLIENTS_PER_REPLICA {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..MINTS_PER_CLIENT {
                    let reply = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
                    ids.push(reply.credential_id);
                }
                ids
            }));
        }
    }
    let mut received = BTreeSet::new();
    for task in tasks {
        received.extend(task.await.unwrap());
    }
    assert_eq!(received.len(), 2 * CLIENTS_PER_REPLICA * MINTS_PER_CLIENT);

    let mut seen = BTreeSet::new();
    let mut last = 0;
    let deadline = Instant::now() + FAN_OUT;
    while seen.len() < received.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(next) = timeout(left, events.next()).await else {
            panic!(
                "C's watcher got {} of {} credentials (last sequence {last})",
                seen.len(),
                received.len()
            );
        };
        let event = next.expect("the watch ended").unwrap();
        assert_eq!(
            event.sequence,
            last + 1,
            "sequences strictly increase by one"
        );
        last = event.sequence;
        assert_eq!(event.kind, "issued");
        let id = event.credential.unwrap().credential_id;
        assert!(received.contains(&id), "{id} was never handed out");
        assert!(seen.insert(id.clone()), "{id} sent twice");
    }
    assert_eq!(seen, received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_token_exchanged_on_one_replica_is_refused_as_a_replay_on_the_other() {
    let issuer = TestIssuer::start().await;
    let fx = Fixture::new();
    let ca_file = fx.path("issuer-ca.pem");
    issuer.write_ca(&ca_file);
    fx.append_config(&(issuer.config(&ca_file) + &ci_grant_toml(&issuer.url("github"))));
    let cluster = Cluster::start_fixture(fx, 2).await;
    let exchange = |i: usize, token: String| {
        let cluster = &cluster;
        async move {
            let pairs = [
                ("grant_type", EXCHANGE),
                ("subject_token", token.as_str()),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("scope", PUSH),
            ];
            cluster.http(i, "POST", "/token", Some(&pairs), None).await
        }
    };
    let token = issuer.github_token(json!({}));
    let first = exchange(0, token.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_oauth_error(
        &exchange(1, token).await,
        "invalid_request",
        "already exchanged",
    );
    let fresh = exchange(1, issuer.github_token(json!({}))).await;
    assert_eq!(
        fresh.status,
        200,
        "B exchanges a token never seen: {}",
        fresh.text()
    );
}

/// Mints on `client` until `stop` is set or a mint fails; returns the ids received.
async fn mint_until(mut client: BrokerClient<Channel>, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut ids = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match mint(&mut client, DEST, PURPOSE, 60, None).await {
            Ok(reply) => ids.push(reply.credential_id),
            Err(_) => break,
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_credential_received_from_either_replica_is_recorded_when_one_is_sigkilled() {
    const CLIENTS_PER_REPLICA: usize = 6;
    let mut cluster = Cluster::start(2).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    let (a, b) = (cluster.workload(0).await, cluster.workload(1).await);
    for _ in 0..CLIENTS_PER_REPLICA {
        on_a.push(tokio::spawn(mint_until(a.clone(), Arc::clone(&stop))));
        on_b.push(tokio::spawn(mint_until(b.clone(), Arc::clone(&stop))));
    }
    // Kill A once both replicas are committing (its records exist), mid-flight.
    let ledger = cluster.ledger().await;
    let deadline = Instant::now() + START;
    while ledger.len().await.unwrap() < 200 {
        assert!(Instant::now() < deadline, "the load never got going");
        sleep(Duration::from_millis(20)).await;
    }
    cluster.replicas[0].kill();
    let mut received = BTreeSet::new();
    let mut from_a = 0;
    for task in on_a {
        let ids = task.await.unwrap();
        from_a += ids.len();
        received.extend(ids);
    }
    // B keeps minting after A's death (its sessions held no lock B needs).
    let after_kill = ledger.len().await.unwrap();
    let deadline = Instant::now() + START;
    while ledger.len().await.unwrap() < after_kill + 100 {
        assert!(Instant::now() < deadline, "B stopped minting once A died");
        sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in on_b {
        received.extend(task.await.unwrap());
    }
    assert!(from_a > 0, "A handed out credentials before it was killed");

    let issued = gap_free_issued(&ledger).await;
    for id in &received {
        assert!(
            ledger.get(id).await.unwrap().is_some(),
            "{id} was handed out but not recorded"
        );
    }
    assert!(
        received.is_subset(&issued),
        "every credential handed out has its issued event"
    );
    assert_eq!(
        listed(&mut cluster.admin(1).await).await,
        issued,
        "the survivor lists every recorded credential"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_cut_off_from_the_database_refuse_work_and_serve_again_once_it_is_back() {
    let issuer = TestIssuer::start().await;
    let fx = Fixture::new();
    let ca_file = fx.path("issuer-ca.pem");
    issuer.write_ca(&ca_file);
    fx.append_config(&(issuer.config(&ca_file) + &ci_grant_toml(&issuer.url("github"))));
    let cluster = Cluster::start_fixture(fx, 2).await;
    let exchange = |i: usize| {
        let (cluster, token) = (&cluster, issuer.github_token(json!({})));
        async move {
            let pairs = [
                ("grant_type", EXCHANGE),
                ("subject_token", token.as_str()),
                ("subject_token_type", ID_TOKEN),
                ("audience", REGISTRY),
                ("scope", PUSH),
            ];
            cluster.http(i, "POST", "/token", Some(&pairs), None).await
        }
    };
    let mut received = HashSet::new();
    let reply = exchange(0).await; // also loads the issuer's keys
    assert_eq!(reply.status, 200, "{}", reply.text());
    received.insert(jti(&reply));
    let (mut a, mut b) = (cluster.workload(0).await, cluster.workload(1).await);
    received.insert(
        mint(&mut a, DEST, PURPOSE, 60, None)
            .await
            .unwrap()
            .credential_id,
    );

    // Background load across the cut: whatever a client receives must be recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (mut client, stop) = (b.clone(), Arc::clone(&stop));
        async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(reply) = mint(&mut client, DEST, PURPOSE, 60, None).await {
                    ids.push(reply.credential_id);
                }
                sleep(Duration::from_millis(5)).await;
            }
            ids
        }
    });

    cluster.db.allow_connections(false).await;
    cluster.db.terminate_connections().await;
    for i in 0..2 {
        cluster.await_readyz(i, 503, READINESS).await;
        cluster
            .await_health(i, ServingStatus::NotServing, READINESS)
            .await;
    }
    let status = mint(&mut a, DEST, PURPOSE, 60, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = mint(&mut b, DEST, PURPOSE, 60, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let reply = exchange(1).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"], "temporarily_unavailable");

    cluster.db.allow_connections(true).await;
    for i in 0..2 {
        cluster.await_readyz(i, 200, READINESS).await;
        cluster
            .await_health(i, ServingStatus::Serving, READINESS)
            .await;
    }
    received.insert(
        mint(&mut a, DEST, PURPOSE, 60, None)
            .await
            .unwrap()
            .credential_id,
    );
    received.insert(
        mint(&mut b, DEST, PURPOSE, 60, None)
            .await
            .unwrap()
            .credential_id,
    );
    let reply = exchange(1).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    received.insert(jti(&reply));
    stop.store(true, Ordering::Relaxed);
    received.extend(load.await.unwrap());

    let ledger = cluster.ledger().await;
    let issued = gap_free_issued(&ledger).await;
    for id in &received {
        assert!(issued.contains(id), "{id} was handed out but not recorded");
    }
}

/// Returns the `jti` of the access token in a `/token` reply.
fn jti(reply: &HttpReply) -> String {
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    claims_of(&token)["jti"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_sent_to_one_replica_is_evidence_on_the_other() {
    let cluster = Cluster::start(2).await;
    let rule = cluster
        .admin(0)
        .await
        .revoke(RevokeRequest {
            selector: Some(Selector::Purpose("replica:test".into())),
            reason: "replica test: evidence".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut on_b = cluster.workload(1).await;
    let started = Instant::now();
    // B acknowledges once the rule has reached it (an unknown rule id is ignored).
    loop {
        let reply = on_b
            .acknowledge_revocations(tessera_proto::AcknowledgeRevocationsRequest {
                revocation_ids: vec![rule.revocation_id.clone()],
            })
            .await
            .unwrap()
            .into_inner();
        if reply.acknowledged == 1 {
            break;
        }
        assert!(started.elapsed() < FAN_OUT, "the rule never reached B");
        sleep(Duration::from_millis(5)).await;
    }
    let evidence = cluster
        .admin(0)
        .await
        .get_revocation(tessera_proto::GetRevocationRequest {
            revocation_id: rule.revocation_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let parties: Vec<&str> = evidence
        .acknowledgements
        .iter()
        .map(|a| a.relying_party.as_str())
        .collect();
    assert_eq!(parties, vec![WORKLOAD_ID], "A shows what B was told");
}
