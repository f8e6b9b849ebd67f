//! Mint calls recorded per second: a `Broker` that hands each call to one of a pool of gRPC
//! brokers (round-robin) and counts it, with its latency, in the second it ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use tessera_client::mint::{Jwt, MintParams, X509Svid};
use tessera_client::source::{Broker, GrpcBroker, RevocationStream, SourceError};

use crate::Error;

/// What happened in one second of the run.
#[derive(Debug)]
pub(crate) struct Second {
    pub(crate) minted: u64,
    /// Refused with `RESOURCE_EXHAUSTED` (the broker's `max_in_flight`).
    pub(crate) exhausted: u64,
    /// Abandoned at the source's call timeout.
    pub(crate) timed_out: u64,
    pub(crate) other_failures: u64,
    /// Microseconds per successful mint.
    pub(crate) latency: Histogram<u64>,
}

impl Second {
    pub(crate) fn new() -> Result<Self, Error> {
        Ok(Second {
            minted: 0,
            exhausted: 0,
            timed_out: 0,
            other_failures: 0,
            latency: Histogram::new_with_bounds(1, 120_000_000, 2)?,
        })
    }

    pub(crate) fn failures(&self) -> u64 {
        self.exhausted + self.timed_out + self.other_failures
    }
}

/// How a mint call ended.
#[derive(Debug)]
enum Outcome {
    Minted(Duration),
    Exhausted,
    TimedOut,
    Failed(String),
}

/// Mint outcomes per second since `origin`, and calls in flight.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) origin: Instant,
    pub(crate) seconds: Mutex<Vec<Second>>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) peak_in_flight: AtomicUsize,
    pub(crate) first_failure: Mutex<Option<String>>,
}

impl Stats {
    pub(crate) fn new(origin: Instant, seconds: u64) -> Result<Self, Error> {
        let buckets = (0..seconds + 2)
            .map(|_| Second::new())
            .collect::<Result<_, _>>()?;
        Ok(Stats {
            origin,
            seconds: Mutex::new(buckets),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            first_failure: Mutex::new(None),
        })
    }

    /// Counts `outcome` in the second it happened (calls after the last bucket are dropped).
    fn record(&self, outcome: Outcome) {
        let at = self.origin.elapsed().as_secs() as usize;
        let mut seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(second) = seconds.get_mut(at) else {
            return;
        };
        match outcome {
            Outcome::Minted(took) => {
                second.minted += 1;
                second.latency.saturating_record(took.as_micros() as u64);
            }
            Outcome::Exhausted => second.exhausted += 1,
            Outcome::TimedOut => second.timed_out += 1,
            Outcome::Failed(why) => {
                second.other_failures += 1;
                let mut first = self
                    .first_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                first.get_or_insert(why);
            }
        }
    }
}

/// One mint in flight; counted as timed out if dropped (the source's call timeout) before
/// [`Call::finish`].
struct Call<'a> {
    stats: &'a Stats,
    started: Instant,
    finished: bool,
}

impl<'a> Call<'a> {
    fn begin(stats: &'a Stats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        Call {
            stats,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish(mut self, result: Result<(), &SourceError>) {
        self.finished = true;
        let outcome = match result {
            Ok(()) => Outcome::Minted(self.started.elapsed()),
            Err(SourceError::Unavailable {
                code: tonic::Code::ResourceExhausted,
                ..
            }) => Outcome::Exhausted,
            Err(SourceError::Timeout(_)) => Outcome::TimedOut,
            Err(other) => Outcome::Failed(other.to_string()),
        };
        self.stats.record(outcome);
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.finished {
            self.stats.record(Outcome::TimedOut);
        }
    }
}

/// The broker as the agents see it: a pool of gRPC brokers used round-robin, every JWT mint
/// recorded in [`Stats`].
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) pool: Vec<GrpcBroker>,
    pub(crate) next: AtomicUsize,
    pub(crate) stats: Arc<Stats>,
}

impl Recorded {
    fn pick(&self) -> &GrpcBroker {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        &self.pool[i]
    }
}

impl Broker for Recorded {
    fn mint_jwt<'a>(&'a self, p: MintParams<'a>) -> BoxFuture<'a, Result<Jwt, SourceError>> {
        Box::pin(async move {
            let call = Call::begin(&self.stats);
            let result = self.pick().mint_jwt(p).await;
            call.finish(result.as_ref().map(|_| ()));
            result
        })
    }

    fn mint_x509<'a>(
        &'a self,
        csr: Vec<u8>,
        p: MintParams<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, SourceError>> {
        self.pick().mint_x509(csr, p)
    }

    fn watch_revocations(
        &self,
        since_sequence: u64,
    ) -> BoxFuture<'_, Result<RevocationStream, SourceError>> {
        self.pick().watch_revocations(since_sequence)
    }
}
