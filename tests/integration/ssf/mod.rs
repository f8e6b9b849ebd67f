//! Shared Signals (SSF 1.0, CAEP 1.0): discovery, stream management, SETs verified with a JOSE
//! library against the broker's JWKS, push to a real HTTPS receiver (through outages and broker
//! restarts), poll with acknowledgements, and isolation between receivers.

pub(crate) mod receiver;

use std::collections::HashSet;

use serde_json::{Value, json};
use tessera_proto::admin_client::AdminClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{MintX509Request, RevokeRequest};
use tessera_testkit::dev::{ADMIN_ID, WORKLOAD_ID};
use tonic::transport::Channel;

use self::receiver::{Mode, Receiver};
use crate::common::{
    DEST, Env, Fixture, HttpReply, PURPOSE, csr_der, https_get, https_request_as, mint,
};

/// The relying party that receives signals.
const RP: &str = "spiffe://example.org/ns/ledger/sa/rp";
const OTHER_RP: &str = "spiffe://example.org/ns/shop/sa/rp";
const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// A fixture whose broker trusts the test receivers' TLS CA for push delivery.
fn fixture(extra: &str) -> Fixture {
    let fx = Fixture::new();
    let ca = fx.path("tls-ca.pem");
    fx.append_config(&format!(
        "\n[ssf]\nca_file = \"{}\"\nmin_verification_interval = \"60s\"\npush_hosts = [\"localhost\"]\n{extra}",
        ca.display()
    ));
    fx
}

/// Sends a Shared Signals request as `who` (a JWT-SVID bearer), with a JSON body when given.
async fn ssf(env: &Env, method: &str, path: &str, body: Option<Value>, who: &str) -> HttpReply {
    let bearer = env.fx.jwt_svid(who);
    https_request_as(
        env,
        method,
        path,
        body.map(|b| b.to_string()),
        Some(&bearer),
    )
    .await
}

/// Creates a stream as `who`; returns its configuration. Panics unless it is created.
async fn create(env: &Env, who: &str, body: Value) -> Value {
    let reply = ssf(env, "POST", "/ssf/streams", Some(body), who).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

/// Creates a push stream to `receiver` with an authorization header.
async fn push_stream(env: &Env, who: &str, receiver: &Receiver) -> String {
    let body = json!({
        "delivery": {
            "method": "urn:ietf:rfc:8935",
            "endpoint_url": receiver.url(),
            "authorization_header": "Bearer receiver-secret",
        },
        "description": "test receiver",
    });
    create(env, who, body).await["stream_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn admin(env: &Env) -> AdminClient<Channel> {
    AdminClient::new(env.channel(Some(&env.fx.material.admin)).await)
}

/// Revokes by `selector` as the admin; returns the revocation id.
async fn revoke(env: &Env, selector: Selector) -> String {
    let reply = admin(env)
        .await
        .revoke(RevokeRequest {
            selector: Some(selector),
            reason: "incident 7".into(),
        })
        .await
        .unwrap()
        .into_inner();
    reply.revocation_id
}

/// Mints a JWT for the dev workload; returns its credential id.
async fn mint_jwt(env: &Env) -> String {
    let mut client = env.workload_client().await;
    mint(&mut client, DEST, PURPOSE, 60, None)
        .await
        .unwrap()
        .credential_id
}

/// Verifies `set` with a JOSE library against the broker's JWKS as a receiver would (ES256,
/// `typ: secevent+jwt`, issuer, audience `aud`, no `exp` needed); returns its claims.
async fn verify(env: &Env, set: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(set).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    let (_, _, body) = https_get(env, "/.well-known/jwks.json").await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&body).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.set_audience(&[aud]);
    validation.set_issuer(&[issuer(env).await]);
    let claims = jsonwebtoken::decode::<Value>(set, &key, &validation)
        .unwrap()
        .claims;
    assert!(claims.get("sub").is_none() && claims.get("exp").is_none());
    for claim in ["iss", "iat", "jti", "aud", "sub_id", "events"] {
        assert!(claims.get(claim).is_some(), "{claim} missing from {claims}");
    }
    assert_eq!(
        claims["events"].as_object().unwrap().len(),
        1,
        "one event per SET"
    );
    claims
}

async fn issuer(env: &Env) -> String {
    let (_, _, body) = https_get(env, "/.well-known/ssf-configuration").await;
    let doc: Value = serde_json::from_slice(&body).unwrap();
    doc["issuer"].as_str().unwrap().to_owned()
}

/// Returns the value of the metric line starting with `prefix`, or 0.
async fn metric(env: &Env, prefix: &str) -> f64 {
    let (_, _, body) = https_get(env, "/metrics").await;
    String::from_utf8(body)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the metric starting with `prefix` is positive (at most 60 s).
async fn wait_for_metric(env: &Env, prefix: &str) {
    for _ in 0..600 {
        if metric(env, prefix).await > 0.0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("metric {prefix} stayed at 0");
}

/// Polls `stream_id` as `who` with `request`; returns the reply.
async fn poll(env: &Env, who: &str, stream_id: &str, request: Value) -> HttpReply {
    ssf(
        env,
        "POST",
        &format!("/ssf/poll/{stream_id}"),
        Some(request),
        who,
    )
    .await
}

#[tokio::test]
async fn publishes_the_transmitter_metadata() {
    let mut env = Env::start_fixture(fixture("")).await;
    let (status, content_type, body) = https_get(&env, "/.well-known/ssf-configuration").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let iss = doc["issuer"].as_str().unwrap();
    assert!(iss.starts_with("https://"));
    assert_eq!(doc["jwks_uri"], format!("{iss}/.well-known/jwks.json"));
    assert_eq!(doc["configuration_endpoint"], format!("{iss}/ssf/streams"));
    assert_eq!(doc["status_endpoint"], format!("{iss}/ssf/status"));
    assert_eq!(doc["verification_endpoint"], format!("{iss}/ssf/verify"));
    assert_eq!(
        doc["delivery_methods_supported"],
        json!(["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"])
    );
    assert_eq!(doc["spec_version"], "1_0");
    let critical = doc["critical_subject_members"].as_array().unwrap();
    assert!(critical.contains(&json!("tessera_workload")));
    env.shutdown().await;
}

#[tokio::test]
async fn a_push_receiver_gets_verified_sets_for_a_credential_and_a_selector() {
    let mut env = Env::start_fixture(fixture("")).await;
    let receiver = Receiver::start(&env.fx, Mode::Accept).await;
    let stream_id = push_stream(&env, RP, &receiver).await;
    let jti = mint_jwt(&env).await;
    let first = revoke(&env, Selector::CredentialId(jti.clone())).await;
    let second = revoke(&env, Selector::Workload(WORKLOAD_ID.into())).await;
    let sets = receiver.wait_for(2).await;
    {
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(
            seen.authorization.as_deref(),
            Some("Bearer receiver-secret")
        );
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/secevent+jwt")
        );
    }
    let iss = issuer(&env).await;
    let change = verify(&env, &sets[0], RP).await;
    assert_eq!(change["aud"], RP);
    assert_eq!(change["txn"], first);
    assert_eq!(
        change["sub_id"],
        json!({"format": "jwt_id", "iss": iss, "jti": jti})
    );
    let event = &change["events"][CREDENTIAL_CHANGE];
    assert_eq!(event["change_type"], "revoke");
    assert_eq!(event["credential_type"], "jwt");
    assert_eq!(event["reason_admin"], json!({"en": "incident 7"}));
    let session = verify(&env, &sets[1], RP).await;
    assert_eq!(session["txn"], second);
    assert_eq!(
        session["sub_id"],
        json!({"format": "complex", "tessera_workload": {"format": "uri", "uri": WORKLOAD_ID}})
    );
    let event = &session["events"][SESSION_REVOKED];
    assert!(event["event_timestamp"].as_i64().unwrap() > 0);
    let listed = ssf(
        &env,
        "GET",
        &format!("/ssf/streams?stream_id={stream_id}"),
        None,
        RP,
    )
    .await;
    assert_eq!(
        listed.json()["delivery"]["authorization_header"],
        "Bearer receiver-secret"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn poll_returns_sets_until_they_are_acknowledged() {
    let mut env = Env::start_fixture(fixture("")).await;
    let stream = create(
        &env,
        RP,
        json!({"delivery": {"method": "urn:ietf:rfc:8936"}}),
    )
    .await;
    let stream_id = stream["stream_id"].as_str().unwrap();
    let iss = issuer(&env).await;
    assert_eq!(
        stream["delivery"]["endpoint_url"],
        format!("{iss}/ssf/poll/{stream_id}")
    );
    let mut client = env.workload_client().await;
    let minted = client
        .mint_x509(MintX509Request {
            csr: csr_der(),
            destination: DEST.into(),
            purpose: PURPOSE.into(),
            ttl_seconds: 60,
        })
        .await
        .unwrap()
        .into_inner();
    let revocation = revoke(&env, Selector::CredentialId(minted.credential_id.clone())).await;
    let mut sets = Value::Null;
    for _ in 0..3 {
        // A long poll (no returnImmediately) waits for the SET to be queued.
        let reply = poll(&env, RP, stream_id, json!({"maxEvents": 10})).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        sets = reply.json()["sets"].clone();
        if !sets.as_object().unwrap().is_empty() {
            break;
        }
    }
    let (jti, set) = sets.as_object().unwrap().iter().next().unwrap();
    let claims = verify(&env, set.as_str().unwrap(), RP).await;
    assert_eq!(&claims["jti"], jti);
    assert_eq!(claims["txn"], revocation);
    assert_eq!(
        claims["sub_id"],
        json!({"format": "uri", "uri": WORKLOAD_ID})
    );
    let event = &claims["events"][CREDENTIAL_CHANGE];
    assert_eq!(event["credential_type"], "x509");
    assert_eq!(event["x509_serial"], minted.credential_id);
    assert!(event["x509_issuer"].as_str().unwrap().contains("CN="));
    // Not acknowledged: returned again.
    let again = poll(&env, RP, stream_id, json!({"returnImmediately": true})).await;
    assert!(again.json()["sets"].get(jti).is_some());
    // Acknowledged: gone.
    let acked = poll(
        &env,
        RP,
        stream_id,
        json!({"ack": [jti], "returnImmediately": true}),
    )
    .await;
    assert_eq!(acked.json(), json!({"sets": {}, "moreAvailable": false}));
    env.shutdown().await;
}

#[tokio::test]
async fn a_verification_event_echoes_the_state_and_is_rate_limited() {
    let mut env = Env::start_fixture(fixture("")).await;
    let stream = create(&env, RP, json!({})).await;
    let stream_id = stream["stream_id"].as_str().unwrap();
    let request = json!({"stream_id": stream_id, "state": "abc-123"});
    let reply = ssf(&env, "POST", "/ssf/verify", Some(request.clone()), RP).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let again = ssf(&env, "POST", "/ssf/verify", Some(request), RP).await;
    assert_eq!(again.status, 429, "min_verification_interval");
    let polled = poll(&env, RP, stream_id, json!({"returnImmediately": true})).await;
    let sets = polled.json()["sets"].clone();
    let set = sets.as_object().unwrap().values().next().unwrap();
    let claims = verify(&env, set.as_str().unwrap(), RP).await;
    assert_eq!(
        claims["sub_id"],
        json!({"format": "opaque", "id": stream_id})
    );
    assert_eq!(claims["events"][VERIFICATION], json!({"state": "abc-123"}));
    env.shutdown().await;
}

#[tokio::test]
async fn a_receiver_outage_is_retried_until_it_comes_back() {
    let mut env = Env::start_fixture(fixture("")).await;
    let receiver = Receiver::start(&env.fx, Mode::Accept).await;
    push_stream(&env, RP, &receiver).await;
    let addr = receiver.addr;
    receiver.stop();
    drop(receiver);
    let jti = mint_jwt(&env).await;
    let revocation = revoke(&env, Selector::CredentialId(jti)).await;
    wait_for_metric(&env, "tessera_ssf_failed_total{reason=\"network\"}").await;
    let back = Receiver::start_on(&env.fx, addr, Mode::Accept).await;
    let sets = back.wait_for(1).await;
    assert_eq!(verify(&env, &sets[0], RP).await["txn"], revocation);
    env.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_sets_are_resent_after_a_broker_restart() {
    let env = Env::start_fixture(fixture("")).await;
    let receiver = Receiver::start(&env.fx, Mode::Fail).await;
    push_stream(&env, RP, &receiver).await;
    let jti = mint_jwt(&env).await;
    let revocation = revoke(&env, Selector::CredentialId(jti)).await;
    receiver.wait_until(|seen| seen.requests > 0).await;
    assert_eq!(receiver.accepted(), 0);
    let mut env = env.restart().await;
    receiver.set_mode(Mode::Accept);
    let sets = receiver.wait_for(1).await;
    assert_eq!(verify(&env, &sets[0], RP).await["txn"], revocation);
    env.shutdown().await;
}

#[tokio::test]
async fn a_dead_receiver_does_not_delay_another() {
    let mut env = Env::start_fixture(fixture("")).await;
    let dead = Receiver::start(&env.fx, Mode::Hang).await;
    let alive = Receiver::start(&env.fx, Mode::Accept).await;
    push_stream(&env, OTHER_RP, &dead).await;
    push_stream(&env, RP, &alive).await;
    let first = mint_jwt(&env).await;
    revoke(&env, Selector::CredentialId(first)).await;
    dead.wait_until(|seen| seen.requests == 1).await;
    let second = mint_jwt(&env).await;
    revoke(&env, Selector::CredentialId(second)).await;
    // The live receiver gets both SETs while the dead one still holds the first push.
    alive.wait_for(2).await;
    let stuck = {
        let seen = dead.seen.lock().unwrap();
        (seen.requests, seen.accepted.len())
    };
    assert_eq!(stuck, (1, 0));
    env.shutdown().await;
}

#[tokio::test]
async fn a_receiver_cannot_see_or_change_another_receivers_stream() {
    let mut env = Env::start_fixture(fixture("")).await;
    let receiver = Receiver::start(&env.fx, Mode::Accept).await;
    let stream_id = push_stream(&env, RP, &receiver).await;
    let one = format!("/ssf/streams?stream_id={stream_id}");
    let status = format!("/ssf/status?stream_id={stream_id}");
    assert_eq!(ssf(&env, "GET", &one, None, OTHER_RP).await.status, 404);
    assert_eq!(ssf(&env, "GET", &status, None, OTHER_RP).await.status, 404);
    assert_eq!(ssf(&env, "DELETE", &one, None, OTHER_RP).await.status, 404);
    let patch = json!({"stream_id": stream_id, "description": "mine now"});
    assert_eq!(
        ssf(&env, "PATCH", "/ssf/streams", Some(patch), OTHER_RP)
            .await
            .status,
        404
    );
    let polled = poll(
        &env,
        OTHER_RP,
        &stream_id,
        json!({"returnImmediately": true}),
    )
    .await;
    assert_eq!(polled.status, 404);
    assert_eq!(
        ssf(&env, "GET", "/ssf/streams", None, OTHER_RP)
            .await
            .json(),
        json!([])
    );
    // An admin sees every stream, without the receiver's secret.
    let seen = ssf(&env, "GET", &one, None, ADMIN_ID).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()["delivery"]["authorization_header"], "***");
    assert_eq!(
        ssf(&env, "GET", "/ssf/streams", None, ADMIN_ID)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The owner still has it, and deletes it.
    assert_eq!(ssf(&env, "GET", &one, None, RP).await.status, 200);
    assert_eq!(ssf(&env, "DELETE", &one, None, RP).await.status, 204);
    assert_eq!(ssf(&env, "GET", &one, None, RP).await.status, 404);
    env.shutdown().await;
}

#[tokio::test]
async fn bad_stream_requests_are_refused_as_the_spec_says() {
    let mut env = Env::start_fixture(fixture("max_streams_per_identity = 1\n")).await;
    let push =
        |url: &str| json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": url}});
    let bad = [
        push("http://receiver.example.org/events"),
        push("not a url"),
        json!({"delivery": {"method": "urn:example:smoke-signals"}}),
        json!({"events_requested": ["urn:example:unknown"]}),
        json!({"description": 7}),
    ];
    for body in bad {
        let reply = ssf(&env, "POST", "/ssf/streams", Some(body.clone()), RP).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert!(reply.json()["error_description"].as_str().is_some());
    }
    let anonymous = https_request_as(&env, "GET", "/ssf/streams", None, None).await;
    assert_eq!(anonymous.status, 401);
    let internal = push("https://metadata.internal.example/latest");
    let reply = ssf(&env, "POST", "/ssf/streams", Some(internal.clone()), RP).await;
    assert_eq!(
        reply.status,
        403,
        "a host not in push_hosts: {}",
        reply.text()
    );
    assert!(reply.text().contains("push_hosts"), "{}", reply.text());
    let by_admin = ssf(&env, "POST", "/ssf/streams", Some(internal), ADMIN_ID).await;
    assert_eq!(
        by_admin.status,
        201,
        "admins may push anywhere: {}",
        by_admin.text()
    );
    let id = by_admin.json()["stream_id"].as_str().unwrap().to_owned();
    let path = format!("/ssf/streams?stream_id={id}");
    assert_eq!(ssf(&env, "DELETE", &path, None, ADMIN_ID).await.status, 204);
    let stream = create(
        &env,
        RP,
        json!({"events_requested": [SESSION_REVOKED, "urn:x"]}),
    )
    .await;
    assert_eq!(stream["events_delivered"], json!([SESSION_REVOKED]));
    let full = ssf(&env, "POST", "/ssf/streams", Some(json!({})), RP).await;
    assert_eq!(full.status, 429, "one stream per identity");
    let stream_id = stream["stream_id"].as_str().unwrap();
    let wrong_iss = json!({"stream_id": stream_id, "iss": "https://elsewhere.example"});
    let reply = ssf(&env, "PATCH", "/ssf/streams", Some(wrong_iss), RP).await;
    assert_eq!(reply.status, 400);
    let paused = json!({"stream_id": stream_id, "status": "paused", "reason": "maintenance"});
    let reply = ssf(&env, "POST", "/ssf/status", Some(paused.clone()), RP).await;
    assert_eq!((reply.status, reply.json()), (200, paused));
    env.shutdown().await;
}
