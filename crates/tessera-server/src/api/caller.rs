//! Who is calling: attests a request's evidence at the clock's time and applies the access
//! rules of [`Access`]. Every API edge that is not a mint (admin, watch, introspection, RFC
//! 7009) asks here, so authentication and authorization have one home.

use std::fmt;
use std::sync::Arc;

use tessera_core::attest::{AttestError, Attestation, Evidence};
use tessera_core::clock::SharedClock;
use tessera_core::policy::Access;
use tessera_core::spiffe_id::SpiffeId;

use crate::audit::{Audit, untrusted};
use crate::refusal::{Class, Refusal};
use crate::settings::Current;

/// Attests callers and applies the access rules.
#[derive(Clone)]
pub struct Callers {
    /// The attestor and access rules in force (reloadable).
    settings: Arc<Current>,
    audit: Audit,
    clock: SharedClock,
}

impl fmt::Debug for Callers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callers")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Callers {
    /// Attests and decides with the attestor and access rules in force in `settings`; admin
    /// actions are audited.
    pub fn new(settings: Arc<Current>, audit: Audit, clock: SharedClock) -> Self {
        Callers {
            settings,
            audit,
            clock,
        }
    }

    /// Returns the access rules in force.
    pub fn access(&self) -> Arc<Access> {
        Arc::clone(&self.settings.load().access)
    }

    /// Returns who `evidence` proves the caller to be; fails when it does not verify.
    pub async fn attest(&self, evidence: Evidence<'_>) -> Result<Attestation, AttestError> {
        let attestor = Arc::clone(&self.settings.load().attestor);
        attestor.attest(evidence, self.clock.unix_seconds()).await
    }

    /// Returns the SPIFFE ID of a workload caller for `action`; fails when the evidence does
    /// not verify or is a CI token.
    pub async fn workload(
        &self,
        evidence: Evidence<'_>,
        action: &'static str,
    ) -> Result<SpiffeId, Refusal> {
        let attestation = self.attest(evidence).await.map_err(|e| Refusal::from(&e))?;
        let id = self
            .access()
            .workload(&attestation.principal, action)
            .map_err(|e| Refusal::from(&e))?;
        Ok(id.clone())
    }

    /// Returns the SPIFFE ID of an admin caller for `action`, audited; fails (audited too)
    /// when the evidence does not verify or the caller is not in `[admin]`.
    pub async fn admin(
        &self,
        evidence: Evidence<'_>,
        action: &'static str,
    ) -> Result<SpiffeId, Refusal> {
        let attestation = self.attest(evidence).await.map_err(|e| {
            let reason = e.to_string();
            let refusal = Refusal::from(&e);
            self.audit.refusal(
                "admin_refused",
                refusal.class == Class::Unauthenticated,
                &reason,
                serde_json::json!({"action": action, "reason": untrusted(&reason)}),
            );
            refusal
        })?;
        match self.access().admin(&attestation.principal) {
            Ok(id) => {
                self.audit.record(
                    "admin",
                    serde_json::json!({"action": action, "caller": id.to_string()}),
                );
                Ok(id.clone())
            }
            Err(e) => {
                self.audit.record(
                    "admin_refused",
                    serde_json::json!({"action": action, "caller": attestation.principal.to_string(), "reason": "not an admin"}),
                );
                Err(Refusal::from(&e))
            }
        }
    }
}
