//! Trust bundles that rotate in a SPIFFE Workload API or a SPIFFE bundle endpoint:
//! [`Reloader::apply_bundles`] puts the bundles they serve now in force as a new settings generation of the configuration in force,
//! through the same swap a reload makes, so the next TLS handshake and the next JWT-SVID are
//! verified with them (and connections already open are checked again on their next call).
//! The configuration file is not read again. What a rotation breaks is said, not refused: the
//! Workload API is the authority on what its trust domains trust.

use std::sync::Arc;

use tessera_core::policy::Access;
use tokio_util::sync::CancellationToken;

use super::{ReloadError, Reloader};
use crate::assemble::AssembleError;
use crate::config::Config;
use crate::settings::{Settings, SettingsParts};
use crate::workload_api::{Snapshot, fill};

/// What an applied bundle update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleUpdate {
    /// The settings generation now in force.
    pub generation: u64,
    /// The trust domains whose bundles changed.
    pub trust_domains: Vec<String>,
    /// What the new bundles break (a mint CA whose SVIDs no longer verify, a trust domain the
    /// Workload API no longer sends).
    pub warnings: Vec<String>,
}

impl Reloader {
    /// Puts each change of the Workload API bundles in force ([`Reloader::apply_bundles`])
    /// until `shutdown`; a refused one is logged and audited, and the next change is tried.
    pub async fn follow_bundles(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.parts.workload_api.changes();
        loop {
            // First at once: bundles may have come between start-up's and this subscription.
            // Errors are logged and audited by `apply_bundles`.
            let _ = self.apply_bundles().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Puts in force the bundles the Workload API endpoints sent last, when those of a trust
    /// domain of the configuration in force changed; returns what changed (`None` when nothing
    /// did). A trust domain its endpoint no longer sends trusts nothing until it comes back.
    /// Fails, leaving the settings in force, when a bundle cannot be used (a root that cannot be
    /// a trust anchor, a JWT key that is not a JWK): logged and audited.
    pub async fn apply_bundles(&self) -> Result<Option<BundleUpdate>, ReloadError> {
        let mut in_force = self.in_force.lock().await;
        let (snapshot, missing) = self
            .parts
            .workload_api
            .snapshot(&in_force.config.workload_api);
        let changed = changed(&in_force.bundles, &snapshot);
        if changed.is_empty() {
            return Ok(None);
        }
        let mut warnings: Vec<String> = missing
            .iter()
            .map(|m| format!("{m}: nothing of that trust domain is trusted until it does"))
            .collect();
        let settings = match self.rebundled(&in_force.config, &snapshot, &mut warnings) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::error!(
                    error = %e, trust_domains = %changed.join(", "),
                    "rotated trust bundles refused; the bundles in force stay"
                );
                self.parts.audit.record(
                    "trust_bundle_update_refused",
                    serde_json::json!({"trust_domains": changed, "error": e.to_string()}),
                );
                return Err(e);
            }
        };
        let (new, _) = self.parts.settings.replace(settings);
        self.bundles_changed(&in_force.bundles, &snapshot);
        in_force.bundles = snapshot;
        let endpoints = &in_force.config.workload_api.bundle_endpoints;
        let by = if changed.iter().all(|d| endpoints.contains_key(d)) {
            "bundle_endpoint"
        } else {
            "workload_api"
        };
        let update = BundleUpdate {
            generation: new.generation,
            trust_domains: changed,
            warnings,
        };
        self.observe_bundles(&update, by);
        Ok(Some(update))
    }

    /// Returns the settings of `config` (the configuration in force) with the bundles of
    /// `snapshot`, adding to `warnings` what they break. Fails when a bundle cannot be used.
    fn rebundled(
        &self,
        config: &Config,
        snapshot: &Snapshot,
        warnings: &mut Vec<String>,
    ) -> Result<Settings, ReloadError> {
        let filled = fill(config, snapshot)?;
        let old = self.parts.settings.load();
        let attestor = old
            .attestor
            .rebundle(
                &filled.trust_domains,
                filled.server.tls_client_ca.as_deref(),
            )
            .map_err(AssembleError::from)?;
        let trust = filled.x509_trust();
        let now_ms = self.parts.clock.unix_millis();
        if let Err(e) = self.parts.signing.prepare(&filled.signing, &trust, now_ms) {
            warnings.push(format!("minted X.509-SVIDs would not verify: {e}"));
        }
        Ok(Settings::new(SettingsParts {
            attestor: Arc::new(attestor),
            grants: config.grants.clone(),
            lint: config.grant_warnings.clone(),
            access: Access::new(config.admin_ids.clone()),
            bundles: trust.bundles,
        }))
    }

    /// Records, for each trust domain whose bundles differ between `old` and `new`, the time
    /// they changed.
    pub(super) fn bundles_changed(&self, old: &Snapshot, new: &Snapshot) {
        let now = self.parts.clock.unix_seconds();
        for domain in changed(old, new) {
            self.parts
                .workload_api
                .metrics()
                .bundle_updated(&domain, now);
        }
    }

    /// Logs and audits an applied bundle update, which came `by` a Workload API or a bundle
    /// endpoint.
    fn observe_bundles(&self, update: &BundleUpdate, by: &str) {
        for warning in &update.warnings {
            tracing::warn!("{warning}");
        }
        tracing::info!(
            generation = update.generation,
            trust_domains = %update.trust_domains.join(", "),
            "trust bundles from the {} put in force",
            if by == "bundle_endpoint" { "bundle endpoint" } else { "Workload API" }
        );
        self.parts.audit.record(
            "trust_bundle_updated",
            serde_json::json!({
                "by": by, "generation": update.generation,
                "trust_domains": update.trust_domains, "warnings": update.warnings,
            }),
        );
    }
}

/// Returns the trust domains whose bundles differ between `old` and `new`, sorted.
fn changed(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut domains: Vec<&String> = old.keys().chain(new.keys()).collect();
    domains.sort();
    domains.dedup();
    domains
        .into_iter()
        .filter(|d| old.get(*d) != new.get(*d))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload_api::{DomainBundles, JwtKey};

    fn snapshot(entries: &[(&str, &[u8], &str)]) -> Snapshot {
        entries
            .iter()
            .map(|(domain, root, kid)| {
                let bundles = DomainBundles {
                    x509_roots: vec![root.to_vec()],
                    jwt_keys: vec![JwtKey {
                        kid: (*kid).to_owned(),
                        jwk_json: b"{}".to_vec(),
                    }],
                };
                ((*domain).to_owned(), bundles)
            })
            .collect()
    }

    #[test]
    fn a_domain_changes_when_a_root_or_key_differs_or_it_comes_or_goes() {
        let old = snapshot(&[("a.org", b"r1", "k1"), ("b.org", b"r1", "k1")]);
        assert!(changed(&old, &old).is_empty());
        let new = snapshot(&[("a.org", b"r2", "k1"), ("b.org", b"r1", "k2")]);
        assert_eq!(changed(&old, &new), ["a.org", "b.org"]);
        let new = snapshot(&[("a.org", b"r1", "k1"), ("c.org", b"r1", "k1")]);
        assert_eq!(changed(&old, &new), ["b.org", "c.org"]);
    }
}
