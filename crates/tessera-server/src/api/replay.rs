//! What a watcher that resumes is sent before live events. A relying party gets the rules after
//! its sequence from the [`RuleLog`] the revoker keeps, and reads from the ledger only the
//! events the log has not seen yet (usually none), never the retained `issued` events. An admin
//! gets pages of retained events. Each read takes a turn from its pool's replay gate
//! ([`Watchers::replay_turn`]), so few replays read at once and admins' replays never hold up
//! relying parties'; no turn is held while a watcher
//! reads what was replayed, so a slow watcher cannot keep others waiting.

use std::sync::Arc;

use tessera_core::domain::{Event, RevocationRule};
use tessera_core::revocation::RuleLog;
use tessera_ledger::{Ledger, LedgerError};

use super::status::WatchEnd;
use crate::watchers::{Pool, Watchers};

/// Events read from the ledger per replay query.
pub const REPLAY_PAGE: usize = 1000;

/// Where replays read from.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySource<'a> {
    pub ledger: &'a dyn Ledger,
    pub rules: &'a RuleLog,
    pub watchers: &'a Watchers,
}

impl ReplaySource<'_> {
    /// Returns every rule still in force with a sequence after `since` and up to `target` (the
    /// last sequence committed when the watch started), in sequence order: from the rule log,
    /// and from the ledger only the events after what the log has seen. Rules already swept
    /// (everything they covered expired) are not returned. Fails when no replay turn came in
    /// time, or the ledger cannot be read.
    pub async fn rules(
        &self,
        since: u64,
        target: u64,
    ) -> Result<Vec<Arc<RevocationRule>>, WatchEnd> {
        let _turn = self.turn(Pool::Revocations, since).await?;
        let snapshot = self.rules.after(since, target);
        let mut rules = snapshot.rules;
        let mut last = since.max(snapshot.through);
        while last < target {
            let page = self
                .ledger
                .events_since(last, REPLAY_PAGE)
                .await
                .map_err(unreadable)?;
            let Some(end) = page.last().map(|e| e.sequence) else {
                break;
            };
            rules.extend(
                page.into_iter()
                    .filter(|e| e.sequence <= target)
                    .filter_map(|e| e.revocation)
                    .map(Arc::new),
            );
            last = end;
        }
        Ok(rules)
    }

    /// Returns the next page of retained events after `after` (empty at the end). Fails when
    /// no replay turn came in time, or the ledger cannot be read.
    pub async fn events(&self, after: u64) -> Result<Vec<Event>, WatchEnd> {
        let _turn = self.turn(Pool::Events, after).await?;
        self.ledger
            .events_since(after, REPLAY_PAGE)
            .await
            .map_err(unreadable)
    }

    /// Waits for a replay turn of `pool`; fails telling the watcher to resume from `resume`.
    async fn turn(
        &self,
        pool: Pool,
        resume: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, WatchEnd> {
        self.watchers
            .replay_turn(pool, resume)
            .await
            .map_err(WatchEnd::Refused)
    }
}

/// Logs a failed ledger read; returns how the stream ends.
pub fn unreadable(error: LedgerError) -> WatchEnd {
    tracing::warn!(error = %error, "replaying events failed");
    WatchEnd::Unreadable
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
