//! Prometheus metrics (`GET /metrics`), named `tessera_*`. One [`Metrics`] is made at start and
//! handed to whatever records into it (the issuer, the revoker, watch streams, the ledger's own
//! handles); nothing reaches a global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tessera_ledger::LedgerMetrics;

/// Labels of issued credentials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuedLabels {
    pub kind: &'static str,
    pub destination: String,
}

/// Labels of refusals: the class of [`crate::refusal::Class`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: &'static str,
}

/// Labels of a grant's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant: String,
    pub owner: String,
}

/// Labels of shed connections: why ([`crate::conns::Shed`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    pub reason: &'static str,
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    pub issued: Family<IssuedLabels, Counter>,
    pub refused: Family<RefusedLabels, Counter>,
    pub live_credentials: Gauge,
    pub revocation_rules: Gauge,
    pub watchers: Gauge,
    pub revoke_delivery_seconds: Histogram,
    /// A rule's cut-off → a relying party's acknowledgement of it.
    pub revocation_enforced_seconds: Histogram,
    /// The ledger's handles (commit latency, batch size, last sequence), registered here.
    pub ledger: LedgerMetrics,
    /// The Shared Signals transmitter's (`tessera_ssf_*`).
    pub ssf: crate::ssf::metrics::SsfMetrics,
    /// Seconds until each configured grant ends (negative once it has).
    pub grant_expiry_seconds: Family<GrantLabels, Gauge>,
    /// Connections closed as soon as accepted, by reason.
    pub connections_shed: Family<ShedLabels, Counter>,
    /// Audit lines dropped because the audit queue was full (a flood outran the disk).
    pub audit_dropped: Counter,
    /// JWT-SVID signature verifies saved: a token that verified before was presented again.
    pub jwt_svid_cache_hits: Counter,
    /// Trust bundles taken from a SPIFFE Workload API.
    pub workload_api: crate::workload_api::metrics::WorkloadApiMetrics,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Returns a fresh set of metrics, registered under the `tessera` prefix.
    pub fn new() -> Self {
        let issued = Family::<IssuedLabels, Counter>::default();
        let refused = Family::<RefusedLabels, Counter>::default();
        let live_credentials = Gauge::default();
        let revocation_rules = Gauge::default();
        let watchers = Gauge::default();
        let revoke_delivery_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let revocation_enforced_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        let ledger = LedgerMetrics::default();
        let mut r = Registry::with_prefix("tessera");
        r.register("credentials_issued", "Credentials issued", issued.clone());
        r.register("refused", "Requests refused, by reason", refused.clone());
        r.register(
            "live_credentials",
            "Credentials issued and not yet expired",
            live_credentials.clone(),
        );
        r.register(
            "revocation_rules",
            "Revocation rules in force",
            revocation_rules.clone(),
        );
        r.register(
            "events_sequence",
            "Last event sequence number",
            ledger.event_sequence.clone(),
        );
        r.register(
            "watchers",
            "Connected event and revocation watchers",
            watchers.clone(),
        );
        r.register(
            "revoke_delivery_seconds",
            "Revoke commit to watcher send",
            revoke_delivery_seconds.clone(),
        );
        r.register(
            "revocation_enforced_seconds",
            "Revocation cut-off to a relying party's acknowledgement",
            revocation_enforced_seconds.clone(),
        );
        r.register(
            "ledger_commit_seconds",
            "Ledger batch commit latency",
            ledger.commit_seconds.clone(),
        );
        r.register(
            "ledger_checkpoint_seconds",
            "Embedded ledger checkpoint (redb commit with fsync) duration",
            ledger.checkpoint_seconds.clone(),
        );
        r.register(
            "ledger_batch_size",
            "Writes per ledger commit",
            ledger.batch_size.clone(),
        );
        let ssf = crate::ssf::metrics::SsfMetrics::register(&mut r);
        let grant_expiry_seconds = Family::<GrantLabels, Gauge>::default();
        r.register(
            "grant_expiry_seconds",
            "Seconds until a grant ends (negative once it has ended)",
            grant_expiry_seconds.clone(),
        );
        let connections_shed = Family::<ShedLabels, Counter>::default();
        r.register(
            "connections_shed",
            "Connections closed as soon as accepted: past a connection or handshake limit",
            connections_shed.clone(),
        );
        let audit_dropped = Counter::default();
        r.register(
            "audit_dropped",
            "Audit log lines dropped because the audit queue was full",
            audit_dropped.clone(),
        );
        let jwt_svid_cache_hits = Counter::default();
        r.register(
            "jwt_svid_cache_hits",
            "JWT-SVID verifies saved: the token verified before and was only checked for its \
             times again",
            jwt_svid_cache_hits.clone(),
        );
        let workload_api = crate::workload_api::metrics::WorkloadApiMetrics::register(&mut r);
        Metrics {
            jwt_svid_cache_hits,
            workload_api,
            connections_shed,
            grant_expiry_seconds,
            audit_dropped,
            issued,
            refused,
            live_credentials,
            revocation_rules,
            watchers,
            revoke_delivery_seconds,
            revocation_enforced_seconds,
            ledger,
            ssf,
            registry: r,
        }
    }

    /// Returns the metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a refusal of class `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusedLabels { reason }).inc();
    }

    /// Sets a gauge to a count, saturating.
    pub fn set_count(gauge: &Gauge, n: u64) {
        gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
