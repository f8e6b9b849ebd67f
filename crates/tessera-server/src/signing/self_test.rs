//! The mint CA self-test: mint a throwaway X.509-SVID with a CA and verify it as a relying party
//! of a trust domain would, against that domain's X.509 bundle. Start-up runs it for the active
//! CA in every domain a grant mints X.509-SVIDs in; a reload runs it for the new active CA and
//! for every CA that still has live certificates.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tessera_core::attest::{
    BundleError, TrustDomainBundle, Usage, X509SvidError, X509SvidVerifier,
};
use tessera_core::csr::{CsrError, VerifiedCsr};
use tessera_core::domain::CredentialKind;
use tessera_core::mint::{MintError, MintX509Params, X509Minter};
use tessera_core::policy::Grant;
use tessera_core::spiffe_id::{SpiffeId, SpiffeIdError};

/// DER X.509 roots by trust domain name.
pub type Bundles = HashMap<String, Vec<Vec<u8>>>;

/// Why a minted X.509-SVID would not verify.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    #[error("trust domain name: {0}")]
    Domain(#[from] SpiffeIdError),
    #[error("test key: {0}")]
    Key(#[from] rcgen::Error),
    #[error("test CSR: {0}")]
    Csr(#[from] CsrError),
    #[error("no mint CA is configured ([signing] ca_cert or mint_cas)")]
    NoMintCa,
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Verify(#[from] X509SvidError),
}

/// What mint CAs are checked against (from a configuration: see `Config::x509_trust`).
#[derive(Clone, Default)]
pub struct Trust {
    /// The DER X.509 roots of every trust domain, by name.
    pub bundles: Bundles,
    /// The trust domains some grant mints X.509-SVIDs in.
    pub x509_domains: BTreeSet<String>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("domains", &self.bundles.keys().collect::<Vec<_>>())
            .field("x509_domains", &self.x509_domains)
            .finish()
    }
}

impl Trust {
    /// Returns the bundles of `trust_domains` and the domains `grants` mint X.509-SVIDs in.
    pub fn new(trust_domains: &[TrustDomainBundle], grants: &[Grant]) -> Trust {
        Trust {
            bundles: trust_domains
                .iter()
                .map(|td| {
                    let roots = td.x509_roots.iter().map(|c| c.to_vec()).collect();
                    (td.name.as_str().to_owned(), roots)
                })
                .collect(),
            x509_domains: grants
                .iter()
                .filter(|g| g.credentials.contains(&CredentialKind::X509))
                .map(|g| g.workload.trust_domain_name().to_owned())
                .collect(),
        }
    }

    /// Returns the roots of `domain` (none when it is not configured).
    pub fn roots(&self, domain: &str) -> &[Vec<u8>] {
        self.bundles
            .get(domain)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Mints an X.509-SVID for `spiffe://<domain>/tessera/self-test` with `minter` (nothing is
/// recorded) and verifies it against `roots` with the SPIFFE leaf rules; fails with why it does
/// not verify.
pub fn self_test_domain(
    domain: &str,
    minter: &X509Minter,
    roots: &[Vec<u8>],
    now: i64,
) -> Result<(), SelfTestError> {
    let id: SpiffeId = format!("spiffe://{domain}/tessera/self-test").parse()?;
    let key = rcgen::KeyPair::generate()?;
    let csr_der = rcgen::CertificateParams::default().serialize_request(&key)?;
    let csr = VerifiedCsr::from_der(csr_der.der())?;
    let minted = minter.mint(MintX509Params {
        workload: &id,
        destination: "self-test",
        purpose: "self-test",
        csr: &csr,
        ttl: Duration::from_secs(60),
        issued_ms: now.saturating_mul(1000),
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
