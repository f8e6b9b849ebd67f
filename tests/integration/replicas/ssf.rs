//! Shared Signals on two replicas of one PostgreSQL ledger: both follow every revocation and
//! queue its SET, but the SET's jti is derived from (stream, revocation), so it is queued once,
//! and only the replica holding the stream's lease pushes it.

use serde_json::{Value, json};
use tessera_ledger::{PendingParams, SignalStore};
use tessera_proto::RevokeRequest;
use tessera_proto::revoke_request::Selector;
use tessera_testkit::dev::WORKLOAD_ID;

use super::cluster::*;
use crate::common::{Fixture, https_request_to};
use crate::ssf::receiver::{Mode, Receiver};

const RP: &str = "spiffe://example.org/ns/ledger/sa/rp";

/// Returns the claims of a compact JWS (unverified: the single-server tests verify SETs).
fn claims(set: &str) -> Value {
    use base64::Engine;
    let part = set.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_revocation_is_queued_once_and_pushed_by_one_replica() {
    let fx = Fixture::new();
    let ca = fx.path("tls-ca.pem");
    fx.append_config(&format!(
        "\n[ssf]\nca_file = \"{}\"\npush_hosts = [\"localhost\"]\n",
        ca.display()
    ));
    let cluster = Cluster::start_fixture(fx, 2).await;
    let receiver = Receiver::start(&cluster.fx, Mode::Accept).await;
    let body = json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": receiver.url()}});
    let bearer = cluster.fx.jwt_svid(RP);
    let http = cluster.replicas[0].http;
    let created = https_request_to(
        &cluster.fx,
        http,
        "POST",
        "/ssf/streams",
        Some(body.to_string()),
        Some(&bearer),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let stream_id = created.json()["stream_id"].as_str().unwrap().to_owned();
    let mut revocations = Vec::new();
    for (i, selector) in [
        Selector::Workload(WORKLOAD_ID.into()),
        Selector::Owner("team-payments".into()),
    ]
    .into_iter()
    .enumerate()
    {
        // Revoked on the replica that did not create the stream, then on the other.
        let reply = cluster
            .admin(1 - i)
            .await
            .revoke(RevokeRequest {
                selector: Some(selector),
                reason: "replica test".into(),
            })
            .await
            .unwrap()
            .into_inner();
        revocations.push(reply.revocation_id);
        receiver.wait_for(i + 1).await;
    }
    let sets = receiver.wait_for(2).await;
    let txns: Vec<Value> = sets.iter().map(|s| claims(s)["txn"].clone()).collect();
    assert_eq!(
        txns,
        [json!(revocations[0]), json!(revocations[1])],
        "each once, in order"
    );
    let ledger = cluster.ledger().await;
    let params = PendingParams {
        stream_id,
        limit: 10,
    };
    for _ in 0..50 {
        if ledger
            .pending_sets(params.clone())
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        ledger.pending_sets(params).await.unwrap().is_empty(),
        "both acknowledged"
    );
    assert_eq!(receiver.accepted(), 2);
}
