//! Reloading the configuration without a restart (SIGHUP, `Admin/Reload`, `tessera reload`).
//! The file is checked whole — every check start-up runs, keys, bundles and the mint CA
//! self-test included — and only then put in force; an invalid file changes nothing. Trust
//! bundles, OIDC issuers, grants, the admin list and the signing keys and mint CAs
//! ([`crate::signing`]) reload; what needs a restart (listeners,
//! the ledger, the audit log, …) is reported, not applied. What the reload took away from the
//! grants is revoked at once ([`offboard`]). Trust domains whose bundles come from a SPIFFE
//! Workload API take the bundles it sends now; new bundles it sends later are put in force the
//! same way, as a new settings generation of the configuration in force ([`bundles`]).

mod bundles;
pub mod offboard;
mod sections;

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tessera_core::clock::SharedClock;
use tessera_core::domain::Selector;
use tokio::sync::Mutex;

use crate::assemble::{AssembleError, Services, material};
use crate::audit::Audit;
use crate::config::{Config, ConfigError};
use crate::refusal::{Class, OAuthCode, Refusal};
use crate::revoker::{RevokeParams, Revoker};
use crate::settings::{Current, Settings, SettingsParts};
use crate::signing::{PreparedSigning, Signing};
use crate::workload_api::{Snapshot, WorkloadApi, WorkloadApiError};

use self::offboard::Removal;
use self::sections::Sections;

/// Why a reload was refused or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the configuration was not reloaded: {0}")]
    Config(#[from] ConfigError),
    #[error("the configuration was not reloaded: {0}")]
    Material(#[from] AssembleError),
    #[error("the configuration was not reloaded: reading it failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the configuration was not reloaded: {0}")]
    WorkloadApi(#[from] WorkloadApiError),
    #[error(
        "the configuration was reloaded (generation {generation}), but offboarding failed for \
         {failed}: reload again once the ledger answers (the next reload retries them)"
    )]
    Offboarding { generation: u64, failed: String },
}

// Classified here rather than in `refusal` (like every other error) because `reload` builds on
// `assemble`, which builds the API's callers, which render refusals: the other way round
// would be a module cycle.
impl From<&ReloadError> for Refusal {
    fn from(e: &ReloadError) -> Self {
        match e {
            ReloadError::Config(_) | ReloadError::Material(_) | ReloadError::WorkloadApi(_) => {
                Refusal::new(
                    Class::Precondition,
                    OAuthCode::InvalidRequest,
                    e.to_string(),
                )
            }
            ReloadError::Task(_) => {
                Refusal::new(Class::Internal, OAuthCode::ServerError, e.to_string())
            }
            ReloadError::Offboarding { .. } => Refusal::new(
                Class::Unavailable,
                OAuthCode::TemporarilyUnavailable,
                e.to_string(),
            ),
        }
    }
}

/// What a reload took away and revoked.
#[derive(Debug, Clone, Serialize)]
pub struct Offboarded {
    /// The value of the `grant` rule: `<grant>` or `<grant>/<part>=<value>`.
    pub grant: String,
    pub reason: String,
    pub revocation_id: String,
    /// Live credentials the rule covered.
    pub covered: u64,
}

/// What an applied reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// The generation now in force.
    pub generation: u64,
    pub offboarded: Vec<Offboarded>,
    /// What changed in the file but needs a restart (e.g. `server.grpc_addr`).
    pub restart_required: Vec<String>,
    /// The new configuration's warnings (as logged at start-up).
    pub warnings: Vec<String>,
}

/// Parameters of [`Reloader::new`].
pub struct ReloaderParts {
    /// The configuration file the process started from.
    pub source: PathBuf,
    pub settings: Arc<Current>,
    /// The JWT keys and mint CAs, updated in place.
    pub signing: Signing,
    pub revoker: Arc<Revoker>,
    /// The Workload API endpoints followed for trust bundles.
    pub workload_api: Arc<WorkloadApi>,
    pub audit: Audit,
    pub clock: SharedClock,
}

impl std::fmt::Debug for ReloaderParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloaderParts")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Reloads the configuration, one reload at a time.
pub struct Reloader {
    parts: ReloaderParts,
    /// The sections of the file the process started from (what needs a restart is still as
    /// they say), and the offboarding revokes that failed (tried again by the next reload).
    in_force: Mutex<InForce>,
}

/// What the reloader keeps between reloads.
#[derive(Debug)]
struct InForce {
    sections: Sections,
    /// Removals whose revoke could not be stored: the grants are already gone from the
    /// settings, so a later reload would not find them again by comparing.
    pending: Vec<Removal>,
    /// The configuration in force, its Workload-API trust domains without bundles.
    config: Config,
    /// The Workload API bundles in force, by trust domain.
    bundles: Snapshot,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("source", &self.parts.source)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader of `parts.source`, whose configuration in force is `config` (as the process
    /// started from it, Workload-API trust domains without bundles) with the Workload API
    /// bundles `bundles`.
    pub fn new(parts: ReloaderParts, config: Config, bundles: Snapshot) -> Self {
        let mut reloader = Reloader {
            in_force: Mutex::new(InForce {
                sections: Sections::parse(&config.text.0),
                pending: Vec::new(),
                config,
                bundles: Snapshot::new(),
            }),
            parts,
        };
        reloader.bundles_changed(&Snapshot::new(), &bundles);
        reloader.in_force.get_mut().bundles = bundles;
        reloader
    }

    /// Returns the reloader of `config`'s file (as read at start, Workload-API trust domains
    /// without bundles), whose Workload API bundles in force are `bundles`, for the settings and
    /// signing material of `s`.
    pub fn of(
        config: Config,
        bundles: Snapshot,
        s: &Services,
        workload_api: Arc<WorkloadApi>,
    ) -> Self {
        let parts = ReloaderParts {
            source: config.source.clone(),
            settings: Arc::clone(&s.settings),
            signing: s.signing.clone(),
            revoker: Arc::clone(&s.revoker),
            workload_api,
            audit: s.audit.clone(),
            clock: Arc::clone(&s.clock),
        };
        Reloader::new(parts, config, bundles)
    }

    /// Reads and checks the configuration file again and puts it in force, then revokes what
    /// it took away; `by` (who asked: `SIGHUP` or an admin's SPIFFE ID) is audited. Returns
    /// what was done. Fails, changing nothing, when the file is invalid; fails after applying
    /// it when an offboarding revoke could not be stored (the error names them).
    pub async fn reload(&self, by: &str) -> Result<ReloadReport, ReloadError> {
        let mut in_force = self.in_force.lock().await;
        let (checked, config, bundles) = match self.prepare().await {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::error!(error = %e, by, "configuration reload refused");
                self.parts.audit.record(
                    "config_reload_refused",
                    serde_json::json!({"by": by, "error": e.to_string()}),
                );
                return Err(e);
            }
        };
        // Compared with the file at start: what needs a restart is still as it was then, so a
        // second reload reports it again.
        let restart_required = in_force
            .sections
            .restart_required(&Sections::parse(&config.text.0));
        let now_ms = self.parts.clock.unix_millis();
        self.parts.signing.commit(checked.signing, now_ms);
        let (new, old) = self.parts.settings.replace(checked.settings);
        self.parts.workload_api.retain(&config.workload_api);
        self.bundles_changed(&in_force.bundles, &bundles);
        in_force.bundles = bundles;
        in_force.config = config;
        let mut removals = std::mem::take(&mut in_force.pending);
        removals.extend(offboard::removals(old.policy.grants(), new.policy.grants()));
        let (offboarded, failed) = self.offboard(removals, by).await;
        let report = ReloadReport {
            generation: new.generation,
            offboarded,
            restart_required,
            warnings: checked.warnings,
        };
        self.observe(&report, by);
        if !failed.is_empty() {
            let names: Vec<String> = failed.iter().map(|r| r.selection.to_string()).collect();
            in_force.pending = failed;
            return Err(ReloadError::Offboarding {
                generation: new.generation,
                failed: names.join(", "),
            });
        }
        Ok(report)
    }

    /// Reads the configuration file, takes the bundles of its Workload-API trust domains (first
    /// following the endpoints it newly names), checks and assembles it; returns its settings,
    /// the configuration as read, and the bundles it was assembled with. Fails, changing
    /// nothing in force, when the file is invalid or a Workload API sends no bundle for one of
    /// its trust domains.
    async fn prepare(&self) -> Result<(Checked, Config, Snapshot), ReloadError> {
        let source = self.parts.source.clone();
        let clock = Arc::clone(&self.parts.clock);
        let config = tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&source).map_err(|e| ConfigError::Read {
                file: source.clone(),
                source: e,
            })?;
            Config::parse(&source, &text, clock.as_ref())
        })
        .await??;
        let (filled, bundles) = self.parts.workload_api.configure(&config).await?;
        let clock = Arc::clone(&self.parts.clock);
        let signing = self.parts.signing.clone();
        let hits = self
            .parts
            .settings
            .load()
            .attestor
            .jwt_svid_cache_hits()
            .clone();
        let checked =
            tokio::task::spawn_blocking(move || Checked::of(&filled, &clock, &signing, &hits))
                .await??;
        Ok((checked, config, bundles))
    }

    /// Revokes each of `removals` as a `grant` rule; returns what was revoked and the
    /// removals whose revoke failed.
    async fn offboard(&self, removals: Vec<Removal>, by: &str) -> (Vec<Offboarded>, Vec<Removal>) {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for removal in removals {
            let value = removal.selection.to_string();
            let outcome = self
                .parts
                .revoker
                .revoke(RevokeParams {
                    selector: Selector::Grant,
                    value: value.clone(),
                    reason: removal.reason.clone(),
                    revoked_by: by.to_owned(),
                })
                .await;
            match outcome {
                Ok(outcome) => done.push(Offboarded {
                    grant: value,
                    reason: removal.reason,
                    revocation_id: outcome.rule.rule.revocation_id,
                    covered: outcome.covered,
                }),
                Err(e) => {
                    tracing::error!(grant = %value, error = %e, "offboarding revoke failed");
                    failed.push(removal);
                }
            }
        }
        (done, failed)
    }

    /// Logs and audits an applied reload.
    fn observe(&self, report: &ReloadReport, by: &str) {
        for warning in &report.warnings {
            tracing::warn!("{warning}");
        }
        if !report.restart_required.is_empty() {
            tracing::warn!(
                keys = %report.restart_required.join(", "),
                "changed in the configuration file, applied only at the next restart"
            );
        }
        tracing::info!(
            generation = report.generation,
            offboarded = report.offboarded.len(),
            by,
            "configuration reloaded"
        );
        self.parts.audit.record(
            "config_reloaded",
            serde_json::json!({
                "by": by, "generation": report.generation, "offboarded": report.offboarded,
                "restart_required": report.restart_required,
            }),
        );
    }
}

/// A configuration checked as start-up checks it (its signing keys against the running ring),
/// made into settings and signing material.
struct Checked {
    settings: Settings,
    signing: PreparedSigning,
    warnings: Vec<String>,
}

impl Checked {
    /// Returns the settings and signing material of `config`; fails when its material does not
    /// check, or its signing keys or mint CAs cannot take over from those of `signing`.
    fn of(
        config: &Config,
        clock: &SharedClock,
        signing: &Signing,
        jwt_svid_cache_hits: &Counter,
    ) -> Result<Self, AssembleError> {
        let material = material(config, clock, jwt_svid_cache_hits)?;
        let trust = config.x509_trust();
        Ok(Checked {
            signing: signing.prepare(&config.signing, &trust, clock.unix_millis())?,
            settings: Settings::new(SettingsParts {
                attestor: material.attestor,
                grants: config.grants.clone(),
                lint: config.grant_warnings.clone(),
                access: tessera_core::policy::Access::new(config.admin_ids.clone()),
                bundles: material.bundles,
            }),
            warnings: config.warnings.clone(),
        })
    }
}
