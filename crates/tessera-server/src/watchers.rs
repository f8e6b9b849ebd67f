//! Who may hold a watch stream, and when a replay may read. Relying parties' `WatchRevocations`
//! streams and admins' `WatchEvents` streams draw from separate pools, and one identity holds
//! at most a capped number of streams in each pool, so neither a flood of one kind of stream
//! nor one identity can lock the others out; past a limit, a stream is refused at once.
//!
//! Replays read the ledger, so only a few run at a time; the others wait their turn, up to
//! [`WatchLimits::replay_wait`], and are refused past it. Waiting (rather than refusing at
//! once) is deliberate: a burst of reconnects after a restart or a network blip is the normal
//! case and should be served in turn, not sent back to retry all at once. The wait is bounded
//! by the watcher pools (a waiting replay holds its stream's slot) and in time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of `[server] max_revocation_watchers`.
pub const DEFAULT_MAX_REVOCATION_WATCHERS: usize = 10_000;
/// Default of `[server] max_event_watchers`.
pub const DEFAULT_MAX_EVENT_WATCHERS: usize = 1_000;
/// Default of `[server] max_replays`.
pub const DEFAULT_MAX_REPLAYS: usize = 4;
/// How long a replay waits for its turn before its stream is refused.
pub const DEFAULT_REPLAY_WAIT: Duration = Duration::from_secs(10);

/// Which pool a stream draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    /// Relying parties' `Broker/WatchRevocations` streams.
    Revocations,
    /// Admins' `Admin/WatchEvents` streams.
    Events,
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pool::Revocations => "WatchRevocations",
            Pool::Events => "WatchEvents",
        })
    }
}

/// The watch limits of `[server]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    /// `WatchRevocations` streams open at once (`max_revocation_watchers`).
    pub revocations: usize,
    /// `WatchEvents` streams open at once (`max_event_watchers`).
    pub events: usize,
    /// Streams one identity may hold in each pool (`max_watchers_per_identity`); `None`
    /// means a tenth of the pool, at least 1.
    pub per_identity: Option<usize>,
    /// Replays reading at once (`max_replays`).
    pub replays: usize,
    /// How long a replay waits for its turn.
    pub replay_wait: Duration,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            revocations: DEFAULT_MAX_REVOCATION_WATCHERS,
            events: DEFAULT_MAX_EVENT_WATCHERS,
            per_identity: None,
            replays: DEFAULT_MAX_REPLAYS,
            replay_wait: DEFAULT_REPLAY_WAIT,
        }
    }
}

impl WatchLimits {
    /// Returns how many streams of `pool` one identity may hold.
    pub fn per_identity_in(&self, pool: Pool) -> usize {
        let size = match pool {
            Pool::Revocations => self.revocations,
            Pool::Events => self.events,
        };
        self.per_identity.unwrap_or((size / 10).max(1))
    }
}

/// Why a watch stream is refused or ended before its replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchRefusal {
    #[error("all {max} {pool} streams are taken; retry later")]
    PoolFull { pool: Pool, max: usize },
    #[error(
        "{identity} already holds {max} {pool} streams, the most one identity may; close one \
         before opening another"
    )]
    IdentityFull {
        pool: Pool,
        identity: String,
        max: usize,
    },
    #[error("too many watch replays are running; reconnect shortly with since_sequence = {resume}")]
    ReplaysBusy { resume: u64 },
    #[error(
        "since_sequence {since} is beyond the last sequence, {last}: resume with since_sequence \
         at most {last}"
    )]
    BeyondLast { since: u64, last: u64 },
}

/// Streams held per identity in one pool.
type Held = Arc<Mutex<HashMap<Box<str>, usize>>>;

/// One pool: its slots and who holds them.
#[derive(Debug, Clone)]
struct Slots {
    max: usize,
    per_identity: usize,
    permits: Arc<Semaphore>,
    held: Held,
}

impl Slots {
    fn new(pool: Pool, limits: &WatchLimits) -> Self {
        let max = match pool {
            Pool::Revocations => limits.revocations,
            Pool::Events => limits.events,
        };
        Slots {
            max,
            per_identity: limits.per_identity_in(pool),
            permits: Arc::new(Semaphore::new(max)),
            held: Arc::default(),
        }
    }
}

/// A stream's place in its pool; released when dropped.
#[derive(Debug)]
pub struct WatchSlot {
    _permit: OwnedSemaphorePermit,
    held: Held,
    identity: Box<str>,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.identity);
            }
        }
    }
}

/// The watcher pools and the replay gate of one server.
#[derive(Debug, Clone)]
pub struct Watchers {
    revocations: Slots,
    events: Slots,
    /// One replay gate per pool, so admins' event replays never make relying parties wait.
    revocation_replays: Arc<Semaphore>,
    event_replays: Arc<Semaphore>,
    replay_wait: Duration,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers::new(WatchLimits::default())
    }
}

impl Watchers {
    /// Pools and a replay gate sized by `limits`.
    pub fn new(limits: WatchLimits) -> Self {
        Watchers {
            revocations: Slots::new(Pool::Revocations, &limits),
            events: Slots::new(Pool::Events, &limits),
            revocation_replays: Arc::new(Semaphore::new(limits.replays.max(1))),
            event_replays: Arc::new(Semaphore::new(limits.replays.max(1))),
            replay_wait: limits.replay_wait,
        }
    }

    /// Admits one stream of `identity` into `pool`; returns its slot. Fails at once when the
    /// identity already holds its share of the pool, or the pool is full.
    pub fn admit(&self, pool: Pool, identity: &str) -> Result<WatchSlot, WatchRefusal> {
        let slots = match pool {
            Pool::Revocations => &self.revocations,
            Pool::Events => &self.events,
        };
        let mut held = slots.held.lock().unwrap_or_else(PoisonError::into_inner);
        let now = held.get(identity).copied().unwrap_or(0);
        if now >= slots.per_identity {
            return Err(WatchRefusal::IdentityFull {
                pool,
                identity: identity.to_owned(),
                max: slots.per_identity,
            });
        }
        let permit = Arc::clone(&slots.permits)
            .try_acquire_owned()
            .map_err(|_| WatchRefusal::PoolFull {
                pool,
                max: slots.max,
            })?;
        held.insert(identity.into(), now + 1);
        Ok(WatchSlot {
            _permit: permit,
            held: Arc::clone(&slots.held),
            identity: identity.into(),
        })
    }

    /// Waits for a turn of `pool`'s replay gate to read a replay (one ledger read, or one rule
    /// snapshot); the turn ends when the permit is dropped. Fails with `ReplaysBusy` (naming
    /// `resume`, where the watcher should resume) when no turn came within the replay wait.
    pub async fn replay_turn(
        &self,
        pool: Pool,
        resume: u64,
    ) -> Result<OwnedSemaphorePermit, WatchRefusal> {
        let gate = match pool {
            Pool::Revocations => &self.revocation_replays,
            Pool::Events => &self.event_replays,
        };
        let turn = Arc::clone(gate).acquire_owned();
        match tokio::time::timeout(self.replay_wait, turn).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one is as good as busy.
            Ok(Err(_)) | Err(_) => Err(WatchRefusal::ReplaysBusy { resume }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "spiffe://example.org/a";
    const B: &str = "spiffe://example.org/b";

    fn limits(revocations: usize, events: usize, per_identity: Option<usize>) -> WatchLimits {
        WatchLimits {
            revocations,
            events,
            per_identity,
            ..WatchLimits::default()
        }
    }

    #[test]
    fn a_full_event_pool_does_not_stop_a_relying_party_from_watching() {
        let watchers = Watchers::new(limits(2, 2, Some(2)));
        let _held: Vec<WatchSlot> = (0..2)
            .map(|_| watchers.admit(Pool::Events, A).unwrap())
            .collect();
        assert_eq!(
            watchers.admit(Pool::Events, B).unwrap_err(),
            WatchRefusal::PoolFull {
                pool: Pool::Events,
                max: 2
            }
        );
        assert!(watchers.admit(Pool::Revocations, A).is_ok());
        assert!(watchers.admit(Pool::Revocations, B).is_ok());
    }

    #[test]
    fn one_identity_gets_at_most_its_share_and_another_is_still_admitted() {
        let watchers = Watchers::new(limits(10, 10, Some(3)));
        let held: Vec<WatchSlot> = (0..3)
            .map(|_| watchers.admit(Pool::Revocations, A).unwrap())
            .collect();
        assert_eq!(
            watchers.admit(Pool::Revocations, A).unwrap_err(),
            WatchRefusal::IdentityFull {
                pool: Pool::Revocations,
                identity: A.into(),
                max: 3
            }
        );
        assert!(watchers.admit(Pool::Revocations, B).is_ok());
        drop(held);
        assert!(
            watchers.admit(Pool::Revocations, A).is_ok(),
            "released slots count no more"
        );
    }

    #[test]
    fn a_refused_identity_does_not_take_a_slot_of_the_pool() {
        let watchers = Watchers::new(limits(2, 1, Some(1)));
        let _a = watchers.admit(Pool::Revocations, A).unwrap();
        for _ in 0..5 {
            assert!(watchers.admit(Pool::Revocations, A).is_err());
        }
        assert!(watchers.admit(Pool::Revocations, B).is_ok());
    }

    #[test]
    fn the_default_share_is_a_tenth_of_the_pool_and_at_least_one() {
        assert_eq!(
            limits(10_000, 5, None).per_identity_in(Pool::Revocations),
            1_000
        );
        assert_eq!(limits(10_000, 5, None).per_identity_in(Pool::Events), 1);
        assert_eq!(limits(10_000, 5, Some(7)).per_identity_in(Pool::Events), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replay_waits_for_a_turn_and_is_refused_past_the_wait() {
        let watchers = Watchers::new(WatchLimits {
            replays: 1,
            replay_wait: Duration::from_secs(10),
            ..WatchLimits::default()
        });
        let first = watchers.replay_turn(Pool::Events, 0).await.unwrap();
        let waiting = {
            let watchers = watchers.clone();
            tokio::spawn(async move { watchers.replay_turn(Pool::Events, 7).await })
        };
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiting.await.unwrap().is_ok(), "served once the turn ended");
        let _busy = watchers.replay_turn(Pool::Events, 0).await.unwrap();
        let _relying_party = watchers
            .replay_turn(Pool::Revocations, 3)
            .await
            .expect("admins' replays never hold up relying parties'");
        assert_eq!(
            watchers.replay_turn(Pool::Events, 42).await.unwrap_err(),
            WatchRefusal::ReplaysBusy { resume: 42 },
            "paused time runs to the end of the wait"
        );
    }
}
