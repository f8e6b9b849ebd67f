//! The `tessera_ssf_*` metrics: SETs queued, delivered (by method), failed (by reason) and
//! dropped from full queues, streams, and queue-to-receipt latency of pushes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of delivered SETs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `push` or `poll`.
    pub method: &'static str,
}

/// Labels of failed deliveries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `rejected` (the receiver refused the SET: it is dropped), or why a push will be
    /// retried: `network`, `timeout`, `status`, `refused`, `redirect`.
    pub reason: &'static str,
}

/// The Shared Signals metrics of one server.
#[derive(Debug, Clone)]
pub struct SsfMetrics {
    pub queued: Counter,
    pub delivered: Family<MethodLabels, Counter>,
    pub failed: Family<ReasonLabels, Counter>,
    pub dropped: Counter,
    pub streams: Gauge,
    pub push_seconds: Histogram,
}

impl SsfMetrics {
    /// Returns fresh metrics registered in `registry` as `ssf_*`.
    pub fn register(registry: &mut Registry) -> SsfMetrics {
        let m = SsfMetrics {
            queued: Counter::default(),
            delivered: Family::default(),
            failed: Family::default(),
            dropped: Counter::default(),
            streams: Gauge::default(),
            push_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        };
        registry.register("ssf_queued", "SETs queued for delivery", m.queued.clone());
        registry.register(
            "ssf_delivered",
            "SETs acknowledged by receivers, by delivery method",
            m.delivered.clone(),
        );
        registry.register(
            "ssf_failed",
            "Failed SET deliveries, by reason",
            m.failed.clone(),
        );
        registry.register(
            "ssf_dropped",
            "SETs dropped unacknowledged from a full stream queue",
            m.dropped.clone(),
        );
        registry.register("ssf_streams", "Shared Signals streams", m.streams.clone());
        registry.register(
            "ssf_push_seconds",
            "SET queued to receiver acceptance, push delivery",
            m.push_seconds.clone(),
        );
        m
    }

    /// Counts SETs acknowledged through `method`.
    pub fn delivered(&self, method: &'static str, n: u64) {
        self.delivered
            .get_or_create(&MethodLabels { method })
            .inc_by(n);
    }

    /// Counts one failed delivery for `reason`.
    pub fn failed(&self, reason: &'static str) {
        self.failed.get_or_create(&ReasonLabels { reason }).inc();
    }
}
