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
    /// Opens a [`watch`] from `since`, taking one watcher slot for the stream's lifetime.
    /// Fails with an `Overloaded` refusal when every slot is taken.
    pub fn open<T: Send + 'static>(
        &self,
        since: u64,
        convert: Convert<T>,
    ) -> Result<WatchStream<T>, Refusal> {
        let permit = self.limits.watcher()?;
        Ok(watch(WatchParams {
            _permit: permit,
            ledger: Arc::clone(&self.ledger),
            stopping: self.stopping.clone(),
            metrics: Arc::clone(&self.metrics),
            since,
            convert,
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
}

impl<T> std::fmt::Debug for WatchParams<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchParams")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

/// Returns a stream of every retained event after `since`, then live events, in sequence
/// order without gaps or repeats. Ends with `ABORTED` (naming the sequence to resume from) if
/// the watcher falls too far behind, or `UNAVAILABLE` if the ledger cannot be read.
fn watch<T: Send + 'static>(p: WatchParams<T>) -> WatchStream<T> {
    let (tx, rx) = mpsc::channel(PER_WATCHER_BUFFER);
    // Subscribe before replaying, so nothing committed meanwhile is missed.
    let live = p.ledger.subscribe();
    tokio::spawn(async move {
        p.metrics.watchers.inc();
        if let Err(status) = forward(&p, live, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
        p.metrics.watchers.dec();
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Sends replayed then live events until the watcher goes away (`Ok`) or cannot continue.
async fn forward<T>(
    p: &WatchParams<T>,
    mut live: broadcast::Receiver<Event>,
    tx: &mpsc::Sender<Result<T, Status>>,
) -> Result<(), Status> {
    let mut last = p.since;
    loop {
        let page = p
            .ledger
            .events_since(last, REPLAY_PAGE)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "replaying events failed");
                Status::unavailable("events cannot be read; retry")
            })?;
        let Some(end) = page.last().map(|e| e.sequence) else {
            break;
        };
        for event in &page {
            if let Some(message) = (p.convert)(event)
                && tx.send(Ok(message)).await.is_err()
            {
                return Ok(());
            }
        }
        last = end;
    }
    loop {
        let received = tokio::select! {
            // The client went away: free its slot now, not at the next event.
            () = tx.closed() => return Ok(()),
            () = p.stopping.cancelled() => {
                return Err(Status::unavailable(format!(
                    "the broker is shutting down; resume with since_sequence = {last}"
                )));
            }
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
                return Err(Status::aborted(format!(
                    "this watcher fell behind; resume with since_sequence = {last}"
                )));
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}
