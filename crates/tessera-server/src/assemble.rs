//! Wiring: turns a checked [`Config`] into the narrow handles the services use — an
//! [`Issuer`], a [`Revoker`], [`Callers`] — around the signing material ([`Signing`]), which
//! proves at start that the mint CA's SVIDs verify against the bundles relying parties will
//! use. Each handle gets only what it uses.

use std::fmt;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tessera_core::attest::oidc::KeySource;
use tessera_core::attest::{Attestor, AttestorParams, BundleError, OidcVerifier};
use tessera_core::clock::SharedClock;
use tessera_core::http_client::{HttpError, HttpsClient};
use tessera_core::policy::Access;
use tessera_core::revocation::{RevocationIndex, RuleLog};
use tessera_ledger::Ledger;

use crate::api::caller::Callers;
use crate::audit::{Audit, AuditError, AuditLog};
use crate::config::Config;
use crate::enforcement::Enforcement;
use crate::issuer::{Issuer, IssuerParts};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::revoker::{Revoker, RevokerParts};
use crate::settings::{Current, Settings, SettingsParts};
use crate::signing::{Bundles, Signing, SigningError};
use crate::status_list::{StatusListParts, StatusLists};
use crate::watchers::Watchers;

/// Why the configured material cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("oidc_issuer `{issuer}`: {source}")]
    OidcClient { issuer: String, source: HttpError },
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
}

/// Everything the services of one server are made of.
pub struct Services {
    /// The reloadable settings in force.
    pub settings: Arc<Current>,
    pub issuer: Arc<Issuer>,
    pub revoker: Arc<Revoker>,
    /// The evidence of each rule's enforcement on this replica.
    pub enforcement: Arc<Enforcement>,
    pub status_lists: Arc<StatusLists>,
    pub callers: Callers,
    /// The JWT keys and mint CAs; a reload updates them in place.
    pub signing: Signing,
    pub ledger: Arc<dyn Ledger>,
    pub limits: Limits,
    /// The watch stream pools and the replay gate.
    pub watchers: Watchers,
    /// Every rule in force by sequence (kept by the revoker; watch replays read it).
    pub rules: Arc<RuleLog>,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// What the configured bundles and issuers become, checked: with [`start_signing`],
/// everything start-up proves before it opens the audit log or the ledger (what `tessera check`
/// runs). A reload checks its signing keys against the running ring instead
/// ([`Signing::prepare`]).
pub struct Material {
    pub attestor: Arc<Attestor>,
    /// DER X.509 roots by trust domain name.
    pub bundles: Bundles,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material").finish_non_exhaustive()
    }
}

/// Returns the checked material of `config`. Fails when a bundle cannot be used or an OIDC
/// issuer's extra root is unusable. Opens nothing, binds nothing.
/// JWT-SVID verifies the attestor's cache saves are counted in `jwt_svid_cache_hits`.
pub fn material(
    config: &Config,
    clock: &SharedClock,
    jwt_svid_cache_hits: &Counter,
) -> Result<Material, AssembleError> {
    let attestor = Arc::new(Attestor::new(AttestorParams {
        domains: &config.trust_domains,
        audience: &config.server.audience,
        client_ca: config.server.tls_client_ca.as_deref(),
        oidc: oidc_verifier(config, clock)?,
        jwt_svid_cache_hits: jwt_svid_cache_hits.clone(),
    })?);
    Ok(Material {
        attestor,
        bundles: config.x509_trust().bundles,
    })
}

/// Returns the signing material of `config` at process start (the active key and CA sign at
/// once). Fails when a key does not parse or is listed twice, or a mint CA does not chain to
/// the bundle of a trust domain it mints for (the self-test). Opens nothing, binds nothing.
pub fn start_signing(config: &Config, clock: &SharedClock) -> Result<Signing, AssembleError> {
    Ok(Signing::new(
        &config.server.issuer,
        &config.signing,
        &config.x509_trust(),
        Arc::clone(clock),
    )?)
}

/// Builds the services of `config` on `ledger`, recording into `metrics`. Fails when the
/// [`material`] or the signing material ([`start_signing`]) does not check, or the audit log
/// cannot be opened.
pub fn services(
    config: &Config,
    ledger: Arc<dyn Ledger>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
) -> Result<Services, AssembleError> {
    let Material { attestor, bundles } = material(config, &clock, &metrics.jwt_svid_cache_hits)?;
    let signing = start_signing(config, &clock)?;
    let audit = Audit::new(
        Some(AuditLog::open(
            &config.audit_path,
            metrics.audit_dropped.clone(),
        )?),
        Arc::clone(&clock),
    );
    let revocations = Arc::new(RevocationIndex::new());
    let status_lists = Arc::new(StatusLists::new(StatusListParts {
        issuer: config.server.issuer.clone(),
        jwt: Arc::clone(&signing.jwt),
        ledger: Arc::clone(&ledger),
        clock: Arc::clone(&clock),
        config: config.status_list,
    }));
    let settings = Arc::new(Current::new(Settings::new(SettingsParts {
        attestor,
        grants: config.grants.clone(),
        lint: config.grant_warnings.clone(),
        access: Access::new(config.admin_ids.clone()),
        bundles,
    })));
    let issuer = Arc::new(Issuer::new(IssuerParts {
        settings: Arc::clone(&settings),
        jwt: Arc::clone(&signing.jwt),
        x509: Arc::clone(&signing.cas),
        ledger: Arc::clone(&ledger),
        revocations: Arc::clone(&revocations),
        status_lists: Arc::clone(&status_lists),
        audit: audit.clone(),
        metrics: Arc::clone(&metrics),
        clock: Arc::clone(&clock),
    }));
    let enforcement = Arc::new(Enforcement::new(
        metrics.revocation_enforced_seconds.clone(),
    ));
    let rules = Arc::new(RuleLog::new());
    let revoker = Arc::new(Revoker::new(RevokerParts {
        ledger: Arc::clone(&ledger),
        revocations,
        rules: Arc::clone(&rules),
        cas: Arc::clone(&signing.cas),
        enforcement: Arc::clone(&enforcement),
        audit: audit.clone(),
        metrics: Arc::clone(&metrics),
        clock: Arc::clone(&clock),
    }));
    let callers = Callers::new(Arc::clone(&settings), audit.clone(), Arc::clone(&clock));
    Ok(Services {
        settings,
        issuer,
        revoker,
        enforcement,
        status_lists,
        callers,
        signing,
        ledger,
        limits: Limits::new(config.server.max_in_flight),
        watchers: Watchers::new(config.server.watch),
        rules,
        audit,
        metrics,
        clock,
    })
}

/// Builds the CI token verifier: one HTTPS client per issuer (its `ca_file` added to the
/// Mozilla roots). Fails when a `ca_file` root is unusable.
fn oidc_verifier(config: &Config, clock: &SharedClock) -> Result<OidcVerifier, AssembleError> {
    let mut sources = Vec::new();
    for issuer in &config.oidc_issuers {
        let http =
            HttpsClient::new(&issuer.extra_roots).map_err(|source| AssembleError::OidcClient {
                issuer: issuer.verify.issuer.clone(),
                source,
            })?;
        sources.push(KeySource {
            issuer: issuer.verify.issuer.clone(),
            jwks_uri: issuer.jwks_uri.clone(),
            http,
        });
    }
    let issuers = config
        .oidc_issuers
        .iter()
        .map(|i| i.verify.clone())
        .collect();
    Ok(OidcVerifier::new(issuers, sources, Arc::clone(clock)))
}
