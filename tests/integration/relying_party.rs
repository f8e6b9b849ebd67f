//! The relying party SDK against the real server: the revocation stream says when its replay is
//! complete, and a relying party that reconnects accepts nothing before that.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tessera_client::relying_party::{Presentation, Refusal, RelyingParty, StreamEnd, Verdict};
use tessera_core::clock::SystemClock;
use tessera_proto::admin_client::AdminClient;
use tessera_proto::broker_client::BrokerClient;
use tessera_proto::revoke_request::Selector;
use tessera_proto::{RevocationEvent, RevokeRequest, RevokeResponse, WatchRevocationsRequest};
use tonic::Streaming;

use crate::common::{DEST, Env, PURPOSE, https_get, mint};

/// The issuer of the test server's tokens.
const ISSUER: &str = "https://127.0.0.1:0";

async fn relying_party(env: &Env) -> Arc<RelyingParty> {
    let (_, _, jwks) = https_get(env, "/.well-known/jwks.json").await;
    let jwks = serde_json::from_slice(&jwks).unwrap();
    Arc::new(RelyingParty::new(ISSUER, DEST, &jwks, Arc::new(SystemClock)).unwrap())
}

async fn revoke(env: &Env, selector: Selector) -> RevokeResponse {
    AdminClient::new(env.channel(Some(&env.fx.material.admin)).await)
        .revoke(RevokeRequest {
            selector: Some(selector),
            reason: "incident 42".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn watch(env: &Env, since_sequence: u64) -> Streaming<RevocationEvent> {
    BrokerClient::new(env.channel(Some(&env.fx.material.workload)).await)
        .watch_revocations(WatchRevocationsRequest { since_sequence })
        .await
        .unwrap()
        .into_inner()
}

/// Returns the next message of `stream`; the test fails if none arrives.
async fn next(stream: &mut Streaming<RevocationEvent>) -> RevocationEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// Waits until the relying party has caught up; the test fails if it never does.
async fn caught_up(rp: &RelyingParty) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !rp.is_following() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_revocation_stream_marks_the_end_of_its_replay_with_the_sequence_it_opened_at() {
    let mut env = Env::start().await;
    let first = revoke(&env, Selector::Purpose("old:one".into())).await;
    let second = revoke(&env, Selector::Purpose("old:two".into())).await;
    let mut stream = watch(&env, 0).await;
    let replayed = [next(&mut stream).await, next(&mut stream).await];
    assert_eq!(
        replayed.map(|e| (e.sequence, e.caught_up)),
        [(first.sequence, false), (second.sequence, false)]
    );
    let marker = next(&mut stream).await;
    assert_eq!(
        marker,
        RevocationEvent {
            sequence: second.sequence,
            caught_up: true,
            ..RevocationEvent::default()
        },
        "the marker carries no rule"
    );
    let live = revoke(&env, Selector::Purpose("new".into())).await;
    let seen = next(&mut stream).await;
    assert_eq!(
        (seen.sequence, seen.value.as_str(), seen.caught_up),
        (live.sequence, "new", false)
    );
    // A watcher that missed nothing is told so at once.
    let mut resumed = watch(&env, live.sequence).await;
    let marker = next(&mut resumed).await;
    assert!(marker.caught_up, "{marker:?}");
    assert_eq!(marker.sequence, live.sequence);
    env.shutdown().await;
}

#[tokio::test]
async fn a_token_revoked_while_disconnected_is_not_accepted_before_the_replay_completes() {
    let mut env = Env::start().await;
    let rp = relying_party(&env).await;
    // Follow until caught up, then disconnect.
    let follower = Arc::clone(&rp);
    let mut client = BrokerClient::new(env.channel(Some(&env.fx.material.workload)).await);
    let task = tokio::spawn(async move { follower.follow(&mut client).await });
    caught_up(&rp).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(!rp.is_following());

    let mut workload = env.workload_client().await;
    let minted = mint(&mut workload, DEST, PURPOSE, 60, None).await.unwrap();
    let presented = Presentation::mtls(&env.fx.material.workload.cert_der, PURPOSE);
    // Revoked while the relying party is away, after another rule it has not seen either.
    revoke(&env, Selector::Purpose("unrelated".into())).await;
    revoke(&env, Selector::CredentialId(minted.credential_id.clone())).await;

    // Reconnect, handing the relying party the real stream one message at a time.
    let mut stream = watch(&env, rp.last_sequence()).await;
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let follower = Arc::clone(&rp);
    let task = tokio::spawn(async move { follower.follow_stream(rx).await });
    loop {
        let verdict = rp.check(&minted.token, presented);
        // Introspect until the rule arrives, refuse after: never accept.
        assert!(
            !matches!(verdict, Verdict::Accept(_)),
            "not caught up yet: {verdict:?}"
        );
        let event = next(&mut stream).await;
        let done = event.caught_up;
        let sequence = event.sequence;
        tx.unbounded_send(Ok(event)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while rp.last_sequence() < sequence {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        if done {
            break;
        }
    }
    caught_up(&rp).await;
    assert_eq!(
        rp.check(&minted.token, presented),
        Verdict::Refuse(Refusal::Revoked("credential_id"))
    );
    drop(tx);
    assert_eq!(task.await.unwrap(), StreamEnd::Closed);
    env.shutdown().await;
}

#[tokio::test]
async fn a_token_bound_to_the_workload_certificate_is_refused_without_it() {
    let mut env = Env::start().await;
    let rp = relying_party(&env).await;
    let follower = Arc::clone(&rp);
    let mut client = BrokerClient::new(env.channel(Some(&env.fx.material.workload)).await);
    tokio::spawn(async move { follower.follow(&mut client).await });
    caught_up(&rp).await;
    let mut workload = env.workload_client().await;
    let minted = mint(&mut workload, DEST, PURPOSE, 60, None).await.unwrap();
    let certificate = &env.fx.material.workload.cert_der;
    assert_eq!(
        rp.check(&minted.token, Presentation::bearer(PURPOSE)),
        Verdict::Refuse(Refusal::CertificateMissing)
    );
    assert_eq!(
        rp.check(
            &minted.token,
            Presentation::mtls(&env.fx.material.admin.cert_der, PURPOSE)
        ),
        Verdict::Refuse(Refusal::CertificateMismatch)
    );
    assert_eq!(
        rp.check(
            &minted.token,
            Presentation::mtls(certificate, "ledger:read")
        ),
        Verdict::Refuse(Refusal::WrongScope)
    );
    assert!(matches!(
        rp.check(&minted.token, Presentation::mtls(certificate, PURPOSE)),
        Verdict::Accept(_)
    ));
    env.shutdown().await;
}

#[tokio::test]
async fn a_relying_party_ahead_of_the_broker_starts_over_from_the_first_rule() {
    let mut env = Env::start().await;
    let rule = revoke(&env, Selector::Purpose("old:one".into())).await;
    let rp = relying_party(&env).await;
    // As if it had followed a broker whose ledger has since been replaced.
    rp.apply(&RevocationEvent {
        sequence: 999,
        caught_up: true,
        ..RevocationEvent::default()
    });
    let mut client = BrokerClient::new(env.channel(Some(&env.fx.material.workload)).await);
    let end = rp.follow(&mut client).await;
    assert!(
        matches!(
            &end,
            StreamEnd::Refused {
                code: tonic::Code::OutOfRange,
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(rp.last_sequence(), 0, "resumes from the start next time");
    let following = Arc::clone(&rp);
    tokio::spawn(async move { following.follow(&mut client).await });
    caught_up(&rp).await;
    assert!(rp.last_sequence() >= rule.sequence);
    assert_eq!(rp.rule_count(), 1);
    env.shutdown().await;
}
