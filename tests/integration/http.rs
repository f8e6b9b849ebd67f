//! HTTPS endpoints, the gRPC health protocol and gRPC reflection (v1 and v1alpha).

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

/// Returns the services a reflection client of `version` (`v1` or `v1alpha`) lists.
async fn reflected_services(env: &Env, version: &str) -> Vec<String> {
    use tonic_reflection::pb::{v1, v1alpha};
    let channel = env.channel(None).await;
    let host = String::new();
    let list = || String::new();
    let names: Vec<String> = if version == "v1" {
        use v1::server_reflection_request::MessageRequest;
        use v1::server_reflection_response::MessageResponse;
        let request = v1::ServerReflectionRequest {
            host,
            message_request: Some(MessageRequest::ListServices(list())),
        };
        let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
        let mut replies = client
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match replies.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("v1: {other:?}"),
        }
    } else {
        use v1alpha::server_reflection_request::MessageRequest;
        use v1alpha::server_reflection_response::MessageResponse;
        let request = v1alpha::ServerReflectionRequest {
            host,
            message_request: Some(MessageRequest::ListServices(list())),
        };
        let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
        let mut replies = client
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match replies.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("v1alpha: {other:?}"),
        }
    };
    names
}

#[tokio::test]
async fn grpc_reflection_lists_the_services_to_v1_and_v1alpha_clients() {
    let mut env = Env::start().await;
    for version in ["v1", "v1alpha"] {
        let services = reflected_services(&env, version).await;
        for wanted in ["tessera.v1.Broker", "tessera.v1.Admin"] {
            assert!(
                services.iter().any(|s| s == wanted),
                "{version} lists {services:?}, not {wanted}"
            );
        }
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
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    env.shutdown().await;
}
