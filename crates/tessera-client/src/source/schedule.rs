//! When a credential source renews and how long it waits after a failure: renewal at a random
//! point around half-life (so that many sources minted together do not renew together), retries
//! with exponential backoff and jitter, never waiting past the end of the credential held.
//! Pure functions of their inputs; the randomness comes from an injected [`Jitter`].

use std::fmt;
use std::time::Duration;

/// A source of uniform random numbers, injected so tests can fix the draws.
pub trait Jitter: Send + Sync + fmt::Debug + 'static {
    /// Returns a number drawn uniformly from `[0, 1)`.
    fn unit(&self) -> f64;
}

/// Draws from the operating system's random generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn unit(&self) -> f64 {
        let mut bytes = [0u8; 8];
        // Without randomness, the middle of the range: renewals bunch, nothing breaks.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            return 0.5;
        }
        // The top 53 bits, as many as an f64 holds exactly.
        (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Always draws the same number (clamped into `[0, 1)`); for tests and reproducible runs.
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn unit(&self) -> f64 {
        self.0.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

/// The earliest and latest fractions of a lifetime a renewal may be scheduled at.
const FRACTION_LIMITS: (f64, f64) = (0.05, 0.95);
/// The shortest wait before a retry, however little of the credential is left.
const MIN_RETRY: Duration = Duration::from_millis(100);

/// When to renew and how to retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Renew at a fraction of the lifetime drawn uniformly from `[renew_from, renew_to]`
    /// (both kept within 0.05..=0.95). Default 0.4.
    pub renew_from: f64,
    /// Default 0.6.
    pub renew_to: f64,
    /// The wait after a first failure; it doubles with each further one. Default 1 s.
    pub retry_initial: Duration,
    /// The longest wait between attempts. Default 30 s.
    pub retry_max: Duration,
    /// How long one call to the broker may take before it counts as failed. Default 10 s.
    pub call_timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            renew_from: 0.4,
            renew_to: 0.6,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            call_timeout: Duration::from_secs(10),
        }
    }
}

impl Schedule {
    /// Returns when (unix milliseconds, local clock) to renew a credential received at
    /// `received_ms` that lives `lifetime_ms`, for `unit` drawn uniformly from `[0, 1)`: at a
    /// fraction of the lifetime between `renew_from` and `renew_to`.
    pub fn renew_at(&self, received_ms: i64, lifetime_ms: i64, unit: f64) -> i64 {
        let (low, high) = FRACTION_LIMITS;
        let from = self.renew_from.clamp(low, high);
        let to = self.renew_to.clamp(low, high).max(from);
        let fraction = from + (to - from) * unit.clamp(0.0, 1.0);
        let offset = (lifetime_ms.max(0) as f64 * fraction) as i64;
        received_ms.saturating_add(offset)
    }

    /// Returns how long to wait before the next attempt after `failures` failures in a row (at
    /// least 1), for `unit` drawn uniformly from `[0, 1)`: `retry_initial` doubled per further
    /// failure up to `retry_max`, times a jitter in `[0.5, 1)`, and — while a credential with
    /// `remaining_ms` left is held — at most half of what is left, so that attempts keep
    /// coming before it expires (never less than 100 ms).
    pub fn retry_delay(&self, failures: u32, unit: f64, remaining_ms: Option<i64>) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let backoff = self
            .retry_initial
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max);
        let jittered = backoff.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
        let capped = match remaining_ms {
            Some(left) if left > 0 => {
                let half = Duration::from_millis(u64::try_from(left / 2).unwrap_or_default());
                jittered.min(half)
            }
            _ => jittered,
        };
        capped.max(MIN_RETRY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_forty_and_sixty_percent_of_the_lifetime() {
        let s = Schedule::default();
        assert_eq!(s.renew_at(1_000, 300_000, 0.0), 1_000 + 120_000);
        assert_eq!(s.renew_at(1_000, 300_000, 0.5), 1_000 + 150_000);
        assert_eq!(s.renew_at(1_000, 300_000, 0.999_999), 1_000 + 179_999);
    }

    #[test]
    fn random_jitter_spreads_renewals_over_the_whole_window() {
        let s = Schedule::default();
        let lifetime = 300_000;
        let at: Vec<i64> = (0..2_000)
            .map(|_| s.renew_at(0, lifetime, RandomJitter.unit()))
            .collect();
        assert!(at.iter().all(|t| (120_000..=180_000).contains(t)));
        let (min, max) = (at.iter().min().unwrap(), at.iter().max().unwrap());
        assert!(*min < 123_000 && *max > 177_000, "{min}..{max}");
        // A tenth of the window holds about a tenth of the renewals, not a spike.
        let first_tenth = at.iter().filter(|t| **t < 126_000).count();
        assert!((100..=300).contains(&first_tenth), "{first_tenth}");
    }

    #[test]
    fn a_window_out_of_bounds_is_clamped_and_kept_in_order() {
        let s = Schedule {
            renew_from: 0.9,
            renew_to: 2.0,
            ..Schedule::default()
        };
        assert_eq!(s.renew_at(0, 1_000, 0.0), 900);
        assert_eq!(s.renew_at(0, 1_000, 1.0), 950);
        let inverted = Schedule {
            renew_from: 0.5,
            renew_to: 0.1,
            ..Schedule::default()
        };
        assert_eq!(inverted.renew_at(0, 1_000, 0.7), 500);
        assert_eq!(
            s.renew_at(10, -5, 0.5),
            10,
            "an expired lifetime renews at once"
        );
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_maximum() {
        let s = Schedule::default();
        let secs = |failures, unit| s.retry_delay(failures, unit, None).as_secs_f64();
        assert_eq!(
            [1, 2, 3, 4].map(|n| secs(n, 0.999_999_999)).map(f64::round),
            [1.0, 2.0, 4.0, 8.0]
        );
        assert_eq!([1, 2, 3].map(|n| secs(n, 0.0)), [0.5, 1.0, 2.0]);
        assert_eq!(secs(6, 0.0), 15.0, "capped at retry_max, then jittered");
        assert_eq!(secs(1_000, 0.0), 15.0, "no overflow");
    }

    #[test]
    fn retries_never_wait_past_half_of_what_is_left_of_the_credential() {
        let s = Schedule::default();
        assert_eq!(
            s.retry_delay(6, 0.9, Some(8_000)),
            Duration::from_secs(4),
            "4 s of 8 s left"
        );
        assert_eq!(
            s.retry_delay(1, 0.0, Some(60_000)),
            Duration::from_millis(500)
        );
        assert_eq!(s.retry_delay(3, 0.0, Some(50)), MIN_RETRY);
        assert_eq!(
            s.retry_delay(6, 0.0, Some(-1)),
            Duration::from_secs(15),
            "expired: only the backoff"
        );
    }
}
