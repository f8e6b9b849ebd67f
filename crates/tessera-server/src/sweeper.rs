//! Keeping the ledger small while serving: `expired` events every few seconds, and on
//! `[ledger] sweep_interval` the deletion of expired records, old events and dead rules, in
//! batches so that one sweep never holds the writer for long.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::revoker::Revoker;

/// Records swept per write transaction.
const SWEEP_BATCH: usize = 10_000;
/// How often `expired` events are recorded.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
/// Most `expired` events written per write transaction.
const EXPIRE_BATCH: usize = 10_000;
/// Most expiry transactions per tick: a backlog (after downtime) is worked off over ticks.
const EXPIRE_BATCHES_PER_TICK: usize = 20;

/// Records `expired` events every [`EXPIRE_EVERY`], and every `every` sweeps expired records,
/// old events and dead rules from the ledger and the revocation index. A sweep waits until
/// the expiry backlog is gone, so no record is deleted before its `expired` event.
pub async fn sweep(
    revoker: Arc<Revoker>,
    retain: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut expire_tick = tokio::time::interval(EXPIRE_EVERY);
    let mut sweep_tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    let retain = i64::try_from(retain.as_secs()).unwrap_or(i64::MAX);
    let mut sweep_due = false;
    loop {
        sweep_due |= tokio::select! {
            () = shutdown.cancelled() => return,
            _ = expire_tick.tick() => false,
            _ = sweep_tick.tick() => true,
        };
        let caught_up = expire_backlog(&revoker, EXPIRE_BATCH, EXPIRE_BATCHES_PER_TICK).await;
        if sweep_due && caught_up {
            sweep_ledger(&revoker, retain).await;
            sweep_due = false;
        }
    }
}

/// Records `expired` events `batch` at a time until none is left, in at most `max_batches`
/// transactions; returns true when none is left (false also when recording failed).
async fn expire_backlog(revoker: &Revoker, batch: usize, max_batches: usize) -> bool {
    for _ in 0..max_batches {
        match revoker.expire(batch).await {
            Ok(n) if (n as usize) < batch => return true,
            Ok(n) => tracing::info!(expired = n, "expired events recorded, more to come"),
            Err(e) => {
                tracing::warn!(error = %e, "recording expiries failed");
                return false;
            }
        }
    }
    false
}

/// Deletes what the revoker says the ledger may forget, in batches until the backlog is gone,
/// bounded so one sweep cannot run forever.
async fn sweep_ledger(revoker: &Revoker, retain: i64) {
    let params = revoker.forget(retain, SWEEP_BATCH);
    for _ in 0..100 {
        match revoker.sweep(params).await {
            Ok(n) if (n as usize) < SWEEP_BATCH => break,
            Ok(n) => tracing::info!(swept = n, "expired credentials swept from the ledger"),
            Err(e) => {
                tracing::warn!(error = %e, "ledger sweep failed");
                break;
            }
        }
    }
}
