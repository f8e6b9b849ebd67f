//! What a credential source's tasks share with its handle: the credential held (published on a
//! `watch` channel), how the last attempts went, the counters a metrics exporter reads, and
//! whether revocations are followed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, watch};

use tessera_core::clock::SharedClock;

use super::credential::Mintable;
use super::error::SourceError;

/// How a source is doing, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// The id of the credential held, if any.
    pub credential_id: Option<String>,
    /// When it expires, unix seconds (the broker's clock).
    pub expires_at: Option<i64>,
    /// True when the credential held was due for renewal (or was revoked) and the broker has
    /// not yet given a new one: it is still served while it is valid.
    pub stale: bool,
    /// True when the credential held has expired (by the source's clock).
    pub expired: bool,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Why the last attempt failed, until one succeeds.
    pub last_error: Option<SourceError>,
    /// When the next attempt to mint is due, unix milliseconds (the source's clock).
    pub next_attempt_ms: Option<i64>,
    /// True while the revocation stream is open and has replayed the rules it missed.
    pub following_revocations: bool,
    /// Why the source stopped for good, if it did (its first mint was refused).
    pub stopped: Option<SourceError>,
}

/// Attempts and their outcome, under one lock.
#[derive(Debug, Default)]
struct Progress {
    consecutive_failures: u32,
    last_error: Option<SourceError>,
    next_attempt_ms: Option<i64>,
    stopped: Option<SourceError>,
}

/// The state of one source.
#[derive(Debug)]
pub(crate) struct Shared<C> {
    pub(crate) clock: SharedClock,
    current: watch::Sender<Option<Arc<C>>>,
    progress: Mutex<Progress>,
    renewals: AtomicU64,
    failures: AtomicU64,
    revocation_renewals: AtomicU64,
    following: AtomicBool,
    /// Told when the broker answered a call other than a mint (the revocation stream opened).
    reachable: Notify,
}

impl<C: Mintable> Shared<C> {
    pub(crate) fn new(clock: SharedClock) -> Self {
        Shared {
            clock,
            current: watch::Sender::new(None),
            progress: Mutex::new(Progress::default()),
            renewals: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            revocation_renewals: AtomicU64::new(0),
            following: AtomicBool::new(false),
            reachable: Notify::new(),
        }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        // A panic while holding the lock leaves plain values behind: keep using them.
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns the credential held.
    pub(crate) fn current(&self) -> Option<Arc<C>> {
        self.current.borrow().clone()
    }

    /// Returns a receiver of every change of the credential held.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<C>>> {
        self.current.subscribe()
    }

    /// Holds `credential` from now on, with the next attempt due at `next_attempt_ms`.
    pub(crate) fn publish(&self, credential: C, next_attempt_ms: i64) {
        {
            let mut progress = self.progress();
            progress.consecutive_failures = 0;
            progress.last_error = None;
            progress.next_attempt_ms = Some(next_attempt_ms);
        }
        self.renewals.fetch_add(1, Ordering::Relaxed);
        self.current.send_replace(Some(Arc::new(credential)));
    }

    /// Records a failed attempt and when the next one is due; returns the failures in a row.
    pub(crate) fn failed(&self, error: SourceError, next_attempt_ms: i64) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut progress = self.progress();
        progress.consecutive_failures = progress.consecutive_failures.saturating_add(1);
        progress.last_error = Some(error);
        progress.next_attempt_ms = Some(next_attempt_ms);
        progress.consecutive_failures
    }

    /// Stops holding the credential (it is known to be revoked and no new one came).
    pub(crate) fn withdraw(&self) {
        self.current.send_replace(None);
    }

    /// Stops the source for good with `error`; waiters of the first credential get it.
    pub(crate) fn stop(&self, error: SourceError) {
        {
            let mut progress = self.progress();
            progress.stopped = Some(error);
            progress.next_attempt_ms = None;
        }
        // Wakes every receiver, so that `ready()` sees the stop.
        self.current.send_modify(|_| {});
    }

    /// Returns why the source stopped, if it did.
    pub(crate) fn stopped(&self) -> Option<SourceError> {
        self.progress().stopped.clone()
    }

    /// Counts a renewal made because a revocation rule covered the credential held.
    pub(crate) fn note_revoked(&self) {
        self.revocation_renewals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_following(&self, following: bool) {
        self.following.store(following, Ordering::Release);
    }

    /// Tells whoever waits in [`Self::reachable`] that the broker answers again.
    pub(crate) fn broker_reachable(&self) {
        self.reachable.notify_waiters();
    }

    /// Returns once [`Self::broker_reachable`] is called after this call.
    pub(crate) async fn reachable(&self) {
        self.reachable.notified().await;
    }

    /// Returns the credentials minted (the first one included).
    pub(crate) fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    /// Returns the failed attempts to mint.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Returns the renewals made because the credential held was revoked.
    pub(crate) fn revocation_renewals(&self) -> u64 {
        self.revocation_renewals.load(Ordering::Relaxed)
    }

    /// Returns how the source is doing now.
    pub(crate) fn status(&self) -> SourceStatus {
        let held = self.current();
        let issued = held.as_ref().map(|c| c.issued());
        let progress = self.progress();
        SourceStatus {
            credential_id: issued.map(|i| i.credential_id.clone()),
            expires_at: issued.map(|i| i.expires_at),
            stale: issued.is_some() && progress.consecutive_failures > 0,
            expired: issued.is_some_and(|i| self.clock.unix_millis() >= i.local_expiry_ms()),
            consecutive_failures: progress.consecutive_failures,
            last_error: progress.last_error.clone(),
            next_attempt_ms: progress.next_attempt_ms,
            following_revocations: self.following.load(Ordering::Acquire),
            stopped: progress.stopped.clone(),
        }
    }
}
