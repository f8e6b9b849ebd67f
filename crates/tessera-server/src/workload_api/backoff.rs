//! Exponential backoff with jitter between two attempts to reach a source of trust bundles
//! (a Workload API endpoint, a bundle endpoint).

use std::time::Duration;

/// Exponential backoff from a first wait to a cap, with up to 25 % jitter so that replicas do
/// not retry in step.
#[derive(Debug)]
pub(super) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Returns a backoff that waits `first`, then twice as long each time up to `max`.
    pub(super) fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// Returns the wait before the next attempt and doubles the one after.
    pub(super) fn next(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(self.max);
        let mut byte = [0u8; 1];
        let jitter = match aws_lc_rs::rand::fill(&mut byte) {
            Ok(()) => base.mul_f64(f64::from(byte[0]) / 255.0 / 4.0),
            Err(_) => Duration::ZERO,
        };
        base + jitter
    }

    /// Starts again from the first wait (the source answered).
    pub(super) fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_with_bounded_jitter_and_starts_over_on_reset() {
        let (first, max) = (Duration::from_millis(200), Duration::from_secs(10));
        let mut backoff = Backoff::new(first, max);
        let mut base = first;
        for _ in 0..10 {
            let wait = backoff.next();
            assert!(
                wait >= base && wait <= base + base / 4,
                "{wait:?} for {base:?}"
            );
            base = (base * 2).min(max);
        }
        assert_eq!(backoff.next, max);
        backoff.reset();
        assert!(backoff.next() <= first + first / 4);
    }
}
