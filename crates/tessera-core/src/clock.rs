//! Time as a parameter (DESIGN.md invariant 4): nothing reads the wall clock except
//! [`SystemClock`], and tests drive a [`ManualClock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Returns the current time as a duration since the Unix epoch.
    fn now(&self) -> Duration;

    /// Returns the current time in whole Unix seconds.
    fn unix_seconds(&self) -> i64 {
        i64::try_from(self.now().as_secs()).unwrap_or(i64::MAX)
    }

    /// Returns the current time in whole Unix milliseconds.
    fn unix_millis(&self) -> i64 {
        i64::try_from(self.now().as_millis()).unwrap_or(i64::MAX)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        // A system clock before 1970 is treated as the epoch rather than a panic.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// Returns a clock set to `unix_seconds`.
    pub fn at(unix_seconds: i64) -> Self {
        Self {
            millis: AtomicI64::new(unix_seconds.saturating_mul(1000)),
        }
    }

    /// Moves the clock forward (or back, with a negative value) by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.millis
            .fetch_add(seconds.saturating_mul(1000), Ordering::SeqCst);
    }

    /// Moves the clock forward (or back, with a negative value) by `millis`.
    pub fn advance_ms(&self, millis: i64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the clock to `unix_seconds`.
    pub fn set(&self, unix_seconds: i64) {
        self.millis
            .store(unix_seconds.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        let millis = self.millis.load(Ordering::SeqCst).max(0);
        Duration::from_millis(u64::try_from(millis).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_000);
        assert_eq!(clock.unix_seconds(), 1_000);
        clock.advance(60);
        assert_eq!(clock.unix_seconds(), 1_060);
        clock.set(5);
        assert_eq!(clock.unix_seconds(), 5);
        clock.advance_ms(1_250);
        assert_eq!((clock.unix_seconds(), clock.unix_millis()), (6, 6_250));
    }
}
