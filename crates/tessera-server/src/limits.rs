//! Load shedding: at most `max_in_flight` credential requests at once. Past it, callers are
//! refused at once (`RESOURCE_EXHAUSTED`, or HTTP 503 with `Retry-After`) instead of queueing,
//! so a flood cannot grow memory or latency without bound. Watch streams have their own pools
//! ([`crate::watchers`]).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of `[server] max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

/// The broker is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    #[error("too many requests in flight; retry shortly")]
    Requests,
}

/// Counters of what is in progress.
#[derive(Debug, Clone)]
pub struct Limits {
    in_flight: Arc<Semaphore>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

impl Limits {
    /// Allows `max_in_flight` requests at once.
    pub fn new(max_in_flight: usize) -> Self {
        Limits {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
        }
    }

    /// Admits one request; the permit is released when dropped. Fails at capacity.
    pub fn request(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| Overloaded::Requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_capacity_and_admits_again_once_released() {
        let limits = Limits::new(1);
        let first = limits.request().unwrap();
        assert_eq!(limits.request().unwrap_err(), Overloaded::Requests);
        drop(first);
        assert!(limits.request().is_ok());
    }
}
