//! The conformance suite of [`crate::SignalStore`] (Shared Signals streams and queued SETs),
//! checked through the trait alone against every backend, as [`crate::conformance`] does for
//! the rest of the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::conformance::Backend;
use crate::{
    AckParams, EnqueueParams, LeaseParams, NewSet, NewStream, PendingParams, StoredStream,
    StreamCreated, StreamLimits, StreamUpdate,
};

/// Makes one `#[tokio::test]` per check of this module, each on a backend made by `$make`.
macro_rules! signal_conformance_tests {
    ($make:expr) => {
        $crate::conformance_signals::signal_conformance_tests!(@each $make;
            streams_are_created_read_updated_and_deleted,
            stream_caps_hold_per_owner_and_in_total,
            a_set_is_queued_once_per_jti_and_read_oldest_first,
            acked_sets_are_gone_and_the_rest_survive_a_reopen,
            a_full_queue_drops_its_oldest_sets,
            deleting_a_stream_drops_its_sets_and_sets_of_unknown_streams_are_ignored,
            the_signal_cursor_only_moves_forward,
            a_follower_does_not_queue_again_what_the_cursor_passed,
            a_lease_is_held_by_one_holder_until_it_expires,
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend = $make.await;
                $crate::conformance_signals::$check(&backend).await;
            }
        )*
    };
}
pub(crate) use signal_conformance_tests;

const LIMITS: StreamLimits = StreamLimits {
    per_owner: 10,
    total: 100,
};

fn stream(id: &str, owner: &str) -> StoredStream {
    StoredStream {
        stream_id: id.into(),
        owner: owner.into(),
        from_sequence: 7,
        config: format!(r#"{{"stream":"{id}"}}"#),
    }
}

fn new_stream(id: &str, owner: &str) -> NewStream {
    NewStream {
        stream: stream(id, owner),
        limits: LIMITS,
    }
}

fn set(stream_id: &str, jti: &str, position: u64) -> NewSet {
    NewSet {
        stream_id: stream_id.into(),
        jti: jti.into(),
        position,
        set: format!("jws-of-{jti}"),
        queued_at_ms: 1_000 + position as i64,
    }
}

fn enqueue(sets: Vec<NewSet>) -> EnqueueParams {
    EnqueueParams {
        sets,
        max_pending: 100,
        through_sequence: None,
        durable: true,
    }
}

/// Returns the jtis queued for `stream_id`, oldest first.
async fn jtis(ledger: &dyn crate::Ledger, stream_id: &str) -> Vec<String> {
    let params = PendingParams {
        stream_id: stream_id.into(),
        limit: 1000,
    };
    let pending = ledger.pending_sets(params).await.unwrap();
    pending.into_iter().map(|p| p.jti).collect()
}

pub(crate) async fn streams_are_created_read_updated_and_deleted(backend: &dyn Backend) {
    let ledger = backend.open().await;
    assert!(ledger.streams().await.unwrap().is_empty());
    for id in ["s2", "s1"] {
        let created = ledger.create_stream(new_stream(id, "spiffe://td/a")).await;
        assert_eq!(created.unwrap(), StreamCreated::Created);
    }
    let again = ledger
        .create_stream(new_stream("s1", "spiffe://td/b"))
        .await;
    assert_eq!(again.unwrap(), StreamCreated::Duplicate);
    let ids: Vec<String> = ledger
        .streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.stream_id)
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
    assert_eq!(
        ledger.stream("s1").await.unwrap(),
        Some(stream("s1", "spiffe://td/a"))
    );
    assert_eq!(ledger.stream("nope").await.unwrap(), None);
    let update = |id: &str| StreamUpdate {
        stream_id: id.into(),
        config: "{\"new\":true}".into(),
    };
    assert!(ledger.update_stream(update("s1")).await.unwrap());
    assert!(!ledger.update_stream(update("nope")).await.unwrap());
    let updated = ledger.stream("s1").await.unwrap().unwrap();
    assert_eq!(updated.config, "{\"new\":true}");
    assert_eq!(
        (updated.owner.as_str(), updated.from_sequence),
        ("spiffe://td/a", 7)
    );
    assert!(ledger.delete_stream("s1").await.unwrap());
    assert!(!ledger.delete_stream("s1").await.unwrap());
    assert_eq!(ledger.stream("s1").await.unwrap(), None);
    drop(ledger);
    let reopened = backend.open().await;
    let left: Vec<String> = reopened
        .streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.stream_id)
        .collect();
    assert_eq!(left, ["s2"]);
}

pub(crate) async fn stream_caps_hold_per_owner_and_in_total(backend: &dyn Backend) {
    let ledger = backend.open().await;
    let limits = StreamLimits {
        per_owner: 2,
        total: 3,
    };
    let create = |id: &str, owner: &str| NewStream {
        stream: stream(id, owner),
        limits,
    };
    let a = "spiffe://td/a";
    let b = "spiffe://td/b";
    assert_eq!(
        ledger.create_stream(create("1", a)).await.unwrap(),
        StreamCreated::Created
    );
    assert_eq!(
        ledger.create_stream(create("2", a)).await.unwrap(),
        StreamCreated::Created
    );
    assert_eq!(
        ledger.create_stream(create("3", a)).await.unwrap(),
        StreamCreated::OwnerFull
    );
    assert_eq!(
        ledger.create_stream(create("4", b)).await.unwrap(),
        StreamCreated::Created
    );
    assert_eq!(
        ledger.create_stream(create("5", b)).await.unwrap(),
        StreamCreated::Full
    );
    assert_eq!(ledger.streams().await.unwrap().len(), 3);
    ledger.delete_stream("1").await.unwrap();
    assert_eq!(
        ledger.create_stream(create("6", b)).await.unwrap(),
        StreamCreated::Created
    );
}

pub(crate) async fn a_set_is_queued_once_per_jti_and_read_oldest_first(backend: &dyn Backend) {
    let ledger = backend.open().await;
    ledger.create_stream(new_stream("s", "o")).await.unwrap();
    ledger.create_stream(new_stream("t", "o")).await.unwrap();
    let first = ledger
        .enqueue_sets(enqueue(vec![
            set("s", "c", 9),
            set("s", "a", 3),
            set("t", "a", 1),
        ]))
        .await
        .unwrap();
    assert_eq!((first.queued, first.dropped), (3, 0));
    // The same jti again (another replica, or a replay after a restart) changes nothing.
    let mut again = set("s", "a", 5);
    again.set = "another signature".into();
    let second = ledger
        .enqueue_sets(enqueue(vec![again, set("s", "b", 3)]))
        .await
        .unwrap();
    assert_eq!(second.queued, 1);
    assert_eq!(jtis(ledger.as_ref(), "s").await, ["a", "b", "c"]);
    assert_eq!(jtis(ledger.as_ref(), "t").await, ["a"]);
    let params = PendingParams {
        stream_id: "s".into(),
        limit: 2,
    };
    let page = ledger.pending_sets(params).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(
        (page[0].jti.as_str(), page[0].position, page[0].set.as_str()),
        ("a", 3, "jws-of-a")
    );
    assert_eq!(page[0].queued_at_ms, 1_003);
}

pub(crate) async fn acked_sets_are_gone_and_the_rest_survive_a_reopen(backend: &dyn Backend) {
    let ledger = backend.open().await;
    ledger.create_stream(new_stream("s", "o")).await.unwrap();
    let sets = (1..=4).map(|i| set("s", &format!("j{i}"), i)).collect();
    ledger.enqueue_sets(enqueue(sets)).await.unwrap();
    let ack = AckParams {
        stream_id: "s".into(),
        jtis: vec!["j1".into(), "j3".into(), "unknown".into()],
    };
    assert_eq!(ledger.ack_sets(ack).await.unwrap(), 2);
    assert_eq!(jtis(ledger.as_ref(), "s").await, ["j2", "j4"]);
    ledger.close().await.unwrap();
    drop(ledger);
    let reopened = backend.open().await;
    assert_eq!(jtis(reopened.as_ref(), "s").await, ["j2", "j4"]);
    assert_eq!(reopened.discard_sets("s").await.unwrap(), 2);
    assert!(jtis(reopened.as_ref(), "s").await.is_empty());
}

pub(crate) async fn a_full_queue_drops_its_oldest_sets(backend: &dyn Backend) {
    let ledger = backend.open().await;
    ledger.create_stream(new_stream("s", "o")).await.unwrap();
    ledger.create_stream(new_stream("t", "o")).await.unwrap();
    let mut params = enqueue((1..=3).map(|i| set("s", &format!("j{i}"), i)).collect());
    params.max_pending = 3;
    assert_eq!(
        ledger.enqueue_sets(params.clone()).await.unwrap().dropped,
        0
    );
    params.sets = vec![set("s", "j4", 4), set("s", "j5", 5), set("t", "x", 1)];
    let done = ledger.enqueue_sets(params).await.unwrap();
    assert_eq!((done.queued, done.dropped), (3, 2));
    assert_eq!(jtis(ledger.as_ref(), "s").await, ["j3", "j4", "j5"]);
    assert_eq!(jtis(ledger.as_ref(), "t").await, ["x"]);
    // Each newer SET pushes the oldest out.
    let mut params = enqueue(vec![set("s", "j6", 6)]);
    params.max_pending = 3;
    ledger.enqueue_sets(params).await.unwrap();
    assert_eq!(jtis(ledger.as_ref(), "s").await, ["j4", "j5", "j6"]);
}

pub(crate) async fn deleting_a_stream_drops_its_sets_and_sets_of_unknown_streams_are_ignored(
    backend: &dyn Backend,
) {
    let ledger = backend.open().await;
    ledger.create_stream(new_stream("s", "o")).await.unwrap();
    let done = ledger
        .enqueue_sets(enqueue(vec![set("s", "a", 1), set("gone", "a", 1)]))
        .await
        .unwrap();
    assert_eq!(done.queued, 1);
    assert!(jtis(ledger.as_ref(), "gone").await.is_empty());
    ledger.delete_stream("s").await.unwrap();
    assert!(jtis(ledger.as_ref(), "s").await.is_empty());
    // A new stream that reuses the id starts empty.
    ledger.create_stream(new_stream("s", "o")).await.unwrap();
    assert!(jtis(ledger.as_ref(), "s").await.is_empty());
    ledger
        .enqueue_sets(enqueue(vec![set("s", "a", 1)]))
        .await
        .unwrap();
    assert_eq!(jtis(ledger.as_ref(), "s").await, ["a"]);
}

pub(crate) async fn the_signal_cursor_only_moves_forward(backend: &dyn Backend) {
    let ledger = backend.open().await;
    assert_eq!(ledger.signal_cursor().await.unwrap(), 0);
    for (through, expected) in [(Some(5), 5), (Some(3), 5), (None, 5), (Some(9), 9)] {
        let mut params = enqueue(Vec::new());
        params.through_sequence = through;
        params.durable = false;
        ledger.enqueue_sets(params).await.unwrap();
        assert_eq!(ledger.signal_cursor().await.unwrap(), expected);
    }
    ledger.close().await.unwrap();
    drop(ledger);
    assert_eq!(backend.open().await.signal_cursor().await.unwrap(), 9);
}

pub(crate) async fn a_follower_does_not_queue_again_what_the_cursor_passed(backend: &dyn Backend) {
    let ledger = backend.open().await;
    ledger
        .create_stream(new_stream("s1", "spiffe://td/a"))
        .await
        .unwrap();
    let follower = |position: u64| {
        let mut params = enqueue(vec![set("s1", &format!("j{position}"), position)]);
        params.through_sequence = Some(position);
        params
    };
    assert_eq!(ledger.enqueue_sets(follower(5)).await.unwrap().queued, 1);
    let ack = AckParams {
        stream_id: "s1".into(),
        jtis: vec!["j5".into()],
    };
    assert_eq!(ledger.ack_sets(ack).await.unwrap(), 1);
    assert_eq!(
        ledger.enqueue_sets(follower(5)).await.unwrap().queued,
        0,
        "another replica's follower, behind: the SET was delivered already"
    );
    assert_eq!(ledger.enqueue_sets(follower(6)).await.unwrap().queued, 1);
    let verification = enqueue(vec![set("s1", "v1", 2)]);
    assert_eq!(
        ledger.enqueue_sets(verification).await.unwrap().queued,
        1,
        "a SET queued outside the follower is not held to the cursor"
    );
    assert_eq!(jtis(&*ledger, "s1").await, vec!["v1", "j6"]);
}

pub(crate) async fn a_lease_is_held_by_one_holder_until_it_expires(backend: &dyn Backend) {
    let ledger = backend.open().await;
    ledger.create_stream(new_stream("s", "o")).await.unwrap();
    let lease = |holder: &str, now_ms: i64| LeaseParams {
        stream_id: "s".into(),
        holder: holder.into(),
        now_ms,
        until_ms: now_ms + 1_000,
    };
    assert!(ledger.lease_stream(lease("r1", 0)).await.unwrap());
    assert!(!ledger.lease_stream(lease("r2", 500)).await.unwrap());
    assert!(
        ledger.lease_stream(lease("r1", 900)).await.unwrap(),
        "renewed"
    );
    assert!(!ledger.lease_stream(lease("r2", 1_800)).await.unwrap());
    assert!(
        ledger.lease_stream(lease("r2", 2_000)).await.unwrap(),
        "expired"
    );
    assert!(!ledger.lease_stream(lease("r1", 2_100)).await.unwrap());
    let unknown = LeaseParams {
        stream_id: "nope".into(),
        ..lease("r1", 0)
    };
    assert!(!ledger.lease_stream(unknown).await.unwrap());
}
