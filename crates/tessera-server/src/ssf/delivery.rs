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
    /// Bumped whenever SETs are queued for the stream.
    wake: watch::Sender<u64>,
    /// The running push task, for a push stream.
    push: Option<(watch::Sender<StreamConfig>, CancellationToken)>,
}

/// The delivery registry of one replica.
pub struct Deliveries {
    slots: Mutex<HashMap<String, Slot>>,
    push: Arc<PushContext>,
    /// Stops every push task at shutdown.
    stopping: CancellationToken,
    /// Tracks the push tasks, so shutdown can wait for them.
    tasks: TaskTracker,
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
            slots: Mutex::new(HashMap::new()),
            push: Arc::new(push),
            stopping,
            tasks,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the registry match `streams` (every stream that exists now): new streams get a
    /// slot (and a push task), changed ones their new configuration, gone ones are stopped.
    pub fn sync(&self, streams: &[(String, StreamConfig)]) {
        let mut slots = self.slots();
        slots.retain(|id, slot| {
            let keep = streams.iter().any(|(s, _)| s == id);
            if !keep && let Some((_, stop)) = &slot.push {
                stop.cancel();
            }
            keep
        });
        for (id, config) in streams {
            self.upsert_locked(&mut slots, id, config);
        }
    }

    /// Records the current configuration of one stream (after a create or an update).
    pub fn upsert(&self, stream_id: &str, config: &StreamConfig) {
        let mut slots = self.slots();
        self.upsert_locked(&mut slots, stream_id, config);
    }

    fn upsert_locked(
        &self,
        slots: &mut HashMap<String, Slot>,
        stream_id: &str,
        config: &StreamConfig,
    ) {
        let slot = slots.entry(stream_id.to_owned()).or_insert_with(|| Slot {
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
        if let Some(slot) = self.slots().remove(stream_id)
            && let Some((_, stop)) = slot.push
        {
            stop.cancel();
        }
    }

    /// Tells the stream's push task and long polls that SETs were queued.
    pub fn wake(&self, stream_id: &str) {
        if let Some(slot) = self.slots().get(stream_id) {
            slot.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Returns a receiver that changes when SETs are queued for the stream, or `None` when this
    /// replica does not know it (yet).
    pub fn waiter(&self, stream_id: &str) -> Option<watch::Receiver<u64>> {
        self.slots()
            .get(stream_id)
            .map(|slot| slot.wake.subscribe())
    }
}
