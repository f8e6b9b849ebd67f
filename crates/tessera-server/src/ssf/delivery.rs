//! Which streams this replica delivers, and the signals between the parts: one push task per
//! push stream ([`super::push`]), started, reconfigured and stopped as streams are created,
//! changed and deleted (here or, on a shared ledger, on another replica), and a wake-up per
//! stream that the follower rings when it queues SETs (push tasks and long polls listen).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::push::{PushContext, PushTask};
use super::stream::{Delivery, StreamConfig};

/// One stream's signals.
struct Slot {
    /// The registry's change count when a management request last set this slot: a sync from
    /// a stream list read before that must not undo it.
    changed_at: u64,
    /// Bumped whenever SETs are queued for the stream.
    wake: watch::Sender<u64>,
    /// The running push task, for a push stream.
    push: Option<(watch::Sender<StreamConfig>, CancellationToken)>,
}

/// The delivery registry of one replica.
pub struct Deliveries {
    slots: Mutex<Slots>,
    push: Arc<PushContext>,
    /// Stops every push task at shutdown.
    stopping: CancellationToken,
    /// Tracks the push tasks, so shutdown can wait for them.
    tasks: TaskTracker,
}

/// The slots and how many management changes they have seen.
#[derive(Default)]
struct Slots {
    by_stream: HashMap<String, Slot>,
    changes: u64,
    /// Streams deleted here, with the change count of their deletion, until a sync from a
    /// list read after it (an older list may still name them).
    deleted: HashMap<String, u64>,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries").finish_non_exhaustive()
    }
}

impl Deliveries {
    /// Returns an empty registry whose push tasks use `push`, stop with `stopping` and are
    /// tracked by `tasks`.
    pub fn new(push: PushContext, stopping: CancellationToken, tasks: TaskTracker) -> Self {
        Deliveries {
            slots: Mutex::new(Slots::default()),
            push: Arc::new(push),
            stopping,
            tasks,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns a mark to take before reading the stream list that will be given to
    /// [`Deliveries::sync`].
    pub fn mark(&self) -> u64 {
        self.slots().changes
    }

    /// Makes the registry match `streams` (every stream that existed when the list was read,
    /// after `mark`): new streams get a slot (and a push task), changed ones their new
    /// configuration, gone ones are stopped. Slots a management request changed since `mark`
    /// are left as they are (the list may predate the change).
    pub fn sync(&self, mark: u64, streams: &[(String, StreamConfig)]) {
        let mut slots = self.slots();
        slots.by_stream.retain(|id, slot| {
            let keep = slot.changed_at > mark || streams.iter().any(|(s, _)| s == id);
            if !keep && let Some((_, stop)) = &slot.push {
                stop.cancel();
            }
            keep
        });
        for (id, config) in streams {
            let newer = slots
                .by_stream
                .get(id)
                .is_some_and(|slot| slot.changed_at > mark);
            if !newer && !slots.deleted.contains_key(id) {
                self.upsert_locked(&mut slots.by_stream, id, config);
            }
        }
        slots.deleted.retain(|_, deleted_at| *deleted_at > mark);
    }

    /// Records the current configuration of one stream (after a create or an update).
    pub fn upsert(&self, stream_id: &str, config: &StreamConfig) {
        let mut slots = self.slots();
        slots.changes += 1;
        let changes = slots.changes;
        self.upsert_locked(&mut slots.by_stream, stream_id, config);
        if let Some(slot) = slots.by_stream.get_mut(stream_id) {
            slot.changed_at = changes;
        }
    }

    fn upsert_locked(
        &self,
        slots: &mut HashMap<String, Slot>,
        stream_id: &str,
        config: &StreamConfig,
    ) {
        let slot = slots.entry(stream_id.to_owned()).or_insert_with(|| Slot {
            changed_at: 0,
            wake: watch::channel(0).0,
            push: None,
        });
        let is_push = matches!(config.delivery, Delivery::Push { .. });
        match (&slot.push, is_push) {
            (Some((current, _)), true) => {
                current.send_if_modified(|c| {
                    let changed = c != config;
                    if changed {
                        *c = config.clone();
                    }
                    changed
                });
            }
            (Some((_, stop)), false) => {
                stop.cancel();
                slot.push = None;
            }
            (None, true) => {
                let (tx, rx) = watch::channel(config.clone());
                let stop = self.stopping.child_token();
                let task = PushTask {
                    stream_id: stream_id.to_owned(),
                    config: rx,
                    wake: slot.wake.subscribe(),
                    stop: stop.clone(),
                };
                self.tasks.spawn(Arc::clone(&self.push).run(task));
                slot.push = Some((tx, stop));
            }
            (None, false) => {}
        }
    }

    /// Stops delivering a deleted stream.
    pub fn remove(&self, stream_id: &str) {
        let mut slots = self.slots();
        slots.changes += 1;
        let changes = slots.changes;
        slots.deleted.insert(stream_id.to_owned(), changes);
        if let Some(slot) = slots.by_stream.remove(stream_id)
            && let Some((_, stop)) = slot.push
        {
            stop.cancel();
        }
    }

    /// Tells the stream's push task and long polls that SETs were queued.
    pub fn wake(&self, stream_id: &str) {
        if let Some(slot) = self.slots().by_stream.get(stream_id) {
            slot.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Returns a receiver that changes when SETs are queued for the stream, or `None` when this
    /// replica does not know it (yet).
    pub fn waiter(&self, stream_id: &str) -> Option<watch::Receiver<u64>> {
        self.slots()
            .by_stream
            .get(stream_id)
            .map(|slot| slot.wake.subscribe())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tessera_core::clock::SystemClock;
    use tessera_ledger::{RedbLedger, RedbOptions};

    use super::*;
    use crate::ssf::metrics::SsfMetrics;
    use crate::ssf::push::PushClient;
    use crate::ssf::stream::StreamStatus;

    fn registry(dir: &tempfile::TempDir) -> Deliveries {
        let ledger = RedbLedger::open(&dir.path().join("l.redb"), RedbOptions::default()).unwrap();
        let push = PushContext {
            client: PushClient::new(&[]).unwrap(),
            ledger: Arc::new(ledger),
            metrics: SsfMetrics::register(&mut prometheus_client::registry::Registry::default()),
            clock: Arc::new(SystemClock),
            max_backoff: std::time::Duration::from_secs(1),
            holder: "me".into(),
        };
        Deliveries::new(push, CancellationToken::new(), TaskTracker::new())
    }

    fn polled() -> StreamConfig {
        StreamConfig {
            aud: "spiffe://example.org/rp".into(),
            delivery: Delivery::Poll,
            events_requested: None,
            events_delivered: Vec::new(),
            description: None,
            status: StreamStatus::Enabled,
            reason: None,
        }
    }

    #[test]
    fn a_stale_stream_list_neither_drops_a_new_stream_nor_brings_back_a_deleted_one() {
        let dir = tempfile::tempdir().unwrap();
        let deliveries = registry(&dir);
        deliveries.sync(deliveries.mark(), &[("old".into(), polled())]);
        let mark = deliveries.mark(); // the follower starts reading the list here
        deliveries.upsert("new", &polled());
        deliveries.remove("old");
        deliveries.sync(mark, &[("old".into(), polled())]); // read before both changes
        assert!(deliveries.waiter("new").is_some());
        assert!(deliveries.waiter("old").is_none());
        // A list read after the changes is the truth.
        deliveries.sync(deliveries.mark(), &[]);
        assert!(deliveries.waiter("new").is_none());
    }

    #[test]
    fn a_wake_reaches_the_waiters_of_its_stream_only() {
        let dir = tempfile::tempdir().unwrap();
        let deliveries = registry(&dir);
        deliveries.upsert("a", &polled());
        deliveries.upsert("b", &polled());
        let (mut a, b) = (
            deliveries.waiter("a").unwrap(),
            deliveries.waiter("b").unwrap(),
        );
        deliveries.wake("a");
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.borrow_and_update();
        assert!(!a.has_changed().unwrap());
    }
}
