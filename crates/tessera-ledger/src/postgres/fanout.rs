//! Fan-out of committed events to this process's subscribers, whichever replica committed
//! them. The [`Publisher`] owns `last_published` and sends events strictly in sequence order;
//! it learns that there is something to send from this replica's writer (its batches, sent
//! as they are, without a read, when they follow what was published), from the [`Listener`]
//! (a dedicated connection that LISTENs for the NOTIFY of every committing transaction), and
//! from a slow poll. Each time it reads `events_since(last_published)` until it is caught up,
//! so a lost notification or a lost connection delays an event but never loses it.

use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connect::StorageContext;
use super::writer::Committed;
use super::{EVENTS_CHANNEL, connect, reads};
use crate::{Event, LedgerError};

/// Events read per query while catching up.
const CHUNK: usize = 1024;
/// First and longest wait before reconnecting the listener.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the publisher should look for new events.
#[derive(Debug)]
pub(super) enum Wake {
    /// A replica committed events up to this sequence.
    Notified(u64),
    /// The listener (re)connected: notifications may have been missed.
    Reconnected,
}

/// Publishes committed events in sequence order (see the module doc).
pub(super) struct Publisher {
    pub pool: Pool,
    pub events: broadcast::Sender<Event>,
    pub last_published: u64,
    /// This replica's committed batches.
    pub local: mpsc::UnboundedReceiver<Committed>,
    pub wakes: mpsc::UnboundedReceiver<Wake>,
    /// Interval of the safety-net poll.
    pub poll: Duration,
    pub query_timeout: Duration,
}

impl Publisher {
    /// Publishes until the task is aborted (when the ledger is dropped).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut local_open, mut wakes_open) = (true, true);
        loop {
            tokio::select! {
                biased;
                batch = self.local.recv(), if local_open => match batch {
                    Some(batch) => self.publish_local(batch).await,
                    None => local_open = false,
                },
                wake = self.wakes.recv(), if wakes_open => match wake {
                    Some(wake) => self.on_wake(wake).await,
                    None => wakes_open = false,
                },
                _ = tick.tick() => self.catch_up().await,
            }
        }
    }

    /// Catches up unless every pending wake names events already published.
    async fn on_wake(&mut self, first: Wake) {
        let mut needed = self.wanted(&first);
        while let Ok(wake) = self.wakes.try_recv() {
            needed |= self.wanted(&wake);
        }
        if needed {
            self.catch_up().await;
        }
    }

    fn wanted(&self, wake: &Wake) -> bool {
        match wake {
            Wake::Notified(sequence) => *sequence > self.last_published,
            Wake::Reconnected => true,
        }
    }

    /// Publishes a batch this replica committed: directly when it follows what was
    /// published, after catching up from the database when other replicas committed in
    /// between (they committed first: sequences commit in order).
    async fn publish_local(&mut self, batch: Committed) {
        let Some(first) = batch.events.first().map(|e| e.sequence) else {
            return;
        };
        if first > self.last_published.saturating_add(1) {
            self.catch_up().await;
        }
        if first > self.last_published.saturating_add(1) {
            return; // still behind (the database cannot be read): the poll catches up
        }
        for mut event in batch.events {
            if event.sequence > self.last_published {
                event.committed = Some(batch.at);
                self.send(event);
            }
        }
    }

    fn send(&mut self, event: Event) {
        self.last_published = event.sequence;
        let _ = self.events.send(event); // no subscriber is not an error
    }

    /// Reads and publishes every event after `last_published`; on a failed read, logs and
    /// leaves the rest to the next wake or poll.
    async fn catch_up(&mut self) {
        loop {
            let since = self.last_published;
            let read = connect::timed(self.query_timeout, "catching up on events", async {
                let client = connect::client(&self.pool, "catching up on events").await?;
                reads::events_since(&client, since, CHUNK).await
            })
            .await;
            let events = match read {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(error = %err, since, "cannot read ledger events; will retry");
                    return;
                }
            };
            let (n, now) = (events.len(), std::time::Instant::now());
            for mut event in events {
                if event.sequence > self.last_published {
                    event.committed = Some(now);
                    self.send(event);
                }
            }
            if n < CHUNK {
                return;
            }
        }
    }
}

/// Returns the last sequence a notification announces, or `None` when this replica (`origin`)
/// sent it. A payload that cannot be read counts as foreign and wakes a full catch-up.
fn foreign(payload: &str, origin: &str) -> Option<u64> {
    let (last, from) = payload.split_once(' ').unwrap_or((payload, ""));
    if from == origin {
        return None;
    }
    Some(last.parse().unwrap_or(u64::MAX))
}

/// Holds a dedicated connection that LISTENs on [`EVENTS_CHANNEL`], reconnecting with
/// backoff, and wakes the publisher on every notification and every (re)connection.
pub(super) struct Listener {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub wakes: mpsc::UnboundedSender<Wake>,
    /// This replica's id: its own commits' notifications are skipped, since its writer hands
    /// those batches to the publisher directly (a read per local commit would only cost).
    pub origin: String,
}

impl Listener {
    /// Listens until the publisher is gone.
    pub async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.listen().await {
                Ok(()) => backoff = MIN_BACKOFF,
                Err(err) => tracing::warn!(error = %err, "ledger event listener disconnected"),
            }
            if self.wakes.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects, LISTENs, and forwards notifications until the connection ends (`Ok` when it
    /// closed after LISTEN succeeded). Fails with `Storage` when it cannot connect or listen,
    /// or the connection breaks.
    async fn listen(&self) -> Result<(), LedgerError> {
        const OP: &str = "listening for ledger events";
        let (client, mut connection) = self.config.connect(self.tls.clone()).await.ctx(OP)?;
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        let sql = format!("LISTEN {EVENTS_CHANNEL}");
        let listen = client.batch_execute(&sql);
        tokio::pin!(listen);
        let mut listening = false;
        loop {
            tokio::select! {
                done = &mut listen, if !listening => {
                    done.ctx(OP)?;
                    listening = true;
                    let _ = self.wakes.send(Wake::Reconnected);
                }
                message = messages.next() => match message {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if let Some(last) = foreign(n.payload(), &self.origin) {
                            let _ = self.wakes.send(Wake::Notified(last));
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e).ctx(OP),
                    None if listening => return Ok(()),
                    None => return Err(LedgerError::Storage(format!("{OP}: connection closed"))),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::foreign;

    #[test]
    fn a_replica_skips_its_own_notifications_and_follows_everyone_elses() {
        assert_eq!(foreign("42 a1b2", "a1b2"), None);
        assert_eq!(foreign("42 c3d4", "a1b2"), Some(42));
        assert_eq!(
            foreign("42", "a1b2"),
            Some(42),
            "an older replica's payload"
        );
        assert_eq!(foreign("garbage", "a1b2"), Some(u64::MAX));
    }
}
