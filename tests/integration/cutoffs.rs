//! Millisecond cut-offs: a credential minted right after a Revoke reply is live, every time and
//! also right after a restart; a rule covers every credential issued before it even when the
//! clock steps back, and none issued after it.

use std::sync::Arc;

use tessera_core::clock::ManualClock;
use tessera_core::domain::id;
use tessera_proto::revoke_request::Selector;
use tessera_testkit::dev::WORKLOAD_ID;

use crate::common::{DEST, Env, Fixture, PURPOSE, mint, now};
use crate::revocation::{active, admin, revoke_request};

/// Mints, revokes the workload, mints again at once, `rounds` times; checks each pair.
async fn revoke_then_remint(env: &Env, rounds: usize) {
    let mut client = env.workload_client().await;
    let mut admin = admin(env).await;
    for round in 0..rounds {
        let before = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
        admin
            .revoke(revoke_request(Selector::Workload(WORKLOAD_ID.into())))
            .await
            .unwrap();
        let after = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
        assert!(active(env, &after.token).await, "round {round}: re-minted");
        assert!(!active(env, &before.token).await, "round {round}: revoked");
    }
}

#[tokio::test]
async fn a_token_minted_right_after_a_revoke_reply_is_active_every_time() {
    let env = Env::start().await;
    revoke_then_remint(&env, 25).await;
    let mut env = env.restart().await;
    revoke_then_remint(&env, 5).await;
    env.shutdown().await;
}

#[tokio::test]
async fn minted_ids_carry_their_issue_millisecond() {
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let minted = mint(&mut client, DEST, PURPOSE, 60, None).await.unwrap();
    let ms = id::embedded_ms(&minted.credential_id).expect("a time-ordered jti");
    let iat = minted.expires_at - 60;
    assert_eq!(
        ms.div_euclid(1000),
        iat,
        "the jti's millisecond is in iat's second"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_rule_never_covers_a_credential_issued_after_it_even_if_the_clock_steps_back() {
    let clock = Arc::new(ManualClock::at(now()));
    let mut env = Env::start_with_clock(Fixture::new(), clock.clone()).await;
    let mut client = env.workload_client().await;
    let first = mint(&mut client, DEST, PURPOSE, 600, None).await.unwrap();
    clock.advance(-30);
    assert!(active(&env, &first.token).await, "live before the revoke");
    admin(&env)
        .await
        .revoke(revoke_request(Selector::Workload(WORKLOAD_ID.into())))
        .await
        .unwrap();
    assert!(
        !active(&env, &first.token).await,
        "issued 30 s 'after' the revoke by the clock, but before it: covered"
    );
    clock.advance(-30);
    let second = mint(&mut client, DEST, PURPOSE, 600, None).await.unwrap();
    assert!(
        active(&env, &second.token).await,
        "issued after the revoke although the clock went back further"
    );
    assert!(
        id::embedded_ms(&second.credential_id) > id::embedded_ms(&first.credential_id),
        "issue times stay ordered across the revoke"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn after_a_restart_a_cut_off_is_not_before_what_the_ledger_recorded() {
    let clock = Arc::new(ManualClock::at(now()));
    let mut env = Env::start_with_clock(Fixture::new(), clock.clone()).await;
    let mut client = env.workload_client().await;
    let minted = mint(&mut client, DEST, PURPOSE, 600, None).await.unwrap();
    env.shutdown().await;
    clock.advance(-120);
    let mut env = Env::start_with_clock(env.fx, clock.clone()).await;
    assert!(active(&env, &minted.token).await, "live before the revoke");
    admin(&env)
        .await
        .revoke(revoke_request(Selector::Workload(WORKLOAD_ID.into())))
        .await
        .unwrap();
    assert!(
        !active(&env, &minted.token).await,
        "recorded before the restart, two minutes 'after' the revoke by the stepped-back clock"
    );
    env.shutdown().await;
}
