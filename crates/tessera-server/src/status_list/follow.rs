//! The background work of the status lists: follow what the ledger commits — rules from
//! `revoked` events, batched; credentials other replicas issued from `issued` events — rebuild
//! after a start or a lagging subscription, and drop expired lists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::domain::{Event, EventKind, RevocationRule};
use tessera_ledger::LedgerError;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use super::StatusLists;

/// How often expired lists are dropped.
const DROP_EVERY: Duration = Duration::from_secs(10);
/// Wait before retrying a failed rebuild.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Starts the status lists: loads the stored rules (so the first mint is checked against
/// them), then follows the ledger in the background and rebuilds the lists of earlier
/// processes from the ledger's records, until `stopping`. Fails when the rules cannot be read.
pub async fn start(
    lists: Arc<StatusLists>,
    stopping: CancellationToken,
) -> Result<(), LedgerError> {
    // Subscribe before loading: a rule committed in between is not missed.
    let events = lists.parts.ledger.subscribe();
    lists.load_rules().await?;
    tokio::spawn(Arc::clone(&lists).follow(events, stopping.clone()));
    tokio::spawn(async move { lists.rebuild_until_done(stopping).await });
    Ok(())
}

impl StatusLists {
    /// Rebuilds the lists from the ledger, retrying until it succeeds or `stopping` fires.
    async fn rebuild_until_done(&self, stopping: CancellationToken) {
        loop {
            match self.rebuild().await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "rebuilding status lists failed; retrying"),
            }
            tokio::select! {
                () = stopping.cancelled() => return,
                () = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
    }

    /// Follows committed events until `stopping` fires or the ledger stops publishing. Rules
    /// that arrive together are applied in one pass. While rules keep arriving, the next pass
    /// waits as long as the last one took (at most a tenth of `max_lag`), so that a storm of
    /// rules keeps at most half a core busy and each rule still shows within `max_lag`; a rule
    /// after a quiet moment is applied at once.
    async fn follow(self: Arc<Self>, mut events: Receiver<Event>, stopping: CancellationToken) {
        let mut drop_tick = tokio::time::interval(DROP_EVERY);
        let spacing = self.parts.config.max_lag / 10;
        // When the last pass ended, and how long it took.
        let mut last_pass: Option<(Instant, Duration)> = None;
        loop {
            let received = tokio::select! {
                () = stopping.cancelled() => return,
                _ = drop_tick.tick() => {
                    self.drop_expired();
                    continue;
                }
                received = events.recv() => received,
            };
            let mut batch = Vec::new();
            let mut lagged = match received {
                Ok(event) => {
                    self.take(event, &mut batch);
                    false
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "status lists missed ledger events; rebuilding");
                    true
                }
                Err(RecvError::Closed) => return,
            };
            if !batch.is_empty()
                && let Some((ended, took)) = last_pass
                && let Some(wait) = took.min(spacing).checked_sub(ended.elapsed())
            {
                tokio::time::sleep(wait).await;
            }
            lagged |= self.drain(&mut events, &mut batch);
            let started = Instant::now();
            if lagged {
                self.resync(&stopping).await;
            } else if !batch.is_empty() {
                self.enforce(&batch).await;
            } else {
                continue;
            }
            last_pass = Some((Instant::now(), started.elapsed()));
        }
    }

    /// Takes what `event` says: a credential listed elsewhere, or a rule for `batch`.
    fn take(&self, event: Event, batch: &mut Vec<RevocationRule>) {
        match (event.kind, event.credential, event.revocation) {
            (EventKind::Issued, Some(record), _) => self.note_committed(&record),
            (EventKind::Revoked, _, Some(rule)) => batch.push(rule),
            _ => {}
        }
    }

    /// Takes every event already received; returns true when events were missed.
    fn drain(&self, events: &mut Receiver<Event>, batch: &mut Vec<RevocationRule>) -> bool {
        loop {
            match events.try_recv() {
                Ok(event) => self.take(event, batch),
                Err(TryRecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "status lists missed ledger events; rebuilding");
                    return true;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return false,
            }
        }
    }

    /// Applies `batch` to every list, logging a failure (the rules stay in the table, so the
    /// credentials listed later are still checked; a resync applies them all again).
    async fn enforce(&self, batch: &[RevocationRule]) {
        let started = Instant::now();
        match self.apply(batch).await {
            Ok(changed) => tracing::debug!(
                rules = batch.len(),
                changed,
                elapsed_us = started.elapsed().as_micros(),
                "revocations applied to the status lists"
            ),
            Err(e) => tracing::error!(error = %e, "applying revocations to status lists failed"),
        }
    }

    /// After missed events: serves only this process's lists until every rule is applied again
    /// and the lists are rebuilt from the ledger.
    async fn resync(&self, stopping: &CancellationToken) {
        self.unready();
        loop {
            match self.load_rules().await {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = %e, "reloading rules for status lists failed"),
            }
            tokio::select! {
                () = stopping.cancelled() => return,
                () = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
        self.rebuild_until_done(stopping.clone()).await;
    }
}
