//! Wiring: turns a checked [`Config`] into the narrow handles the services use — an
//! [`Issuer`], a [`Revoker`], [`Callers`] — and proves at start that the mint CA's SVIDs verify
//! against the bundles relying parties will use. Each handle gets only what it uses.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tessera_core::attest::oidc::KeySource;
use tessera_core::attest::{
    Attestor, AttestorParams, BundleError, OidcVerifier, Usage, X509SvidError, X509SvidVerifier,
};
use tessera_core::clock::SharedClock;
use tessera_core::csr::{CsrError, VerifiedCsr};
use tessera_core::domain::CredentialKind;
use tessera_core::http_client::{HttpError, HttpsClient};
use tessera_core::mint::{JwtMinter, MintCa, MintError, MintX509Params, X509Minter};
use tessera_core::policy::Access;
use tessera_core::revocation::{RevocationIndex, RuleLog};
use tessera_core::spiffe_id::{SpiffeId, SpiffeIdError};
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
use crate::status_list::{StatusListParts, StatusLists};
use crate::watchers::Watchers;

/// Why the configured material cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("signing.jwt_key: {0}")]
    JwtKey(MintError),
    #[error("signing.ca_cert / ca_key: {0}")]
    MintCa(MintError),
    #[error("oidc_issuer `{issuer}`: {source}")]
    OidcClient { issuer: String, source: HttpError },
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    #[error(
        "signing.ca_cert: an X.509-SVID it signs for trust domain `{domain}` does not verify: {reason}"
    )]
    SelfTest {
        domain: String,
        reason: SelfTestError,
    },
}

/// Why the start-up self-test of the mint CA failed.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    #[error("trust domain name: {0}")]
    Domain(#[from] SpiffeIdError),
    #[error("test key: {0}")]
    Key(#[from] rcgen::Error),
    #[error("test CSR: {0}")]
    Csr(#[from] CsrError),
    #[error("no mint CA is configured ([signing] ca_cert)")]
    NoMintCa,
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Verify(#[from] X509SvidError),
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
    pub jwt: Arc<JwtMinter>,
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

/// What the configured keys, bundles and issuers become, checked: everything start-up proves
/// before it opens the audit log or the ledger (what `tessera check` runs).
pub struct Material {
    pub attestor: Arc<Attestor>,
    pub jwt: Arc<JwtMinter>,
    pub x509: Option<Arc<X509Minter>>,
    /// DER X.509 roots by trust domain name.
    pub bundles: HashMap<String, Vec<Vec<u8>>>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material").finish_non_exhaustive()
    }
}

/// Returns the checked material of `config`. Fails when a key or bundle cannot be used, an OIDC
/// issuer's extra root is unusable, or the mint CA does not chain to the bundle of a trust
/// domain it mints for (the self-test). Opens nothing, binds nothing.
pub fn material(config: &Config, clock: &SharedClock) -> Result<Material, AssembleError> {
    let attestor = Arc::new(Attestor::new(AttestorParams {
        domains: &config.trust_domains,
        audience: &config.server.audience,
        client_ca: config.server.tls_client_ca.as_deref(),
        oidc: oidc_verifier(config, clock)?,
    })?);
    let (jwt, x509) = minters(config)?;
    let bundles: HashMap<String, Vec<Vec<u8>>> = config
        .trust_domains
        .iter()
        .map(|td| {
            let roots = td.x509_roots.iter().map(|c| c.to_vec()).collect();
            (td.name.as_str().to_owned(), roots)
        })
        .collect();
    self_test(config, x509.as_deref(), &bundles, clock)?;
    Ok(Material {
        attestor,
        jwt,
        x509,
        bundles,
    })
}

/// Builds the services of `config` on `ledger`, recording into `metrics`. Fails when the
/// [`material`] does not check, or the audit log cannot be opened.
pub fn services(
    config: &Config,
    ledger: Arc<dyn Ledger>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
) -> Result<Services, AssembleError> {
    let Material {
        attestor,
        jwt,
        x509,
        bundles,
    } = material(config, &clock)?;
    let audit = Audit::new(
        Some(AuditLog::open(&config.audit_path)?),
        Arc::clone(&clock),
    );
    let revocations = Arc::new(RevocationIndex::new());
    let status_lists = Arc::new(StatusLists::new(StatusListParts {
        issuer: config.server.issuer.clone(),
        jwt: Arc::clone(&jwt),
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
        jwt: Arc::clone(&jwt),
        x509: x509.clone(),
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
        x509,
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
        jwt,
        ledger,
        limits: Limits::new(config.server.max_in_flight),
        watchers: Watchers::new(config.server.watch),
        rules,
        audit,
        metrics,
        clock,
    })
}

/// The JWT minter and, when a mint CA is configured, the X.509-SVID minter.
type Minters = (Arc<JwtMinter>, Option<Arc<X509Minter>>);

/// Returns the minters of `[signing]`; fails when a key or the CA chain cannot be used.
fn minters(config: &Config) -> Result<Minters, AssembleError> {
    let jwt = JwtMinter::new(&config.server.issuer, &config.signing.jwt_key)
        .map_err(AssembleError::JwtKey)?;
    let x509 = match (&config.signing.ca_cert, &config.signing.ca_key) {
        (Some(chain), Some(key)) => Some(Arc::new(X509Minter::new(
            MintCa::new(chain, key).map_err(AssembleError::MintCa)?,
        ))),
        _ => None,
    };
    Ok((Arc::new(jwt), x509))
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

/// For every trust domain a grant mints X.509-SVIDs in, mints a throwaway SVID and verifies it
/// as a relying party would. Fails naming the first domain whose SVIDs would not verify.
fn self_test(
    config: &Config,
    minter: Option<&X509Minter>,
    bundles: &HashMap<String, Vec<Vec<u8>>>,
    clock: &SharedClock,
) -> Result<(), AssembleError> {
    let domains: BTreeSet<&str> = config
        .grants
        .iter()
        .filter(|g| g.credentials.contains(&CredentialKind::X509))
        .map(|g| g.workload.trust_domain_name())
        .collect();
    for domain in domains {
        let roots = bundles.get(domain).map(Vec::as_slice).unwrap_or_default();
        self_test_domain(domain, minter, roots, clock.unix_seconds()).map_err(|reason| {
            AssembleError::SelfTest {
                domain: domain.to_owned(),
                reason,
            }
        })?;
    }
    Ok(())
}

/// Mints an X.509-SVID for `spiffe://<domain>/tessera/self-test` (nothing is recorded) and
/// verifies it against `roots` with the SPIFFE leaf rules; fails with why it does not verify.
fn self_test_domain(
    domain: &str,
    minter: Option<&X509Minter>,
    roots: &[Vec<u8>],
    now: i64,
) -> Result<(), SelfTestError> {
    let id: SpiffeId = format!("spiffe://{domain}/tessera/self-test").parse()?;
    let key = rcgen::KeyPair::generate()?;
    let csr_der = rcgen::CertificateParams::default().serialize_request(&key)?;
    let csr = VerifiedCsr::from_der(csr_der.der())?;
    let minter = minter.ok_or(SelfTestError::NoMintCa)?;
    let minted = minter.mint(MintX509Params {
        workload: &id,
        destination: "self-test",
        purpose: "self-test",
        csr: &csr,
        ttl: Duration::from_secs(60),
        issued_ms: now * 1000,
    })?;
    let chain: Vec<CertificateDer<'_>> = minted.chain.iter().map(|c| c.as_slice().into()).collect();
    let roots: Vec<CertificateDer<'static>> = roots
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    // As a relying party verifies it (the attestor itself refuses minted certificates).
    X509SvidVerifier::for_bundle(domain, &roots)?.verify_for(&chain, now, Usage::ClientAuth)?;
    Ok(())
}
