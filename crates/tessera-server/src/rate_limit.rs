//! Per-caller token buckets on the injected clock: each caller (a workload's SPIFFE ID) may act
//! `per_second` times a second on average and `burst` times at once. RFC 7009 revocations use
//! it: each one adds a rule that is pushed to every watcher, so one workload must not be able to
//! flood them (one created 10,000 rules in 10 s).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tessera_core::clock::SharedClock;

/// Default of `[server] revoke_rate_per_workload`: revocations a second.
pub const DEFAULT_REVOKE_RATE: u32 = 10;
/// Default of `[server] revoke_burst_per_workload`: revocations at once.
pub const DEFAULT_REVOKE_BURST: u32 = 20;
/// Past this many callers, buckets that are full again (idle callers) are forgotten.
const FORGET_IDLE_PAST: usize = 4096;

/// How often one caller may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained rate, per second (at least 1).
    pub per_second: u32,
    /// Actions allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

impl Default for Rate {
    fn default() -> Self {
        Rate {
            per_second: DEFAULT_REVOKE_RATE,
            burst: DEFAULT_REVOKE_BURST,
        }
    }
}

/// A caller went past its rate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{caller} made too many {action} (at most {per_second} a second, {burst} at once); retry in \
     {retry_after_secs} s"
)]
pub struct RateLimited {
    pub caller: String,
    pub action: &'static str,
    pub per_second: u32,
    pub burst: u32,
    /// Whole seconds until the caller may act again (at least 1).
    pub retry_after_secs: u64,
}

/// One caller's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// Clock time of the last refill.
    at: Duration,
}

/// Token buckets by caller.
pub struct RateLimiter {
    rate: Rate,
    /// What is limited, plural, for the message (e.g. "revocations").
    action: &'static str,
    clock: SharedClock,
    buckets: Mutex<HashMap<Box<str>, Bucket>>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Limits each caller's `action` to `rate`, reading time from `clock`.
    pub fn new(rate: Rate, action: &'static str, clock: SharedClock) -> Self {
        RateLimiter {
            rate: Rate {
                per_second: rate.per_second.max(1),
                burst: rate.burst.max(1),
            },
            action,
            clock,
            buckets: Mutex::default(),
        }
    }

    /// Takes one action from `caller`'s bucket. Fails, taking nothing, when the bucket is
    /// empty, saying in how many seconds one action is available again.
    pub fn take(&self, caller: &str) -> Result<(), RateLimited> {
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= FORGET_IDLE_PAST && !buckets.contains_key(caller) {
            buckets.retain(|_, b| self.refilled(*b, now).tokens < f64::from(self.rate.burst));
        }
        let full = Bucket {
            tokens: f64::from(self.rate.burst),
            at: now,
        };
        let bucket = buckets.entry(caller.into()).or_insert(full);
        *bucket = self.refilled(*bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / f64::from(self.rate.per_second);
        Err(RateLimited {
            caller: caller.to_owned(),
            action: self.action,
            per_second: self.rate.per_second,
            burst: self.rate.burst,
            // At most one second's worth of tokens is missing: the cast cannot overflow.
            retry_after_secs: (wait.ceil() as u64).max(1),
        })
    }

    /// Returns `bucket` refilled up to `now`. A clock that stepped back refills nothing.
    fn refilled(&self, bucket: Bucket, now: Duration) -> Bucket {
        let elapsed = now.saturating_sub(bucket.at).as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + elapsed * f64::from(self.rate.per_second))
                .min(f64::from(self.rate.burst)),
            at: now.max(bucket.at),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tessera_core::clock::ManualClock;

    use super::*;

    const A: &str = "spiffe://example.org/a";
    const B: &str = "spiffe://example.org/b";

    fn limiter(per_second: u32, burst: u32) -> (RateLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::at(1_000));
        let rate = Rate { per_second, burst };
        (RateLimiter::new(rate, "revocations", clock.clone()), clock)
    }

    #[test]
    fn admits_a_burst_then_refuses_and_admits_again_as_time_passes() {
        let (limiter, clock) = limiter(10, 20);
        for _ in 0..20 {
            limiter.take(A).unwrap();
        }
        let refused = limiter.take(A).unwrap_err();
        assert_eq!((refused.retry_after_secs, refused.burst), (1, 20));
        assert!(refused.to_string().contains(A), "{refused}");
        clock.advance(1);
        for _ in 0..10 {
            limiter.take(A).unwrap();
        }
        assert!(limiter.take(A).is_err(), "ten a second, no more");
    }

    #[test]
    fn one_caller_past_its_rate_does_not_slow_another() {
        let (limiter, _) = limiter(1, 2);
        limiter.take(A).unwrap();
        limiter.take(A).unwrap();
        assert!(limiter.take(A).is_err());
        assert!(limiter.take(B).is_ok());
    }

    #[test]
    fn says_how_many_seconds_a_slow_rate_needs_and_never_fills_past_the_burst() {
        let (limiter, clock) = limiter(1, 1);
        limiter.take(A).unwrap();
        assert_eq!(limiter.take(A).unwrap_err().retry_after_secs, 1);
        clock.advance(3_600);
        limiter.take(A).unwrap();
        assert!(limiter.take(A).is_err(), "an hour of quiet still gives one");
    }

    #[test]
    fn a_clock_that_steps_back_refills_nothing() {
        let (limiter, clock) = limiter(1, 1);
        limiter.take(A).unwrap();
        clock.advance(-60);
        assert!(limiter.take(A).is_err());
        clock.advance(61);
        assert!(limiter.take(A).is_ok(), "refills from the latest time seen");
    }
}
