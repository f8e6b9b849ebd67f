//! Load shedding: at most `max_in_flight` credential requests and `max_watchers` event streams
//! at once. Past either, callers are refused at once (`RESOURCE_EXHAUSTED`, or HTTP 503 with
//! `Retry-After`) instead of queueing, so a flood cannot grow memory or latency without bound.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of `[server] max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Default of `[server] max_watchers`.
pub const DEFAULT_MAX_WATCHERS: usize = 10_000;

/// The broker is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    #[error("too many requests in flight; retry shortly")]
    Requests,
    #[error("too many watchers are connected; retry later")]
    Watchers,
}

/// Counters of what is in progress.
#[derive(Debug, Clone)]
pub struct Limits {
    in_flight: Arc<Semaphore>,
    watchers: Arc<Semaphore>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_WATCHERS)
    }
}

impl Limits {
    /// Allows `max_in_flight` requests and `max_watchers` streams at once.
    pub fn new(max_in_flight: usize, max_watchers: usize) -> Self {
        Limits {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            watchers: Arc::new(Semaphore::new(max_watchers)),
        }
    }

    /// Admits one request; the permit is released when dropped. Fails at capacity.
    pub fn request(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| Overloaded::Requests)
    }

    /// Admits one watcher; the permit is released when dropped. Fails at capacity.
    pub fn watcher(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        Arc::clone(&self.watchers)
            .try_acquire_owned()
            .map_err(|_| Overloaded::Watchers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_capacity_and_admits_again_once_released() {
        let limits = Limits::new(1, 1);
        let first = limits.request().unwrap();
        assert_eq!(limits.request().unwrap_err(), Overloaded::Requests);
        drop(first);
        assert!(limits.request().is_ok());
        let watcher = limits.watcher().unwrap();
        assert_eq!(limits.watcher().unwrap_err(), Overloaded::Watchers);
        drop(watcher);
    }
}
