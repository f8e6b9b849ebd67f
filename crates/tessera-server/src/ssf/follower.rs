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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use tessera_core::clock::SystemClock;
    use tessera_core::domain::NewRule;
    use tessera_core::keys::SecretKey;
    use tessera_core::mint::JwtMinter;

    use crate::signing::{JwtKeys, MintCas};
    use tessera_ledger::{
        NewStream, PendingParams, RedbLedger, RedbOptions, StoredStream, StreamLimits,
    };
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::ssf::push::{PushClient, PushContext};
    use crate::ssf::stream::{Delivery, EventType};

    fn follower(ledger: &Arc<dyn Ledger>) -> Follower {
        let key = rcgen::KeyPair::generate().unwrap();
        let jwt = JwtMinter::new("https://t", &SecretKey::from_pkcs8_der(key.serialize_der()));
        let metrics = SsfMetrics::register(&mut prometheus_client::registry::Registry::default());
        let push = PushContext {
            client: PushClient::new(&[]).unwrap(),
            ledger: Arc::clone(ledger),
            metrics: metrics.clone(),
            clock: Arc::new(SystemClock),
            max_backoff: Duration::from_secs(1),
            holder: "me".into(),
        };
        Follower {
            ledger: Arc::clone(ledger),
            sets: Arc::new(SetBuilder::new(
                Arc::new(JwtKeys::single(jwt.unwrap(), Arc::new(SystemClock))),
                "https://t".into(),
                Arc::new(MintCas::none(Arc::new(SystemClock))),
            )),
            deliveries: Arc::new(Deliveries::new(
                push,
                CancellationToken::new(),
                TaskTracker::new(),
            )),
            metrics,
            clock: Arc::new(SystemClock),
            max_queue: 100,
        }
    }

    async fn queued(ledger: &Arc<dyn Ledger>, stream_id: &str) -> Vec<String> {
        let params = PendingParams {
            stream_id: stream_id.into(),
            limit: 100,
        };
        let pending = ledger.pending_sets(params).await.unwrap();
        pending.into_iter().map(|p| p.jti).collect()
    }

    /// Runs a follower until `stream_id` has `n` SETs queued (at most 10 s), then stops it.
    async fn follow_until(ledger: &Arc<dyn Ledger>, stream_id: &str, n: usize) {
        let stopping = CancellationToken::new();
        let task = tokio::spawn(follower(ledger).run(stopping.clone()));
        for _ in 0..200 {
            if queued(ledger, stream_id).await.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stopping.cancel();
        task.await.unwrap();
    }

    fn rule(id: &str) -> NewRule {
        NewRule {
            revocation_id: id.into(),
            selector: Selector::Owner,
            value: "team".into(),
            effective_at: 1_700_000_000,
            effective_at_ms: None,
            reason: "test".into(),
            revoked_by: "admin".into(),
            scope: None,
        }
    }

    #[tokio::test]
    async fn rules_committed_while_no_follower_ran_are_queued_once_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        let ledger: Arc<dyn Ledger> =
            Arc::new(RedbLedger::open(&path, RedbOptions::default()).unwrap());
        let before = ledger.add_rule(rule("before-the-stream")).await.unwrap();
        let config = StreamConfig {
            aud: "spiffe://example.org/rp".into(),
            delivery: Delivery::Poll,
            events_requested: None,
            events_delivered: EventType::SUPPORTED.to_vec(),
            description: None,
            status: StreamStatus::Enabled,
            reason: None,
        };
        let stream = StoredStream {
            stream_id: "s".into(),
            owner: "spiffe://example.org/rp".into(),
            from_sequence: before.sequence,
            config: serde_json::to_string(&config).unwrap(),
        };
        let limits = StreamLimits {
            per_owner: 1,
            total: 1,
        };
        ledger
            .create_stream(NewStream { stream, limits })
            .await
            .unwrap();
        ledger.add_rule(rule("one")).await.unwrap();
        let second = ledger.add_rule(rule("two")).await.unwrap();
        follow_until(&ledger, "s", 2).await;
        let jtis = queued(&ledger, "s").await;
        assert_eq!(jtis.len(), 2, "the rule older than the stream is not sent");
        assert_eq!(ledger.signal_cursor().await.unwrap(), second.sequence);
        // After a restart, a new rule is queued once the catch-up is done: nothing twice.
        let stopping = CancellationToken::new();
        let task = tokio::spawn(follower(&ledger).run(stopping.clone()));
        ledger.add_rule(rule("three")).await.unwrap();
        for _ in 0..200 {
            if queued(&ledger, "s").await.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stopping.cancel();
        task.await.unwrap();
        let after = queued(&ledger, "s").await;
        assert_eq!((after.len(), &after[..2]), (3, &jtis[..]));
    }
}
