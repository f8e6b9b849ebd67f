//! Prometheus metrics (`GET /metrics`), named `tessera_*`. One process-wide registry: the
//! ledger writer, the broker and the watch streams record into it without being handed it.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of issued credentials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuedLabels {
    pub kind: String,
    pub destination: String,
}

/// Labels of refusals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: String,
}

/// Every metric.
#[derive(Debug)]
pub struct Metrics {
    pub issued: Family<IssuedLabels, Counter>,
    pub refused: Family<RefusedLabels, Counter>,
    pub live_credentials: Gauge,
    pub revocation_rules: Gauge,
    pub event_sequence: Gauge,
    pub watchers: Gauge,
    pub revoke_delivery_seconds: Histogram,
    pub ledger_commit_seconds: Histogram,
    pub ledger_batch_size: Histogram,
    registry: Registry,
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            issued: Family::default(),
            refused: Family::default(),
            live_credentials: Gauge::default(),
            revocation_rules: Gauge::default(),
            event_sequence: Gauge::default(),
            watchers: Gauge::default(),
            revoke_delivery_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            ledger_commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            ledger_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            registry: Registry::with_prefix("tessera"),
        };
        let mut registry = Registry::with_prefix("tessera");
        registry.register("credentials_issued", "Credentials issued", m.issued.clone());
        registry.register("refused", "Requests refused, by reason", m.refused.clone());
        registry.register(
            "live_credentials",
            "Credentials issued and not yet expired",
            m.live_credentials.clone(),
        );
        registry.register(
            "revocation_rules",
            "Revocation rules in force",
            m.revocation_rules.clone(),
        );
        registry.register(
            "events_sequence",
            "Last event sequence number",
            m.event_sequence.clone(),
        );
        registry.register(
            "watchers",
            "Connected event and revocation watchers",
            m.watchers.clone(),
        );
        registry.register(
            "revoke_delivery_seconds",
            "Revoke commit to watcher send",
            m.revoke_delivery_seconds.clone(),
        );
        registry.register(
            "ledger_commit_seconds",
            "Ledger batch commit latency",
            m.ledger_commit_seconds.clone(),
        );
        registry.register(
            "ledger_batch_size",
            "Writes per ledger commit",
            m.ledger_batch_size.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Returns the metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
