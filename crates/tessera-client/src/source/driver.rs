//! A credential source's renewal loop: mint at start, renew at the scheduled point of each
//! credential's lifetime, retry failures with backoff while keeping the last good credential
//! (and at once when the revocation stream reconnects: the broker is back), and renew at once
//! when the revocation follower reports the credential held. A first mint refused for good
//! (evidence missing or refused, no grant) stops the source.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use tessera_core::clock::Clock;

use super::SourceParams;
use super::broker::Broker;
use super::credential::Mintable;
use super::error::SourceError;
use super::revocations;
use super::state::Shared;
use crate::mint::MintParams;

/// The longest single sleep: waits are cut into naps that re-read the clock, so that a machine
/// suspended (or a clock stepped) renews on time by the clock, not by the sleep.
const MAX_NAP: Duration = Duration::from_secs(5);
/// Revoked credential ids waiting for the loop, at most.
const REVOKED_QUEUE: usize = 16;

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits until `clock` reads `due_ms` or later.
async fn wait_until(clock: &dyn Clock, due_ms: i64) {
    loop {
        let left = due_ms.saturating_sub(clock.unix_millis());
        if left <= 0 {
            return;
        }
        let left = Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX));
        tokio::time::sleep(left.min(MAX_NAP)).await;
    }
}

/// Runs the renewal loop of one source until it stops for good (or the task is aborted).
pub(crate) async fn run<C: Mintable>(
    shared: Arc<Shared<C>>,
    broker: Arc<dyn Broker>,
    params: SourceParams,
) {
    let clock = Arc::clone(&shared.clock);
    let (revoked_tx, mut revoked_rx) = mpsc::channel::<String>(REVOKED_QUEUE);
    let mut revoked_tx = Some(revoked_tx);
    let mut follower: Option<AbortOnDrop> = None;
    let mut due_ms = clock.unix_millis();
    let mut failures = 0u32;
    loop {
        let revoked = tokio::select! {
            () = wait_until(&*clock, due_ms) => false,
            // Failing, and the revocation stream just reconnected: the broker is back.
            () = shared.reachable(), if failures > 0 => false,
            Some(id) = revoked_rx.recv() => {
                let held = shared.current().is_some_and(|c| c.issued().credential_id == id);
                if !held {
                    continue;
                }
                shared.note_revoked();
                true
            }
        };
        let outcome = attempt::<C>(&*broker, &params, &*clock).await;
        let now = clock.unix_millis();
        match outcome {
            Ok(credential) => {
                failures = 0;
                let issued = credential.issued();
                due_ms = params.schedule.renew_at(
                    issued.received_ms,
                    issued.lifetime_ms(),
                    params.jitter.unit(),
                );
                tracing::info!(
                    credential_id = %issued.credential_id,
                    destination = %params.destination,
                    purpose = %params.purpose,
                    expires_at = issued.expires_at,
                    renew_in_ms = due_ms - now,
                    "minted a credential"
                );
                shared.publish(credential, due_ms);
                if let Some(tx) = revoked_tx.take() {
                    // Follow from the first credential on: a replay from 0 misses no rule.
                    let task = revocations::follow(
                        Arc::clone(&shared),
                        Arc::clone(&broker),
                        (params.schedule, Arc::clone(&params.jitter)),
                        tx,
                    );
                    follower = Some(AbortOnDrop(tokio::spawn(task)));
                }
            }
            // Refused before any credential was held: nothing to serve, a person must act.
            Err(error) if follower.is_none() && !error.is_transient() => {
                shared.failed(error.clone(), now);
                tracing::error!(
                    %error,
                    destination = %params.destination,
                    purpose = %params.purpose,
                    "the first mint was refused; the credential source stops"
                );
                shared.stop(error);
                return;
            }
            Err(error) => {
                if revoked {
                    // Known to be revoked and not replaced: serving it helps nobody.
                    shared.withdraw();
                }
                failures = failures.saturating_add(1);
                let remaining = shared
                    .current()
                    .map(|c| c.issued().local_expiry_ms().saturating_sub(now));
                let delay = params
                    .schedule
                    .retry_delay(failures, params.jitter.unit(), remaining);
                due_ms = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                tracing::warn!(
                    %error,
                    destination = %params.destination,
                    purpose = %params.purpose,
                    failures,
                    retry_in_ms = due_ms - now,
                    remaining_ms = ?remaining,
                    "minting failed; keeping the credential held and retrying"
                );
                shared.failed(error, due_ms);
            }
        }
    }
}

/// Mints one credential, within the call timeout.
async fn attempt<C: Mintable>(
    broker: &dyn Broker,
    params: &SourceParams,
    clock: &dyn Clock,
) -> Result<C, SourceError> {
    let p = MintParams {
        destination: &params.destination,
        purpose: &params.purpose,
        ttl_seconds: params.ttl_seconds,
    };
    let timeout = params.schedule.call_timeout;
    tokio::time::timeout(timeout, C::mint(broker, p, clock))
        .await
        .unwrap_or(Err(SourceError::Timeout(timeout)))
}
