//! A credential source: what a Rust service embeds to always hold a fresh credential for one
//! destination and purpose, and what `tessera agent` runs for each credential it writes.
//!
//! A source mints at start, renews at a random point between 40 % and 60 % of each
//! credential's lifetime ([`Schedule`], so that sources started together do not renew
//! together), retries failures with exponential backoff and jitter without waiting past the
//! end of the credential held, keeps serving the last good credential while the broker is
//! unreachable ([`SourceStatus::stale`]), follows `WatchRevocations` and renews at once when a
//! rule covers the credential held. [`CredentialSource::current`] returns the credential held;
//! [`CredentialSource::subscribe`] tells of every change.
//!
//! [`JwtSource`] holds JWTs; [`X509SvidSource`] holds X.509-SVIDs whose P-256 key is made in
//! this process for each one: only a CSR (the public key) is sent.
//!
//! How the source proves what it is comes from an [`Attestor`] asked before every call: an
//! X509-SVID from files ([`X509SvidFiles`]), a JWT-SVID or CI / Kubernetes token from a file
//! ([`TokenFile`]), or anything implementing the trait. Time comes from the injected clock,
//! randomness from the injected [`Jitter`].
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tessera_client::source::{BrokerAddress, GrpcBroker, JwtSource, SourceParams, TokenFile};
//!
//! let broker = GrpcBroker::new(
//!     BrokerAddress {
//!         url: "https://tessera.example.org:8443".into(),
//!         ca_pem: std::fs::read("ca.pem")?,
//!         server_name: "tessera.example.org".into(),
//!     },
//!     Arc::new(TokenFile { path: "/var/run/secrets/tokens/tessera".into() }),
//! );
//! let source = JwtSource::start(
//!     SourceParams::new("https://ledger.example.org", "ledger:write"),
//!     Arc::new(broker),
//! )
//! .await?;
//! let token = source.current().map(|c| c.token().to_owned());
//! # Ok(()) }
//! ```

mod broker;
mod credential;
mod driver;
mod error;
mod evidence;
mod local_key;
mod revocations;
mod schedule;
mod state;
#[cfg(feature = "workload-api")]
mod workload_api;

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use tessera_core::clock::{SharedClock, SystemClock};

pub use self::broker::{Broker, BrokerAddress, GrpcBroker, RevocationStream};
pub use self::credential::{Issued, JwtCredential, Mintable, X509SvidCredential};
use self::driver::AbortOnDrop;
pub use self::error::SourceError;
pub use self::evidence::{Attestor, Evidence, FixedEvidence, TokenFile, X509SvidFiles};
pub use self::schedule::{FixedJitter, Jitter, RandomJitter, Schedule};
use self::state::Shared;
pub use self::state::SourceStatus;
#[cfg(feature = "workload-api")]
pub use self::workload_api::WorkloadApiSvid;

/// What a source mints and how it schedules.
#[derive(Clone)]
pub struct SourceParams {
    pub destination: String,
    pub purpose: String,
    /// 0: the grant's default TTL.
    pub ttl_seconds: u32,
    pub schedule: Schedule,
    /// Follow `WatchRevocations` and renew at once when a rule covers the credential held
    /// (default). The broker lets X509-SVIDs and JWT-SVIDs watch, not CI tokens.
    pub follow_revocations: bool,
    pub clock: SharedClock,
    pub jitter: Arc<dyn Jitter>,
}

impl SourceParams {
    /// Returns parameters for `destination` and `purpose` with the grant's default TTL, the
    /// default [`Schedule`], revocations followed, the system clock and random jitter.
    pub fn new(destination: &str, purpose: &str) -> Self {
        SourceParams {
            destination: destination.to_owned(),
            purpose: purpose.to_owned(),
            ttl_seconds: 0,
            schedule: Schedule::default(),
            follow_revocations: true,
            clock: Arc::new(SystemClock),
            jitter: Arc::new(RandomJitter),
        }
    }
}

impl fmt::Debug for SourceParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceParams")
            .field("destination", &self.destination)
            .field("purpose", &self.purpose)
            .field("ttl_seconds", &self.ttl_seconds)
            .field("schedule", &self.schedule)
            .field("follow_revocations", &self.follow_revocations)
            .finish_non_exhaustive()
    }
}

/// Keeps one credential fresh. Clones share the source; it stops when the last is dropped.
#[derive(Debug)]
pub struct CredentialSource<C: Mintable> {
    shared: Arc<Shared<C>>,
    _task: Arc<AbortOnDrop>,
}

impl<C: Mintable> Clone for CredentialSource<C> {
    fn clone(&self) -> Self {
        CredentialSource {
            shared: Arc::clone(&self.shared),
            _task: Arc::clone(&self._task),
        }
    }
}

/// A source of JWTs.
pub type JwtSource = CredentialSource<JwtCredential>;
/// A source of X.509-SVIDs with keys made in this process.
pub type X509SvidSource = CredentialSource<X509SvidCredential>;

impl<C: Mintable> CredentialSource<C> {
    /// Starts the source on the current tokio runtime and returns at once; the first mint is
    /// under way. Panics outside a tokio runtime.
    pub fn spawn(params: SourceParams, broker: Arc<dyn Broker>) -> Self {
        let shared = Arc::new(Shared::new(Arc::clone(&params.clock)));
        let task = tokio::spawn(driver::run(Arc::clone(&shared), broker, params));
        CredentialSource {
            shared,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    /// Starts the source and waits for its first credential (see [`Self::ready`]). Fails when
    /// the first mint is refused for good; waits through transient failures (bound it with a
    /// timeout).
    pub async fn start(params: SourceParams, broker: Arc<dyn Broker>) -> Result<Self, SourceError> {
        let source = Self::spawn(params, broker);
        source.ready().await?;
        Ok(source)
    }

    /// Returns the credential held, waiting for the first one. Fails with the error that
    /// stopped the source: its first mint refused for good (evidence missing or refused —
    /// `UNAUTHENTICATED`, no grant — `PERMISSION_DENIED`, a bad request — `INVALID_ARGUMENT`).
    /// Transient failures (the broker unreachable) are retried meanwhile: see
    /// [`Self::status`] for the last one.
    pub async fn ready(&self) -> Result<Arc<C>, SourceError> {
        let mut changes = self.shared.subscribe();
        loop {
            if let Some(credential) = changes.borrow_and_update().clone() {
                return Ok(credential);
            }
            if let Some(error) = self.shared.stopped() {
                return Err(error);
            }
            if changes.changed().await.is_err() {
                return Err(SourceError::Stopped);
            }
        }
    }

    /// Returns the credential held: the newest one minted, kept while renewals fail (check
    /// [`Self::status`] for staleness and its expiry). `None` before the first mint, after the
    /// source stopped, or while the one held is known to be revoked and no new one came yet.
    pub fn current(&self) -> Option<Arc<C>> {
        self.shared.current()
    }

    /// Returns a receiver that sees every change of the credential held.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<C>>> {
        self.shared.subscribe()
    }

    /// Returns how the source is doing: staleness, expiry, the last error, the next attempt.
    pub fn status(&self) -> SourceStatus {
        self.shared.status()
    }

    /// Returns the credentials minted so far (the first one included).
    pub fn renewals(&self) -> u64 {
        self.shared.renewals()
    }

    /// Returns the failed attempts to mint so far.
    pub fn failures(&self) -> u64 {
        self.shared.failures()
    }

    /// Returns the renewals made at once because a revocation rule covered the credential held.
    pub fn revocation_renewals(&self) -> u64 {
        self.shared.revocation_renewals()
    }

    /// Returns the seconds until the credential held expires (negative once it has), by the
    /// source's clock; `None` when none is held.
    pub fn seconds_to_expiry(&self) -> Option<f64> {
        let held = self.current()?;
        let left_ms = held
            .issued()
            .local_expiry_ms()
            .saturating_sub(self.shared.clock.unix_millis());
        Some(left_ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests;
