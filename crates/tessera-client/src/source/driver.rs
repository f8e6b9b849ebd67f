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

/// Why the loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The renewal (or retry) is due, or the broker is reachable again.
    Due,
    /// The credential held is revoked.
    Revoked,
}

/// The renewal loop of one source and what it carries between attempts.
struct Driver<C: Mintable> {
    shared: Arc<Shared<C>>,
    broker: Arc<dyn Broker>,
    params: SourceParams,
    revoked_rx: mpsc::Receiver<String>,
    /// Handed to the revocation follower when it starts (after the first credential).
    revoked_tx: Option<mpsc::Sender<String>>,
    follower: Option<AbortOnDrop>,
    /// True once a credential was minted.
    minted_once: bool,
    due_ms: i64,
    failures: u32,
}

/// Runs the renewal loop of one source until it stops for good (or the task is aborted).
pub(crate) async fn run<C: Mintable>(
    shared: Arc<Shared<C>>,
    broker: Arc<dyn Broker>,
    params: SourceParams,
) {
    let (revoked_tx, revoked_rx) = mpsc::channel::<String>(REVOKED_QUEUE);
    let due_ms = shared.clock.unix_millis();
    let mut driver = Driver {
        shared,
        broker,
        params,
        revoked_rx,
        revoked_tx: Some(revoked_tx),
        follower: None,
        minted_once: false,
        due_ms,
        failures: 0,
    };
    loop {
        let wake = driver.wait().await;
        let clock = Arc::clone(&driver.shared.clock);
        let outcome = attempt::<C>(&*driver.broker, &driver.params, &*clock).await;
        let now = clock.unix_millis();
        match outcome {
            Ok(credential) => driver.minted(credential, now),
            // Refused before any credential was held: nothing to serve, a person must act.
            Err(error) if !driver.minted_once && !error.is_transient() => {
                driver.stop(error, now);
                return;
            }
            Err(error) => driver.retry_later(error, wake, now),
        }
    }
}

impl<C: Mintable> Driver<C> {
    /// Returns when an attempt is due: at the scheduled time, when the credential held is
    /// revoked, or (while failing) when the revocation stream reconnects.
    async fn wait(&mut self) -> Wake {
        loop {
            tokio::select! {
                () = wait_until(&*self.shared.clock, self.due_ms) => return Wake::Due,
                // Failing, and the revocation stream just reconnected: the broker is back.
                () = self.shared.reachable(), if self.failures > 0 => return Wake::Due,
                Some(id) = self.revoked_rx.recv() => {
                    let held = self.shared.current();
                    if held.is_some_and(|c| c.issued().credential_id == id) {
                        self.shared.note_revoked();
                        return Wake::Revoked;
                    }
                }
            }
        }
    }

    /// Holds `credential`, schedules its renewal, and starts following revocations (when asked
    /// to) after the first one.
    fn minted(&mut self, credential: C, now: i64) {
        self.failures = 0;
        let issued = credential.issued();
        let p = &self.params;
        self.due_ms =
            p.schedule
                .renew_at(issued.received_ms, issued.lifetime_ms(), p.jitter.unit());
        tracing::info!(
            credential_id = %issued.credential_id,
            destination = %p.destination,
            purpose = %p.purpose,
            expires_at = issued.expires_at,
            renew_in_ms = self.due_ms - now,
            "minted a credential"
        );
        self.shared.publish(credential, self.due_ms);
        self.minted_once = true;
        if !p.follow_revocations {
            return;
        }
        if let Some(tx) = self.revoked_tx.take() {
            // Follow from the first credential on: a replay from 0 misses no rule.
            let task = revocations::follow(
                Arc::clone(&self.shared),
                Arc::clone(&self.broker),
                (p.schedule, Arc::clone(&p.jitter)),
                tx,
            );
            self.follower = Some(AbortOnDrop(tokio::spawn(task)));
        }
    }

    /// Records a failed attempt and schedules the next one, keeping the credential held unless
    /// it was known to be revoked.
    fn retry_later(&mut self, error: SourceError, wake: Wake, now: i64) {
        if wake == Wake::Revoked {
            // Known to be revoked and not replaced: serving it helps nobody.
            self.shared.withdraw();
        }
        self.failures = self.failures.saturating_add(1);
        let remaining = self
            .shared
            .current()
            .map(|c| c.issued().local_expiry_ms().saturating_sub(now));
        let p = &self.params;
        let delay = p
            .schedule
            .retry_delay(self.failures, p.jitter.unit(), remaining);
        self.due_ms = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        tracing::warn!(
            %error,
            destination = %p.destination,
            purpose = %p.purpose,
            failures = self.failures,
            retry_in_ms = self.due_ms - now,
            remaining_ms = ?remaining,
            "minting failed; keeping the credential held and retrying"
        );
        self.shared.failed(error, self.due_ms);
    }

    /// Stops the source for good with `error`.
    fn stop(&self, error: SourceError, now: i64) {
        self.shared.failed(error.clone(), now);
        tracing::error!(
            %error,
            destination = %self.params.destination,
            purpose = %self.params.purpose,
            "the first mint was refused; the credential source stops"
        );
        self.shared.stop(error);
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
