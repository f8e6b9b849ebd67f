//! The open-loop driver: requests leave at a constant arrival rate whatever the target does, and
//! each latency runs from the request's *intended* send time, so a target that falls behind
//! shows it in the percentiles instead of silently slowing the generator (coordinated omission).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Why a step could not be run.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("a request task panicked")]
    TaskPanicked,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered with a credential.
    Ok,
    /// The target shed the request (gRPC `RESOURCE_EXHAUSTED`, HTTP 503).
    Shed,
    /// Anything else; the message is kept for the first few.
    Error(String),
}

/// One kind of request a step sends.
#[async_trait]
pub trait Load: Send + Sync + 'static {
    /// Sends request number `n` and returns how it ended.
    async fn call(&self, n: u64) -> Outcome;
}

/// What one step runs.
#[derive(Debug, Clone, Copy)]
pub struct StepParams {
    /// Requests per second offered.
    pub rate: f64,
    /// Requests sent before measuring starts (same rate), not counted.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Most requests outstanding at once; past it, requests wait (their latency still counts
    /// from their intended send time).
    pub concurrency: usize,
    /// How long to wait for outstanding requests after the window; later ones are dropped.
    pub drain: Duration,
}

/// What one step measured. Latencies are in microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepResult {
    pub offered_rate: f64,
    pub duration_secs: f64,
    /// Requests intended inside the measured window.
    pub sent: u64,
    /// Requests sent in all, warm-up included.
    pub dispatched: u64,
    pub ok: u64,
    pub shed: u64,
    pub errors: u64,
    /// Requests still outstanding when the drain time ran out.
    pub unfinished: u64,
    /// Successful replies that *arrived* inside the window, per second.
    pub goodput: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The first few error messages.
    pub sample_errors: Vec<String>,
}

impl StepResult {
    /// Returns true when the target kept up: every request answered, at least 97% of the
    /// offered rate delivered, and p99 within `p99_limit`.
    pub fn sustained(&self, p99_limit: Duration) -> bool {
        self.errors == 0
            && self.shed == 0
            && self.unfinished == 0
            && self.goodput >= 0.97 * self.offered_rate
            && u128::from(self.p99_us) <= p99_limit.as_micros()
    }
}

/// Counters shared by the request tasks.
struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    shed: u64,
    errors: u64,
    ok_in_window: u64,
    sample_errors: Vec<String>,
}

impl Tally {
    /// Fails with [`DriveError::Histogram`] if the latency histogram cannot be built.
    fn new() -> Result<Self, DriveError> {
        Ok(Tally {
            // 1 µs .. 100 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 100_000_000, 3)?,
            ok: 0,
            shed: 0,
            errors: 0,
            ok_in_window: 0,
            sample_errors: Vec::new(),
        })
    }
}

/// The measured window, in the tasks' clock.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// Runs one step of `load` and returns what it measured.
///
/// Fails with [`DriveError::Histogram`] when the histogram cannot be built and with
/// [`DriveError::TaskPanicked`] when a request task panicked holding the counters.
pub async fn run_step(load: Arc<dyn Load>, p: StepParams) -> Result<StepResult, DriveError> {
    let tally = Arc::new(Mutex::new(Tally::new()?));
    let begin = Instant::now() + Duration::from_millis(5);
    let window = Window {
        start: begin + p.warmup,
        end: begin + p.warmup + p.duration,
    };
    let total = ((p.warmup + p.duration).as_secs_f64() * p.rate).round() as u64;
    let permits = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut sent = 0;
    let mut dispatched = 0;
    for n in 0..total {
        let intended = begin + Duration::from_secs_f64(n as f64 / p.rate);
        wait_until(intended).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let counted = intended >= window.start;
        sent += u64::from(counted);
        dispatched += 1;
        let (load, tally) = (Arc::clone(&load), Arc::clone(&tally));
        tasks.spawn(async move {
            let outcome = load.call(n).await;
            let done = Instant::now();
            drop(permit);
            if counted {
                record(&tally, outcome, done, done - intended, window);
            }
        });
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    let drained = tokio::time::timeout(p.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let unfinished = match drained {
        Ok(()) => 0,
        Err(_) => {
            let left = tasks.len() as u64;
            tasks.abort_all();
            left
        }
    };
    let tally = tally.lock().map_err(|_| DriveError::TaskPanicked)?;
    Ok(summarise(&tally, p, (sent, dispatched), unfinished))
}

/// Waits until `at` with sub-millisecond accuracy: the timer (1 ms granularity, rounding up)
/// for all but the last 1.5 ms, then yielding to the other tasks until the time comes. Without
/// this, every request would leave up to a millisecond late and be measured from then.
async fn wait_until(at: Instant) {
    let coarse = at.checked_sub(Duration::from_micros(1500));
    if let Some(coarse) = coarse.filter(|c| *c > Instant::now()) {
        tokio::time::sleep_until(coarse).await;
    }
    // Bounded in real time, so that a paused test clock (which only moves when every task is
    // idle) ends the spin in the timer instead; on a real clock 1.5 ms pass first.
    let spin = std::time::Instant::now();
    while Instant::now() < at {
        if spin.elapsed() > Duration::from_millis(2) {
            tokio::time::sleep_until(at).await;
            return;
        }
        tokio::task::yield_now().await;
    }
}

fn record(tally: &Mutex<Tally>, outcome: Outcome, done: Instant, latency: Duration, w: Window) {
    let Ok(mut t) = tally.lock() else { return };
    match outcome {
        Outcome::Ok => {
            t.ok += 1;
            if done >= w.start && done <= w.end {
                t.ok_in_window += 1;
            }
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            t.latency.saturating_record(micros.max(1));
        }
        Outcome::Shed => t.shed += 1,
        Outcome::Error(message) => {
            t.errors += 1;
            if t.sample_errors.len() < 3 {
                t.sample_errors.push(message);
            }
        }
    }
}

fn summarise(t: &Tally, p: StepParams, counts: (u64, u64), unfinished: u64) -> StepResult {
    let (sent, dispatched) = counts;
    let q = |quantile: f64| t.latency.value_at_quantile(quantile);
    StepResult {
        offered_rate: p.rate,
        duration_secs: p.duration.as_secs_f64(),
        sent,
        dispatched,
        ok: t.ok,
        shed: t.shed,
        errors: t.errors,
        unfinished,
        goodput: t.ok_in_window as f64 / p.duration.as_secs_f64(),
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: t.latency.max(),
        sample_errors: t.sample_errors.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers after a fixed delay, one request at a time (a single-server queue).
    struct SlowServer {
        lock: tokio::sync::Mutex<()>,
        service: Duration,
    }

    #[async_trait]
    impl Load for SlowServer {
        async fn call(&self, _n: u64) -> Outcome {
            let _one_at_a_time = self.lock.lock().await;
            tokio::time::sleep(self.service).await;
            Outcome::Ok
        }
    }

    fn params(rate: f64) -> StepParams {
        StepParams {
            rate,
            warmup: Duration::from_millis(100),
            duration: Duration::from_secs(1),
            concurrency: 10_000,
            drain: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn latency_counts_queueing_from_the_intended_send_time() {
        // 10 ms per request is 100/s at most; offering 200/s builds a queue that grows by
        // 100 requests per second, so late requests wait hundreds of milliseconds.
        let load = Arc::new(SlowServer {
            lock: tokio::sync::Mutex::new(()),
            service: Duration::from_millis(10),
        });
        let result = run_step(load, params(200.0)).await.unwrap();
        assert_eq!(result.sent, 200);
        assert!(result.p99_us > 400_000, "p99 {} µs", result.p99_us);
        assert!(result.goodput < 110.0, "goodput {}", result.goodput);
        assert!(!result.sustained(Duration::from_millis(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_keeps_up_is_sustained() {
        let load = Arc::new(SlowServer {
            lock: tokio::sync::Mutex::new(()),
            service: Duration::from_millis(2),
        });
        let result = run_step(load, params(100.0)).await.unwrap();
        assert_eq!(result.ok, 100);
        assert!(result.p99_us < 5_000, "p99 {} µs", result.p99_us);
        assert!(result.sustained(Duration::from_millis(10)), "{result:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shed_and_failed_requests_are_counted_apart() {
        struct Flaky;
        #[async_trait]
        impl Load for Flaky {
            async fn call(&self, n: u64) -> Outcome {
                match n % 3 {
                    0 => Outcome::Ok,
                    1 => Outcome::Shed,
                    _ => Outcome::Error(format!("failed {n}")),
                }
            }
        }
        let result = run_step(Arc::new(Flaky), params(300.0)).await.unwrap();
        assert_eq!((result.ok, result.shed, result.errors), (100, 100, 100));
        assert_eq!(result.sample_errors.len(), 3);
        assert!(!result.sustained(Duration::from_secs(1)));
    }
}
