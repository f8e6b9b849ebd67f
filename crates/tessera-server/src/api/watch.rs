//! Event streams: replay what a watcher missed from the ledger, then stream live events.
//! A watcher never slows minting or other watchers: live events reach it through a bounded
//! broadcast buffer, and one that falls too far behind is told where to resume and closed.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use tessera_core::domain::Event;
use tessera_ledger::Ledger;

use crate::api::status::{self, WatchEnd};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::refusal::Refusal;

/// Events sent to one watcher that it has not read yet, at most.
const PER_WATCHER_BUFFER: usize = 1024;
/// Events read from the ledger per replay query.
const REPLAY_PAGE: usize = 1000;

/// A stream of wire messages.
pub type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Turns an event into the message to send, or `None` to skip it.
pub type Convert<T> = Box<dyn Fn(&Event) -> Option<T> + Send + Sync>;

/// Makes the message that tells a watcher every event up to the given sequence (the last one
/// committed when its stream opened) has been sent.
pub type CaughtUp<T> = Box<dyn Fn(u64) -> T + Send + Sync>;

/// What opening a watch stream needs: one home for the watcher slots, the ledger, the
/// shutdown signal and the metrics.
#[derive(Clone)]
pub struct Watches {
    pub limits: Limits,
    pub ledger: Arc<dyn Ledger>,
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
    /// Opens a [`watch`] from `since`, taking one watcher slot for the stream's lifetime; sends
    /// the `caught_up` marker, when given, once the replay is complete. Fails with an
    /// `Overloaded` refusal when every slot is taken.
    pub fn open<T: Send + 'static>(
        &self,
        since: u64,
        convert: Convert<T>,
        caught_up: Option<CaughtUp<T>>,
    ) -> Result<WatchStream<T>, Refusal> {
        let permit = self.limits.watcher()?;
        Ok(watch(WatchParams {
            _permit: permit,
            ledger: Arc::clone(&self.ledger),
            stopping: self.stopping.clone(),
            metrics: Arc::clone(&self.metrics),
            since,
            convert,
            caught_up,
        }))
    }
}

/// Parameters of [`watch`].
struct WatchParams<T> {
    /// Held for the stream's lifetime (the watcher limit).
    _permit: tokio::sync::OwnedSemaphorePermit,
    ledger: Arc<dyn Ledger>,
    /// Ends the stream (with `UNAVAILABLE`) when the server shuts down.
    stopping: tokio_util::sync::CancellationToken,
    metrics: Arc<Metrics>,
    since: u64,
    convert: Convert<T>,
    caught_up: Option<CaughtUp<T>>,
}

impl<T> std::fmt::Debug for WatchParams<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchParams")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

/// Returns a stream of every retained event after `since`, then (once every event committed
/// when the stream opened was sent) the caught-up marker if the watch has one, then live
/// events, in sequence order without gaps or repeats. Ends with `ABORTED` (naming the sequence
/// to resume from) if the watcher falls too far behind, or `UNAVAILABLE` if the ledger cannot be
/// read or the server shuts down.
fn watch<T: Send + 'static>(p: WatchParams<T>) -> WatchStream<T> {
    let (tx, rx) = mpsc::channel(PER_WATCHER_BUFFER);
    // Subscribe before replaying, so nothing committed meanwhile is missed.
    let live = p.ledger.subscribe();
    tokio::spawn(async move {
        p.metrics.watchers.inc();
        if let Err(end) = forward(&p, live, &tx).await {
            let _ = tx.send(Err(status::watch_end(end))).await;
        }
        p.metrics.watchers.dec();
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Sends replayed then live events until the watcher goes away (`Ok`) or cannot continue.
async fn forward<T>(
    p: &WatchParams<T>,
    live: broadcast::Receiver<Event>,
    tx: &mpsc::Sender<Result<T, Status>>,
) -> Result<(), WatchEnd> {
    match replay(p, tx).await? {
        Some(last) => stream_live(p, live, tx, last).await,
        None => Ok(()),
    }
}

/// Sends every retained event after `since`, and the caught-up marker (if any) once the replay
/// has reached the last sequence committed when it started. Returns the last sequence replayed,
/// or `None` when the watcher went away. Fails when the ledger cannot be read.
async fn replay<T>(
    p: &WatchParams<T>,
    tx: &mpsc::Sender<Result<T, Status>>,
) -> Result<Option<u64>, WatchEnd> {
    // Read after subscribing: whatever is committed later arrives live, or in a later page.
    let target = p.ledger.last_sequence().await.map_err(unreadable)?;
    let mut marker = p.caught_up.as_ref();
    let mut last = p.since;
    loop {
        if last >= target
            && let Some(make) = marker.take()
            && tx.send(Ok(make(target))).await.is_err()
        {
            return Ok(None);
        }
        let page = p
            .ledger
            .events_since(last, REPLAY_PAGE)
            .await
            .map_err(unreadable)?;
        let Some(end) = page.last().map(|e| e.sequence) else {
            // Nothing more retained: whatever the target was, it has been sent.
            if let Some(make) = marker.take()
                && tx.send(Ok(make(target))).await.is_err()
            {
                return Ok(None);
            }
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

/// Logs a failed ledger read; returns how the stream ends.
fn unreadable(error: tessera_ledger::LedgerError) -> WatchEnd {
    tracing::warn!(error = %error, "replaying events failed");
    WatchEnd::Unreadable
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
            () = p.stopping.cancelled() => return Err(WatchEnd::ShuttingDown { last }),
            received = live.recv() => received,
        };
        match received {
            Ok(event) if event.sequence <= last => {}
            Ok(event) => {
                last = event.sequence;
                if let (Some(committed), Some(_)) = (event.committed, &event.revocation) {
                    p.metrics
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
