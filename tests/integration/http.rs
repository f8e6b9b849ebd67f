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
        "tessera_ledger_checkpoint_seconds",
        "tessera_ledger_batch_size",
        "tessera_audit_dropped_total",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    env.shutdown().await;
}

/// Returns a TLS connection to `env`'s HTTPS port offering `alpn`, verified against the
/// fixture's TLS CA as `localhost`, on which nothing has been sent yet.
async fn tls_to(
    env: &Env,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(env.fx.material.tls_ca.cert_der.clone().into())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(env.http).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// Returns an HTTP/2 connection to `env`'s HTTPS port: its request sender and the connection
/// task to drive (it ends when the server closes the connection).
async fn h2_to(
    env: &Env,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    hyper::client::conn::http2::Connection<
        hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        http_body_util::Full<bytes::Bytes>,
        hyper_util::rt::TokioExecutor,
    >,
) {
    let tls = tls_to(env, &[b"h2"]).await;
    hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap()
}

/// A form body of about 200 KB: three times `/token`'s limit.
fn oversized_form() -> String {
    format!("grant_type=x&subject_token={}", "a".repeat(200_000))
}

#[track_caller]
fn assert_too_large(status: u16, body: &[u8]) {
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(body));
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["error"], "invalid_request");
    assert!(
        json["error_description"]
            .as_str()
            .unwrap()
            .contains("larger than 65536 bytes"),
        "{json}"
    );
}

#[tokio::test]
async fn an_oversized_body_over_http1_gets_a_413_not_a_reset() {
    let mut env = Env::start().await;
    for path in ["/token", "/introspect"] {
        let reply = crate::common::https_request(&env, "POST", path, Some(oversized_form())).await;
        assert_too_large(reply.status, &reply.body);
    }
    env.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_over_http2_gets_a_413_not_a_stream_error() {
    use http_body_util::BodyExt;
    let mut env = Env::start().await;
    let (mut sender, conn) = h2_to(&env).await;
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/token", env.http.port()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            oversized_form(),
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_too_large(status, &body);
    env.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_per_address_limit_are_closed_at_once() {
    use tokio::io::AsyncReadExt;
    let fx = crate::common::Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let limited = text.replace(
        "audience = \"tessera\"",
        "audience = \"tessera\"\nmax_connections_per_ip = 3",
    );
    std::fs::write(&fx.config_path, limited).unwrap();
    let mut env = Env::start_fixture(fx).await;
    // Three connections that never start their handshake hold the address's places.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(env.http).await.unwrap());
    }
    let mut fourth = tokio::net::TcpStream::connect(env.http).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(2), fourth.read(&mut buf))
        .await
        .expect("the fourth connection is closed, not left waiting");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Closing them gives the places back (once the server sees each end).
    drop(held);
    let mut admitted = false;
    for _ in 0..100 {
        let mut probe = tokio::net::TcpStream::connect(env.http).await.unwrap();
        let shed =
            tokio::time::timeout(std::time::Duration::from_millis(100), probe.read(&mut buf)).await;
        if shed.is_err() {
            admitted = true; // still open: waiting for its handshake
            break;
        }
    }
    assert!(admitted, "places are given back when connections close");
    let metrics = https_get(&env, "/metrics").await;
    let text = String::from_utf8(metrics.2).unwrap();
    let shed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tessera_connections_shed_total{reason=\"per_ip\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no per_ip shed count in {text}"));
    assert!(shed >= 1, "{shed}");
    env.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_after_its_handshake_is_closed() {
    use tokio::io::AsyncReadExt;
    let mut env = Env::start().await;
    let mut tls = tls_to(&env, &[]).await;
    let mut buf = [0u8; 16];
    // Generous: the deadline is 5 s; before it existed the connection stayed open for minutes.
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), tls.read(&mut buf))
        .await
        .expect("closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    env.shutdown().await;
}

/// Starts a broker whose HTTPS connections close after `idle` with no request in flight.
async fn start_with_idle_timeout(idle: &str) -> Env {
    let fx = crate::common::Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let limited = text.replace(
        "audience = \"tessera\"",
        &format!("audience = \"tessera\"\nhttp_idle_timeout = \"{idle}\""),
    );
    std::fs::write(&fx.config_path, limited).unwrap();
    Env::start_fixture(fx).await
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_though_it_answers_pings() {
    use http_body_util::BodyExt;
    let mut env = start_with_idle_timeout("1s").await;
    let (mut sender, conn) = h2_to(&env).await;
    let conn = tokio::spawn(conn);
    let request = hyper::Request::builder()
        .uri(format!("https://localhost:{}/healthz", env.http.port()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    // Generous: the timeout is 1 s; before it existed the connection stayed open for minutes.
    tokio::time::timeout(std::time::Duration::from_secs(20), conn)
        .await
        .expect("the server closed the idle connection")
        .unwrap()
        .expect("closed gracefully (GOAWAY), not reset");
    env.shutdown().await;
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut env = start_with_idle_timeout("1s").await;
    let mut tls = tls_to(&env, &[b"http/1.1"]).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Under the 10 s header-read timeout, which would otherwise be what closes it.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(8), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server closed the idle keep-alive connection"
    );
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    env.shutdown().await;
}
