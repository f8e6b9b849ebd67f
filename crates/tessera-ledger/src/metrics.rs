//! What the ledger measures about itself. The server registers these handles in its registry
//! (`tessera_ledger_commit_seconds`, `tessera_ledger_checkpoint_seconds`,
//! `tessera_ledger_batch_size`, `tessera_events_sequence`);
//! a ledger opened without a registry records into handles nobody reads.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// The ledger's metric handles; clones share the same series.
#[derive(Debug, Clone)]
pub struct LedgerMetrics {
    /// Latency of one batch commit (fsync included), in seconds.
    pub commit_seconds: Histogram,
    /// Duration of one checkpoint of the embedded ledger's writer (redb committed with an
    /// fsync, which holds the writer; the one at open, after a journal replay, is not counted);
    /// the PostgreSQL ledger has none.
    pub checkpoint_seconds: Histogram,
    /// Writes per commit.
    pub batch_size: Histogram,
    /// The last event sequence committed.
    pub event_sequence: Gauge,
}

impl Default for LedgerMetrics {
    fn default() -> Self {
        LedgerMetrics {
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            checkpoint_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            event_sequence: Gauge::default(),
        }
    }
}
