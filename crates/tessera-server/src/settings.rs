//! What a reload replaces, as one immutable snapshot: the attestor (trust bundles, OIDC
//! issuers), the grants and their index, the admin list, and the X.509 bundles replies carry.
//! A request takes the snapshot once ([`Current::load`]) and finishes under it, so a reload
//! never changes the rules half-way through a mint. Each snapshot has a generation; the issuer
//! compares it after choosing an issue time, so that a mint racing a reload that offboarded
//! its grant is refused instead of escaping the offboarding rule.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use tessera_core::attest::{Attestor, X509SvidVerifier};
use tessera_core::policy::{Access, Grant, Policy};

use crate::config::GrantWarning;

/// One generation of the reloadable configuration.
pub struct Settings {
    /// 1 at start, then one more per applied reload.
    pub generation: u64,
    pub attestor: Arc<Attestor>,
    pub policy: Policy,
    /// The start-up lint about each grant (by name), for the inventory and review.
    pub lint: Vec<GrantWarning>,
    pub access: Arc<Access>,
    /// DER X.509 roots by trust domain name, returned as `trust_bundle`.
    pub bundles: HashMap<String, Vec<Vec<u8>>>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("generation", &self.generation)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Parameters of [`Settings::new`].
#[derive(Debug)]
pub struct SettingsParts {
    pub attestor: Arc<Attestor>,
    pub grants: Vec<Grant>,
    pub lint: Vec<GrantWarning>,
    pub access: Access,
    pub bundles: HashMap<String, Vec<Vec<u8>>>,
}

impl Settings {
    /// Returns the settings of `parts` (generation 0 until [`Current`] numbers them).
    pub fn new(parts: SettingsParts) -> Self {
        let policy = Policy::new(parts.grants);
        Settings {
            generation: 0,
            policy,
            lint: parts.lint,
            attestor: parts.attestor,
            access: Arc::new(parts.access),
            bundles: parts.bundles,
        }
    }
}

/// The settings in force; swapped whole by a reload.
#[derive(Debug)]
pub struct Current {
    inner: RwLock<Arc<Settings>>,
}

impl Current {
    /// Starts with `settings` as generation 1.
    pub fn new(mut settings: Settings) -> Self {
        settings.generation = 1;
        Current {
            inner: RwLock::new(Arc::new(settings)),
        }
    }

    /// Returns the settings in force now.
    pub fn load(&self) -> Arc<Settings> {
        Arc::clone(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `settings` in force as the next generation; returns it and the settings it
    /// replaced.
    pub fn replace(&self, mut settings: Settings) -> (Arc<Settings>, Arc<Settings>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        settings.generation = inner.generation + 1;
        let new = Arc::new(settings);
        let old = std::mem::replace(&mut *inner, Arc::clone(&new));
        (new, old)
    }

    /// Returns the X509-SVID verifier in force (each TLS connection verifies its peer with
    /// the one in force at its handshake).
    pub fn x509_verifier(&self) -> Arc<X509SvidVerifier> {
        Arc::clone(self.load().attestor.x509())
    }
}
