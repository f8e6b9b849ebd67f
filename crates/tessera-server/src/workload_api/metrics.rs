//! The metrics of trust bundles that come from a SPIFFE Workload API:
//! `tessera_trust_bundle_updated_timestamp_seconds{trust_domain}` (when the bundles of a trust
//! domain last changed in the settings in force), `tessera_workload_api_connected{endpoint}`
//! (1 while its streams are open) and `tessera_workload_api_reconnects_total{endpoint}`; of
//! SPIFFE bundle endpoints, `tessera_bundle_endpoint_up{url}` (1 when its last fetch gave a
//! bundle) and `tessera_bundle_endpoint_fetch_failures_total{url}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a trust domain's gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrustDomainLabels {
    pub trust_domain: String,
}

/// Labels of a Workload API endpoint (`unix:///run/spire/agent.sock`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

/// Labels of a bundle endpoint (`https://partner.example/bundle`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UrlLabels {
    pub url: String,
}

/// The Workload API and bundle endpoint metrics of one server.
#[derive(Debug, Clone)]
pub struct WorkloadApiMetrics {
    pub bundle_updated: Family<TrustDomainLabels, Gauge>,
    pub connected: Family<EndpointLabels, Gauge>,
    pub reconnects: Family<EndpointLabels, Counter>,
    pub bundle_endpoint_up: Family<UrlLabels, Gauge>,
    pub bundle_endpoint_failures: Family<UrlLabels, Counter>,
}

impl WorkloadApiMetrics {
    /// Returns fresh metrics registered in `registry`.
    pub fn register(registry: &mut Registry) -> WorkloadApiMetrics {
        let m = WorkloadApiMetrics {
            bundle_updated: Family::default(),
            connected: Family::default(),
            reconnects: Family::default(),
            bundle_endpoint_up: Family::default(),
            bundle_endpoint_failures: Family::default(),
        };
        registry.register(
            "trust_bundle_updated_timestamp_seconds",
            "Unix time at which the bundles of a trust domain taken from a Workload API last \
             changed in the settings in force",
            m.bundle_updated.clone(),
        );
        registry.register(
            "workload_api_connected",
            "1 while the bundle streams of a Workload API endpoint are open, else 0",
            m.connected.clone(),
        );
        registry.register(
            "workload_api_reconnects",
            "Times the bundle streams of a Workload API endpoint were lost and dialled again",
            m.reconnects.clone(),
        );
        registry.register(
            "bundle_endpoint_up",
            "1 when the last fetch of a SPIFFE bundle endpoint gave a bundle, else 0",
            m.bundle_endpoint_up.clone(),
        );
        registry.register(
            "bundle_endpoint_fetch_failures",
            "Fetches of a SPIFFE bundle endpoint that failed (the last bundle stayed)",
            m.bundle_endpoint_failures.clone(),
        );
        m
    }

    /// Records that the bundles of `trust_domain` changed at unix time `at`.
    pub fn bundle_updated(&self, trust_domain: &str, at: i64) {
        self.bundle_updated
            .get_or_create(&TrustDomainLabels {
                trust_domain: trust_domain.to_owned(),
            })
            .set(at);
    }

    /// Records whether the streams of `endpoint` are open.
    pub fn connected(&self, endpoint: &str, up: bool) {
        self.connected
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Counts a lost connection to `endpoint`.
    pub fn reconnect(&self, endpoint: &str) {
        self.reconnects
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
            })
            .inc();
    }

    /// Records a bundle fetched from `url`.
    pub fn bundle_endpoint_fetched(&self, url: &str) {
        self.bundle_endpoint_up
            .get_or_create(&UrlLabels {
                url: url.to_owned(),
            })
            .set(1);
    }

    /// Records a failed fetch of `url`.
    pub fn bundle_endpoint_failed(&self, url: &str) {
        let labels = UrlLabels {
            url: url.to_owned(),
        };
        self.bundle_endpoint_up.get_or_create(&labels).set(0);
        self.bundle_endpoint_failures.get_or_create(&labels).inc();
    }
}
