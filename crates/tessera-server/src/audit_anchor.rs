//! Anchors the audit log's chain in the ledger: about once a second, and once more at
//! shutdown, the last line written (its `seq` and `hash`, see [`crate::audit::AuditPosition`])
//! is stored with [`tessera_ledger::AnchorStore`], so that `tessera audit verify --config`
//! detects lines deleted from the end of the file.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::clock::SharedClock;
use tessera_ledger::{AuditAnchor, Ledger};
use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, AuditPosition};

/// How often the position is anchored.
const EVERY: Duration = Duration::from_secs(1);

/// Anchors `audit`'s position in `ledger` every [`EVERY`] until `stopping`. Failures are
/// logged and retried at the next tick.
pub async fn follow(
    audit: Audit,
    ledger: Arc<dyn Ledger>,
    clock: SharedClock,
    stopping: CancellationToken,
) {
    let mut anchored = None;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            _ = tick.tick() => {}
        }
        let position = audit.position();
        if position.is_some() && position != anchored {
            match anchor(&audit, ledger.as_ref(), &clock).await {
                Ok(()) => anchored = position,
                Err(e) => tracing::warn!(error = %e, "anchoring the audit log failed"),
            }
        }
    }
}

/// Anchors `audit`'s current position in `ledger` (nothing before the log's first line).
/// Fails when the ledger refuses.
pub async fn anchor(
    audit: &Audit,
    ledger: &dyn Ledger,
    clock: &SharedClock,
) -> Result<(), tessera_ledger::LedgerError> {
    let Some(AuditPosition { log, seq, hash }) = audit.position() else {
        return Ok(());
    };
    ledger
        .anchor_audit(AuditAnchor {
            log,
            seq,
            hash,
            at_ms: clock.unix_millis(),
        })
        .await
}
