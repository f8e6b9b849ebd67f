//! What the agent knows about each credential — written or not, until when, the last failure —
//! for `/healthz` and `/metrics`: read from each credential's source when asked, plus what the
//! writer reports.

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tessera_client::source::{CredentialSource, Mintable, SourceStatus};
use tessera_core::clock::SharedClock;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabel {
    credential: String,
}

/// What the status reads from one credential's source when asked.
pub trait Probe: Send + Sync {
    /// Returns the source's status: the credential held, staleness, the last error.
    fn status(&self) -> SourceStatus;
    /// Returns the credentials minted so far.
    fn renewals(&self) -> u64;
    /// Returns the failed attempts so far.
    fn failures(&self) -> u64;
}

impl<C: Mintable> Probe for CredentialSource<C> {
    fn status(&self) -> SourceStatus {
        CredentialSource::status(self)
    }
    fn renewals(&self) -> u64 {
        CredentialSource::renewals(self)
    }
    fn failures(&self) -> u64 {
        CredentialSource::failures(self)
    }
}

/// One credential as `/healthz` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialStatus {
    pub name: String,
    /// The id of the credential in the files, once one is written.
    pub written: Option<String>,
    /// Unix seconds at which the written credential expires.
    pub expires_at: Option<i64>,
    /// True while renewals fail and the written credential is still served.
    pub stale: bool,
    /// The last failure (renewal, write or after-renewal action), cleared by the next success.
    pub last_error: Option<String>,
}

struct Entry {
    name: String,
    probe: Arc<dyn Probe>,
    written: Mutex<Written>,
}

#[derive(Default)]
struct Written {
    id: Option<String>,
    expires_at: Option<i64>,
    error: Option<String>,
}

/// The status of every credential and the agent's metrics.
#[derive(Clone)]
pub struct Status {
    inner: Arc<Inner>,
}

struct Inner {
    clock: SharedClock,
    entries: Vec<Entry>,
    registry: Registry,
    expiry: Family<CredentialLabel, Gauge>,
    renewals: Family<CredentialLabel, Counter>,
    failures: Family<CredentialLabel, Counter>,
    write_failures: Family<CredentialLabel, Counter>,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.inner.entries.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("Status")
            .field("credentials", &names)
            .finish()
    }
}

fn lock(m: &Mutex<Written>) -> MutexGuard<'_, Written> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Status {
    /// A status of the named credentials, read from their sources; none written yet.
    pub fn new(credentials: Vec<(String, Arc<dyn Probe>)>, clock: SharedClock) -> Self {
        let mut registry = Registry::default();
        let expiry = Family::<CredentialLabel, Gauge>::default();
        let renewals = Family::<CredentialLabel, Counter>::default();
        let failures = Family::<CredentialLabel, Counter>::default();
        let write_failures = Family::<CredentialLabel, Counter>::default();
        registry.register(
            "tessera_agent_credential_expiry_seconds",
            "Seconds until the written credential expires (negative once expired)",
            expiry.clone(),
        );
        registry.register(
            "tessera_agent_renewals",
            "Credentials minted",
            renewals.clone(),
        );
        registry.register(
            "tessera_agent_renewal_failures",
            "Attempts to mint that failed",
            failures.clone(),
        );
        registry.register(
            "tessera_agent_write_failures",
            "Credential files or after-renewal actions that failed",
            write_failures.clone(),
        );
        let entries = credentials
            .into_iter()
            .map(|(name, probe)| Entry {
                name,
                probe,
                written: Mutex::new(Written::default()),
            })
            .collect();
        Status {
            inner: Arc::new(Inner {
                clock,
                entries,
                registry,
                expiry,
                renewals,
                failures,
                write_failures,
            }),
        }
    }

    fn label(&self, index: usize) -> CredentialLabel {
        CredentialLabel {
            credential: self
                .inner
                .entries
                .get(index)
                .map(|e| e.name.clone())
                .unwrap_or_default(),
        }
    }

    /// Records that credential `index` was written: `id`, expiring at `expires_at`.
    pub fn written(&self, index: usize, id: &str, expires_at: i64) {
        if let Some(e) = self.inner.entries.get(index) {
            *lock(&e.written) = Written {
                id: Some(id.to_owned()),
                expires_at: Some(expires_at),
                error: None,
            };
        }
    }

    /// Records that writing credential `index`, or its after-renewal action, failed.
    pub fn write_failed(&self, index: usize, error: &str) {
        if let Some(e) = self.inner.entries.get(index) {
            lock(&e.written).error = Some(error.to_owned());
        }
        self.inner
            .write_failures
            .get_or_create(&self.label(index))
            .inc();
    }

    /// Returns every credential's status, and whether each is written, unexpired and still the
    /// one its source holds (not withdrawn after a revocation).
    pub fn health(&self) -> (bool, Vec<CredentialStatus>) {
        let now = self.inner.clock.unix_seconds();
        let mut healthy = true;
        let all = self
            .inner
            .entries
            .iter()
            .map(|e| {
                let source = e.probe.status();
                let written = lock(&e.written);
                let live = written.expires_at.is_some_and(|t| t > now);
                healthy &= live && source.credential_id.is_some();
                CredentialStatus {
                    name: e.name.clone(),
                    written: written.id.clone(),
                    expires_at: written.expires_at,
                    stale: source.stale,
                    last_error: source
                        .last_error
                        .map(|e| e.to_string())
                        .or_else(|| written.error.clone()),
                }
            })
            .collect();
        (healthy, all)
    }

    /// Returns the metrics in the Prometheus text format, as of now.
    pub fn metrics(&self) -> String {
        let now = self.inner.clock.unix_seconds();
        for (index, e) in self.inner.entries.iter().enumerate() {
            let label = self.label(index);
            if let Some(expires_at) = lock(&e.written).expires_at {
                self.inner
                    .expiry
                    .get_or_create(&label)
                    .set(expires_at - now);
            }
            // The sources count; the counters catch up (both only grow).
            let renewals = self.inner.renewals.get_or_create(&label);
            renewals.inc_by(e.probe.renewals().saturating_sub(renewals.get()));
            let failures = self.inner.failures.get_or_create(&label);
            failures.inc_by(e.probe.failures().saturating_sub(failures.get()));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tessera_core::clock::ManualClock;

    #[derive(Default)]
    struct FakeSource {
        held: Mutex<Option<String>>,
        renewals: AtomicU64,
        failures: AtomicU64,
    }

    impl Probe for FakeSource {
        fn status(&self) -> SourceStatus {
            SourceStatus {
                credential_id: self.held.lock().unwrap().clone(),
                ..SourceStatus::default()
            }
        }
        fn renewals(&self) -> u64 {
            self.renewals.load(Ordering::SeqCst)
        }
        fn failures(&self) -> u64 {
            self.failures.load(Ordering::SeqCst)
        }
    }

    fn held(source: &FakeSource, id: &str) {
        *source.held.lock().unwrap() = Some(id.into());
        source.renewals.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn health_needs_every_credential_written_unexpired_and_still_held() {
        let clock = Arc::new(ManualClock::at(1000));
        let (a, b) = (
            Arc::new(FakeSource::default()),
            Arc::new(FakeSource::default()),
        );
        let probes: Vec<(String, Arc<dyn Probe>)> =
            vec![("a".into(), a.clone()), ("b".into(), b.clone())];
        let status = Status::new(probes, clock.clone());
        assert!(!status.health().0, "nothing written yet");
        held(&a, "id-a");
        status.written(0, "id-a", 1300);
        assert!(!status.health().0, "b is not written");
        held(&b, "id-b");
        status.written(1, "id-b", 1100);
        assert!(status.health().0);
        b.failures.fetch_add(1, Ordering::SeqCst);
        assert!(
            status.health().0,
            "a failed renewal keeps the last good credential"
        );
        *a.held.lock().unwrap() = None;
        assert!(!status.health().0, "a was withdrawn after a revocation");
        held(&a, "id-a2");
        status.written(0, "id-a2", 1300);
        clock.advance(100);
        assert!(!status.health().0, "b expired");
    }

    #[test]
    fn metrics_show_time_to_expiry_renewals_and_failures_per_credential() {
        let clock = Arc::new(ManualClock::at(1000));
        let source = Arc::new(FakeSource::default());
        let status = Status::new(vec![("orders".into(), source.clone())], clock.clone());
        held(&source, "id");
        status.written(0, "id", 1300);
        source.failures.fetch_add(2, Ordering::SeqCst);
        status.write_failed(0, "disk full");
        clock.advance(60);
        let text = status.metrics();
        let has = |line: &str| assert!(text.contains(line), "no `{line}` in {text}");
        has("tessera_agent_credential_expiry_seconds{credential=\"orders\"} 240");
        has("tessera_agent_renewals_total{credential=\"orders\"} 1");
        has("tessera_agent_renewal_failures_total{credential=\"orders\"} 2");
        has("tessera_agent_write_failures_total{credential=\"orders\"} 1");
        held(&source, "id2");
        let text = status.metrics();
        assert!(
            text.contains("tessera_agent_renewals_total{credential=\"orders\"} 2"),
            "{text}"
        );
    }
}
