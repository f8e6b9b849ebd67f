//! Turns committed revocations into queued SETs: follows the ledger's events (this replica's
//! and, on a shared ledger, every other's), and for each `revoked` event queues one SET per
//! stream that asked for its event type and was created before it. Never on the revoke path:
//! a Revoke returns once its rule is durable, and this task picks it up from the event.
//!
//! Queueing moves the ledger's signal cursor in the same transaction. At start, and after the
//! subscription lags, the rules after the cursor are queued again from the ledger's rules (the
//! SET jti is derived from stream and revocation, so a SET already queued is not queued twice).
//! Queueing does not wait for an fsync: a crash loses the cursor with the SETs, and the start
//! after it queues them again from the durable rules.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::clock::SharedClock;
use tessera_core::domain::{Event, EventKind, RevocationRule, Selector};
use tessera_ledger::{EnqueueParams, Ledger, LedgerError, NewSet};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use super::delivery::Deliveries;
use super::events::{RevocationSet, SetBuilder};
use super::metrics::SsfMetrics;
use super::stream::{StreamConfig, StreamStatus};

/// Rules queued in one transaction at most.
const BATCH: usize = 256;
/// How often the stream list is re-read (streams created or deleted on other replicas) and a
/// failed queueing retried.
const RESYNC: Duration = Duration::from_secs(10);

/// The follower and what it uses.
pub struct Follower {
    pub ledger: Arc<dyn Ledger>,
    pub sets: Arc<SetBuilder>,
    pub deliveries: Arc<Deliveries>,
    pub metrics: SsfMetrics,
    pub clock: SharedClock,
    /// `[ssf] max_queue`.
    pub max_queue: usize,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").finish_non_exhaustive()
    }
}

/// A stream as the follower sees it.
struct Target {
    id: String,
    from_sequence: u64,
    config: StreamConfig,
}

/// Returns the streams of the ledger with a configuration that parses (others are logged).
/// Fails when the ledger cannot be read.
pub async fn load_streams(
    ledger: &dyn Ledger,
) -> Result<Vec<(String, u64, StreamConfig)>, LedgerError> {
    let stored = ledger.streams().await?;
    Ok(stored
        .into_iter()
        .filter_map(|s| match serde_json::from_str::<StreamConfig>(&s.config) {
            Ok(config) => Some((s.stream_id, s.from_sequence, config)),
            Err(e) => {
                tracing::error!(stream_id = %s.stream_id, error = %e, "stored stream is unreadable; skipped");
                None
            }
        })
        .collect())
}

impl Follower {
    /// Follows the ledger until `stopping` fires or the ledger stops publishing.
    pub async fn run(self, stopping: CancellationToken) {
        let mut events = self.ledger.subscribe();
        let mut cursor = 0;
        let mut behind = true;
        let mut tick = tokio::time::interval(RESYNC);
        loop {
            if behind {
                behind = self.catch_up(&mut cursor).await.is_err();
            }
            let received = tokio::select! {
                () = stopping.cancelled() => return,
                _ = tick.tick() => {
                    let _ = self.targets().await;
                    continue;
                }
                received = events.recv() => received,
            };
            let mut rules = Vec::new();
            match received {
                Ok(event) => take_rule(event, cursor, &mut rules),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "shared signals follower lagged; catching up from the rules"
                    );
                    behind = true;
                    continue;
                }
                Err(RecvError::Closed) => return,
            }
            // Take whatever else is already committed, so one transaction queues it all.
            while rules.len() < BATCH {
                match events.try_recv() {
                    Ok(event) => take_rule(event, cursor, &mut rules),
                    Err(TryRecvError::Lagged(_)) => {
                        behind = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !rules.is_empty() && self.queue(&rules, &mut cursor).await.is_err() {
                behind = true;
            }
        }
    }

    /// Queues the SETs of every rule after the ledger's signal cursor; fails when the ledger
    /// cannot be read or written (the caller retries).
    async fn catch_up(&self, cursor: &mut u64) -> Result<(), LedgerError> {
        let from = self.ledger.signal_cursor().await?.max(*cursor);
        let rules: Vec<RevocationRule> = self
            .ledger
            .rules()
            .await?
            .into_iter()
            .filter(|r| r.sequence > from)
            .collect();
        *cursor = from;
        for chunk in rules.chunks(BATCH) {
            self.queue(chunk, cursor).await?;
        }
        Ok(())
    }

    /// Re-reads the streams and brings the delivery registry in line; returns them.
    async fn targets(&self) -> Result<Vec<Target>, LedgerError> {
        let mark = self.deliveries.mark();
        let streams = load_streams(self.ledger.as_ref()).await.inspect_err(|e| {
            tracing::warn!(error = %e, "reading the shared signals streams failed");
        })?;
        let registry: Vec<(String, StreamConfig)> = streams
            .iter()
            .map(|(id, _, config)| (id.clone(), config.clone()))
            .collect();
        self.deliveries.sync(mark, &registry);
        crate::metrics::Metrics::set_count(&self.metrics.streams, streams.len() as u64);
        Ok(streams
            .into_iter()
            .map(|(id, from_sequence, config)| Target {
                id,
                from_sequence,
                config,
            })
            .collect())
    }

    /// Queues the SETs of `rules` (in sequence order) for every stream that wants them and
    /// wakes those streams; moves `cursor` past them. Fails when the ledger cannot be used.
    async fn queue(&self, rules: &[RevocationRule], cursor: &mut u64) -> Result<(), LedgerError> {
        let Some(last) = rules.iter().map(|r| r.sequence).max() else {
            return Ok(());
        };
        let targets = self.targets().await?;
        if targets.is_empty() {
            *cursor = last; // nothing to queue; the cursor moves at the next write
            return Ok(());
        }
        let mut sets = Vec::new();
        for rule in rules {
            sets.extend(self.sets_of(rule, &targets).await?);
        }
        let queued_for: Vec<String> = sets.iter().map(|s| s.stream_id.clone()).collect();
        let done = self
            .ledger
            .enqueue_sets(EnqueueParams {
                sets,
                max_pending: self.max_queue,
                through_sequence: Some(last),
                durable: false,
            })
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "queueing SETs failed; will retry"))?;
        self.metrics.queued.inc_by(done.queued);
        if done.dropped > 0 {
            self.metrics.dropped.inc_by(done.dropped);
            tracing::warn!(
                dropped = done.dropped,
                "stream queues full: oldest SETs dropped"
            );
        }
        *cursor = last;
        let mut woken = queued_for;
        woken.sort_unstable();
        woken.dedup();
        woken.iter().for_each(|id| self.deliveries.wake(id));
        Ok(())
    }

    /// Returns the SETs announcing `rule` to every stream created before it that is not
    /// disabled and asked for its event type. Fails when the ledger cannot be read.
    async fn sets_of(
        &self,
        rule: &RevocationRule,
        targets: &[Target],
    ) -> Result<Vec<NewSet>, LedgerError> {
        let record = match rule.rule.selector {
            Selector::CredentialId => self.ledger.get(&rule.rule.value).await?,
            _ => None,
        };
        let now_ms = i64::try_from(self.clock.now().as_millis()).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for t in targets {
            if t.from_sequence >= rule.sequence || t.config.status == StreamStatus::Disabled {
                continue;
            }
            let set = self.sets.revocation(RevocationSet {
                stream_id: &t.id,
                stream: &t.config,
                rule,
                record: record.as_ref(),
                now_ms,
            });
            match set {
                Ok(Some(set)) => out.push(set),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "signing a SET failed"),
            }
        }
        Ok(out)
    }
}

/// Adds the rule of a `revoked` event after `cursor` to `rules`.
fn take_rule(event: Event, cursor: u64, rules: &mut Vec<RevocationRule>) {
    if let (EventKind::Revoked, Some(rule)) = (event.kind, event.revocation)
        && rule.sequence > cursor
    {
        rules.push(rule);
    }
}
