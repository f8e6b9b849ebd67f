//! Event streams: admit a watcher into its pool, replay what it missed ([`super::replay`]), then
//! stream live events. A watcher never slows minting or other watchers: live events reach it
//! through a bounded broadcast buffer, and one that falls too far behind is told where to resume
//! and closed.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tessera_core::domain::{Event, RevocationRule};
use tessera_core::revocation::RuleLog;
use tessera_ledger::Ledger;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::replay::{ReplaySource, unreadable};
use crate::api::status::{self, WatchEnd};
use crate::metrics::Metrics;
use crate::refusal::Refusal;
use crate::watchers::{Pool, WatchRefusal, WatchSlot, Watchers};

/// Events sent to one watcher that it has not read yet, at most.
const PER_WATCHER_BUFFER: usize = 1024;

/// A stream of wire messages.
pub type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Turns a live (or replayed) event into the message to send, or `None` to skip it.
pub type Convert<T> = Box<dyn Fn(&Event) -> Option<T> + Send + Sync>;

/// What a watcher is sent before live events.
#[derive(Debug)]
pub enum Replay<T> {
    /// Every retained event after `since` (admins' `WatchEvents`).
    Events,
    /// Every rule in force after `since`, made into messages by `rule`, then the marker
    /// `caught_up(target)` saying every event up to `target` (the last one committed when the
    /// stream opened) has been sent (relying parties' `WatchRevocations`).
    Rules {
        rule: fn(&RevocationRule) -> T,
        caught_up: fn(u64) -> T,
    },
}

/// One watch to open.
pub struct WatchRequest<T> {
    /// The pool the stream draws from.
    pub pool: Pool,
    /// Who watches (a SPIFFE ID): holds at most its share of the pool.
    pub identity: String,
    pub since: u64,
    pub convert: Convert<T>,
    pub replay: Replay<T>,
}

impl<T> std::fmt::Debug for WatchRequest<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchRequest")
            .field("pool", &self.pool)
            .field("identity", &self.identity)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

/// What opening a watch stream needs: the pools, the ledger and the rule log to replay from,
/// the shutdown signal and the metrics.
#[derive(Clone)]
pub struct Watches {
    pub watchers: Watchers,
    pub ledger: Arc<dyn Ledger>,
    /// The rules in force by sequence (kept by the revoker), for `WatchRevocations` replays.
    pub rules: Arc<RuleLog>,
    /// Ends every stream (with `UNAVAILABLE`) when the server shuts down.
    pub stopping: tokio_util::sync::CancellationToken,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches").finish_non_exhaustive()
    }
}

impl Watches {
    /// Opens a [`watch`], taking a slot of `request.pool` for the stream's lifetime. Fails when
    /// the pool or the identity's share of it is full (`RESOURCE_EXHAUSTED`), when `since` is
    /// beyond the last sequence (`OUT_OF_RANGE`), or when the ledger cannot be read.
    pub async fn open<T: Send + 'static>(
        &self,
        request: WatchRequest<T>,
    ) -> Result<WatchStream<T>, Refusal> {
        let slot = self
            .watchers
            .admit(request.pool, &request.identity)
            .map_err(|e| Refusal::from(&e))?;
        let last = self
            .ledger
            .last_sequence()
            .await
            .map_err(|e| Refusal::from(&e))?;
        if request.since > last {
            let beyond = WatchRefusal::BeyondLast {
                since: request.since,
                last,
            };
            return Err(Refusal::from(&beyond));
        }
        Ok(watch(WatchParams {
            _slot: slot,
            watches: self.clone(),
            since: request.since,
            convert: request.convert,
            replay: request.replay,
        }))
    }
}

/// Parameters of [`watch`].
struct WatchParams<T> {
    /// Held for the stream's lifetime (its pool's limits).
    _slot: WatchSlot,
    watches: Watches,
    since: u64,
    convert: Convert<T>,
    replay: Replay<T>,
}

impl<T> WatchParams<T> {
    fn source(&self) -> ReplaySource<'_> {
        ReplaySource {
            ledger: self.watches.ledger.as_ref(),
            rules: &self.watches.rules,
            watchers: &self.watches.watchers,
        }
    }
}

/// Returns a stream of the replay after `since`, then live events, in sequence order without
/// gaps or repeats. Ends with `ABORTED` (naming the sequence to resume from) if the watcher
/// falls too far behind, `RESOURCE_EXHAUSTED` if its replay waited too long for a turn, or
/// `UNAVAILABLE` if the ledger cannot be read or the server shuts down.
fn watch<T: Send + 'static>(p: WatchParams<T>) -> WatchStream<T> {
    let (tx, rx) = mpsc::channel(PER_WATCHER_BUFFER);
    // Subscribe before replaying, so nothing committed meanwhile is missed.
    let live = p.watches.ledger.subscribe();
    tokio::spawn(async move {
        let metrics = Arc::clone(&p.watches.metrics);
        metrics.watchers.inc();
        if let Err(end) = forward(&p, live, &tx).await {
            let _ = tx.send(Err(status::watch_end(end, &metrics))).await;
        }
        metrics.watchers.dec();
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Sends replayed then live events until the watcher goes away (`Ok`) or cannot continue.
async fn forward<T>(
    p: &WatchParams<T>,
    live: broadcast::Receiver<Event>,
    tx: &mpsc::Sender<Result<T, Status>>,
) -> Result<(), WatchEnd> {
    let replayed = match &p.replay {
        Replay::Events => replay_events(p, tx).await?,
        Replay::Rules { rule, caught_up } => replay_rules(p, tx, *rule, *caught_up).await?,
    };
    match replayed {
        Some(last) => stream_live(p, live, tx, last).await,
        None => Ok(()),
    }
}

/// Sends every rule after `since` up to the last sequence committed now, then the caught-up
/// marker. Returns that sequence, or `None` when the watcher went away. Fails when the ledger
/// cannot be read or no replay turn came in time.
async fn replay_rules<T>(
    p: &WatchParams<T>,
    tx: &mpsc::Sender<Result<T, Status>>,
    rule: fn(&RevocationRule) -> T,
    caught_up: fn(u64) -> T,
) -> Result<Option<u64>, WatchEnd> {
    // Read after subscribing: whatever is committed later arrives live.
    let target = p.watches.ledger.last_sequence().await.map_err(unreadable)?;
    for r in p.source().rules(p.since, target).await? {
        if tx.send(Ok(rule(&r))).await.is_err() {
            return Ok(None);
        }
    }
    if tx.send(Ok(caught_up(target))).await.is_err() {
        return Ok(None);
    }
    Ok(Some(target.max(p.since)))
}

/// Sends every retained event after `since`, page by page. Returns the last sequence replayed,
/// or `None` when the watcher went away. Fails when the ledger cannot be read or no replay
/// turn came in time.
async fn replay_events<T>(
    p: &WatchParams<T>,
    tx: &mpsc::Sender<Result<T, Status>>,
) -> Result<Option<u64>, WatchEnd> {
    let mut last = p.since;
    loop {
        let page = p.source().events(last).await?;
        let Some(end) = page.last().map(|e| e.sequence) else {
            return Ok(Some(last));
        };
        for event in &page {
            if let Some(message) = (p.convert)(event)
                && tx.send(Ok(message)).await.is_err()
            {
                return Ok(None);
            }
        }
        last = end;
    }
}

/// Sends live events after `last` until the watcher goes away (`Ok`) or cannot continue.
async fn stream_live<T>(
    p: &WatchParams<T>,
    mut live: broadcast::Receiver<Event>,
    tx: &mpsc::Sender<Result<T, Status>>,
    mut last: u64,
) -> Result<(), WatchEnd> {
    loop {
        let received = tokio::select! {
            // The client went away: free its slot now, not at the next event.
            () = tx.closed() => return Ok(()),
            () = p.watches.stopping.cancelled() => return Err(WatchEnd::ShuttingDown { last }),
            received = live.recv() => received,
        };
        match received {
            Ok(event) if event.sequence <= last => {}
            Ok(event) => {
                last = event.sequence;
                if let (Some(committed), Some(_)) = (event.committed, &event.revocation) {
                    p.watches
                        .metrics
                        .revoke_delivery_seconds
                        .observe(committed.elapsed().as_secs_f64());
                }
                if let Some(message) = (p.convert)(&event)
                    && tx.send(Ok(message)).await.is_err()
                {
                    return Ok(());
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                return Err(WatchEnd::FellBehind { last });
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}
