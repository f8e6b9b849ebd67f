//! HTTPS endpoints and the gRPC health protocol.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{Env, https_get};

#[tokio::test]
async fn serves_jwks_discovery_and_health_over_https() {
    let mut env = Env::start().await;
    let (status, content_type, body) = https_get(&env, "/.well-known/jwks.json").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let jwks: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "ES256");
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(key.get("d").is_none(), "no private part");

    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (status, _, body) = https_get(&env, path).await;
        assert_eq!(status, 200);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["issuer"], "https://127.0.0.1:0");
        assert_eq!(doc["jwks_uri"], "https://127.0.0.1:0/.well-known/jwks.json");
        assert_eq!(doc["id_token_signing_alg_values_supported"][0], "ES256");
    }
    assert_eq!(https_get(&env, "/healthz").await.0, 200);
    assert_eq!(https_get(&env, "/readyz").await.0, 200);
    assert_eq!(https_get(&env, "/nope").await.0, 404);
    env.shutdown().await;
}

#[tokio::test]
async fn answers_the_grpc_health_protocol() {
    let mut env = Env::start().await;
    let mut health = HealthClient::new(env.channel(None).await);
    for service in ["", "tessera.v1.Broker"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    env.shutdown().await;
}

#[tokio::test]
async fn serves_prometheus_metrics_named_tessera() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    crate::common::mint(
        &mut client,
        crate::common::DEST,
        crate::common::PURPOSE,
        60,
        None,
    )
    .await
    .unwrap();
    let (status, _, body) = https_get(&env, "/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    for name in [
        "tessera_credentials_issued_total{",
        "tessera_live_credentials",
        "tessera_revocation_rules",
        "tessera_events_sequence",
        "tessera_watchers",
        "tessera_revoke_delivery_seconds",
        "tessera_ledger_commit_seconds",
        "tessera_ledger_batch_size",
        "tessera_audit_dropped_total",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    env.shutdown().await;
}
