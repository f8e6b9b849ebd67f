//! The signing material of a running broker (DESIGN.md "Signing keys rotate without downtime"):
//! the JWT signing keys ([`JwtKeys`]) and the mint CAs ([`MintCas`]), each shared for the
//! process lifetime and updated in place by a reload ([`Signing::reload`]).
//!
//! - A JWT key newly seen at a reload is published in the JWKS at once and signs only once it
//!   has been published for `[signing] publish_before`; until then the key that signed keeps
//!   signing. A key no longer listed stays published, and keeps verifying, until everything it
//!   signed has expired.
//! - The active mint CA signs new X.509-SVIDs from the reload on; a CA no longer listed is kept
//!   (its CRL served at `/crl/<key id>`) until the last certificate it signed has expired and
//!   left the CRL. A reload is refused when the new active CA fails the self-test, or a CA with
//!   live certificates no longer chains to its trust domain's bundle.
//! - Whatever signs asks for the current signer once per operation and finishes with it.
//! - At process start there is no previous signer: the active key signs at once, and every
//!   configured key is assumed to have signed until now + `MAX_GRANT_TTL`. A restart is
//!   therefore not how keys rotate; a reload is.
//!
//! Time comes from the injected clock; keys leave lazily, when the ring is next read.

mod jwt_keys;
mod mint_cas;
mod self_test;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tessera_core::clock::SharedClock;
use tessera_core::keys::SecretKey;
use tessera_core::mint::MintError;
use tessera_core::policy::MAX_GRANT_TTL;

pub use self::jwt_keys::{JwtKeys, JwtSigner, PreparedJwtKeys, Published};
pub use self::mint_cas::{CaSigner, IssuingCa, MintCas, PreparedCas};
pub use self::self_test::{Bundles, SelfTestError, Trust};

/// Seconds past its `exp` a signed document may still be verified: relying parties tolerate this
/// much clock skew, so a key is kept this much longer.
pub const VERIFY_LEEWAY_SECS: i64 = 60;

/// Returns [`MAX_GRANT_TTL`] in seconds: how long anything signed before this process started
/// may still be valid.
fn max_grant_ttl_secs() -> i64 {
    i64::try_from(MAX_GRANT_TTL.as_secs()).unwrap_or(i64::MAX)
}

/// `[signing]`, checked (by `config`): every key read, exactly one active entry in each
/// non-empty list.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    /// The JWT signing keys; exactly one is active.
    pub jwt_keys: Vec<JwtKeyConfig>,
    /// How long a JWT key newly seen at a reload is published before it signs.
    pub publish_before: Duration,
    /// The mint CAs; empty when none is configured, else exactly one is active.
    pub mint_cas: Vec<MintCaConfig>,
}

/// One JWT signing key.
#[derive(Debug, Clone)]
pub struct JwtKeyConfig {
    /// Where it is configured, for messages: `signing.jwt_key` or `signing.jwt_keys[1]`.
    pub source: String,
    pub key: SecretKey,
    pub active: bool,
}

/// One mint CA: its chain (signing CA first) and key.
#[derive(Debug, Clone)]
pub struct MintCaConfig {
    /// Where it is configured, for messages: `signing.ca_cert` or `signing.mint_cas[1]`.
    pub source: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: SecretKey,
    pub active: bool,
}

impl SigningConfig {
    /// Returns the active JWT key (validation guarantees there is exactly one).
    pub fn active_jwt_key(&self) -> Option<&JwtKeyConfig> {
        self.jwt_keys.iter().find(|k| k.active)
    }

    /// Returns the active mint CA, or `None` when no mint CA is configured.
    pub fn active_ca(&self) -> Option<&MintCaConfig> {
        self.mint_cas.iter().find(|c| c.active)
    }
}

/// Why signing material cannot be used. `Display` names the configuration key.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{key}: {error}")]
    JwtKey { key: String, error: MintError },
    #[error("{key}: the same key as {other} (kid `{kid}`): list each key once")]
    DuplicateJwtKey {
        key: String,
        other: String,
        kid: String,
    },
    #[error("{key}: {error}")]
    MintCa { key: String, error: MintError },
    #[error("{key}: the same CA key as {other}: list each CA once")]
    DuplicateCa { key: String, other: String },
    #[error("{key}: an X.509-SVID it signs for trust domain `{domain}` does not verify: {reason}")]
    SelfTest {
        key: String,
        domain: String,
        reason: Box<SelfTestError>,
    },
    #[error(
        "signing: mint CA `{ca}` (key id {key_id}) has certificates in trust domain `{domain}` \
         valid until {until} (unix seconds) that would no longer verify: {reason}; keep its root \
         in that trust domain's x509_bundle until they have expired"
    )]
    LiveCa {
        ca: String,
        key_id: String,
        domain: String,
        until: i64,
        reason: Box<SelfTestError>,
    },
}

/// A new `[signing]`, parsed and checked against the running ring: what [`Signing::commit`]
/// takes.
#[derive(Debug)]
pub struct PreparedSigning {
    jwt: PreparedJwtKeys,
    cas: PreparedCas,
}

/// Every key and CA that signs, shared by whatever signs or verifies.
#[derive(Clone)]
pub struct Signing {
    pub jwt: Arc<JwtKeys>,
    pub cas: Arc<MintCas>,
}

impl fmt::Debug for Signing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signing")
            .field("jwt", &self.jwt)
            .field("cas", &self.cas)
            .finish()
    }
}

impl Signing {
    /// Returns the signing material of `signing` at process start, tokens minted as `issuer`:
    /// the active key and CA sign at once. Fails naming the key when a key does not parse, a key
    /// is listed twice, or a CA fails the self-test against the bundles of `trust`.
    pub fn new(
        issuer: &str,
        signing: &SigningConfig,
        trust: &Trust,
        clock: SharedClock,
    ) -> Result<Signing, SigningError> {
        Ok(Signing {
            jwt: Arc::new(JwtKeys::new(issuer, signing, Arc::clone(&clock))?),
            cas: Arc::new(MintCas::new(signing, trust, clock)?),
        })
    }

    /// Takes `signing` (from a new configuration, already validated as a whole) at `now_ms`,
    /// checked against `trust` (`Config::x509_trust` of that configuration): new JWT keys are
    /// published at once and sign after `publish_before`, the new active CA signs at once, keys
    /// and CAs no longer listed are kept until what they signed has expired. Every check runs
    /// before anything changes: on error nothing changed. Fails naming the key when a key does
    /// not parse or is listed twice, or the active CA fails the self-test; fails naming the CA
    /// when one with live certificates would no longer chain to its trust domain's bundle.
    pub fn reload(
        &self,
        signing: &SigningConfig,
        trust: &Trust,
        now_ms: i64,
    ) -> Result<(), SigningError> {
        let prepared = self.prepare(signing, trust, now_ms)?;
        self.commit(prepared, now_ms);
        Ok(())
    }

    /// The checking half of [`Signing::reload`]: parses and checks `signing` against `trust`
    /// and the live certificates at `now_ms`, changing nothing. Fails as `reload` does.
    pub fn prepare(
        &self,
        signing: &SigningConfig,
        trust: &Trust,
        now_ms: i64,
    ) -> Result<PreparedSigning, SigningError> {
        Ok(PreparedSigning {
            jwt: self.jwt.prepare(signing)?,
            cas: self.cas.prepare(signing, trust, now_ms)?,
        })
    }

    /// The applying half of [`Signing::reload`]: puts `prepared` in force at `now_ms`. Cannot
    /// fail. Commit only what was prepared against this ring, by the last `prepare`.
    pub fn commit(&self, prepared: PreparedSigning, now_ms: i64) {
        self.jwt.commit(prepared.jwt, now_ms);
        self.cas.commit(prepared.cas, now_ms);
    }
}

#[cfg(test)]
#[path = "jwt_keys_tests.rs"]
mod jwt_keys_tests;

#[cfg(test)]
#[path = "mint_cas_tests.rs"]
mod mint_cas_tests;
