//! The request flow of one mint, in one direction: attest → policy → mint → ledger → reply.
//! Transport-neutral: the gRPC and HTTP layers call it and translate its errors once.

use std::fmt;
use std::sync::Arc;

use crate::attest::{AttestError, Attestation, Attestor, Evidence};
use crate::clock::SharedClock;
use crate::ledger::{CredentialKind, CredentialRecord, Ledger, LedgerError, Status};
use crate::mint::{JwtMinter, MintError, MintJwtParams, MintedJwt};
use crate::policy::{DecideParams, Decision, Policy, PolicyError};
use crate::request::CredentialRequest;

/// Why a mint did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Attest(#[from] AttestError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Everything a mint needs, shared by all connections.
pub struct Broker {
    attestor: Attestor,
    policy: Policy,
    jwt: JwtMinter,
    ledger: Arc<dyn Ledger>,
    clock: SharedClock,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("policy", &self.policy)
            .field("jwt", &self.jwt)
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

/// Parameters of [`Broker::new`].
#[derive(Debug)]
pub struct BrokerParts {
    pub attestor: Attestor,
    pub policy: Policy,
    pub jwt: JwtMinter,
    pub ledger: Arc<dyn Ledger>,
    pub clock: SharedClock,
}

impl Broker {
    /// Assembles a broker from its parts.
    pub fn new(parts: BrokerParts) -> Self {
        Broker {
            attestor: parts.attestor,
            policy: parts.policy,
            jwt: parts.jwt,
            ledger: parts.ledger,
            clock: parts.clock,
        }
    }

    /// Returns the attestor (the TLS layer verifies client certificates with it).
    pub fn attestor(&self) -> &Attestor {
        &self.attestor
    }

    /// Returns the JWT minter (HTTP serves its JWKS).
    pub fn jwt_minter(&self) -> &JwtMinter {
        &self.jwt
    }

    /// Returns the ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Returns the clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Attests the caller and decides; the pure, synchronous part of a mint. Returns the
    /// attestation and the decision, or why the caller may not have this credential.
    pub fn authorize(
        &self,
        evidence: Evidence<'_>,
        request: &CredentialRequest,
        kind: CredentialKind,
    ) -> Result<(Attestation, Decision), BrokerError> {
        let now = self.clock.unix_seconds();
        let attestation = self.attestor.attest(evidence, now)?;
        let decision = self.policy.decide(DecideParams {
            identity: &attestation.identity,
            request,
            kind,
            now,
        })?;
        Ok((attestation, decision))
    }

    /// Signs a JWT for an authorized request without recording it (the benchmark's "mint path").
    pub fn sign_jwt(
        &self,
        attestation: &Attestation,
        decision: &Decision,
        request: &CredentialRequest,
    ) -> Result<MintedJwt, BrokerError> {
        let now = self.clock.unix_seconds();
        let ttl_cap =
            u64::try_from(decision.grant.ends_at().saturating_sub(now)).unwrap_or_default();
        let ttl = decision.ttl.min(std::time::Duration::from_secs(ttl_cap));
        Ok(self.jwt.mint(MintJwtParams {
            workload: &decision.grant.workload,
            destination: &request.destination,
            purpose: &request.purpose,
            ttl,
            now,
            cnf_x5t_s256: attestation.cnf_x5t_s256.as_deref(),
        })?)
    }

    /// Mints a JWT: attest, decide, sign, record durably, and only then return it.
    /// Fails with the first stage that refuses; nothing is returned unless it was recorded.
    pub async fn mint_jwt(
        &self,
        evidence: Evidence<'_>,
        request: &CredentialRequest,
    ) -> Result<MintedJwt, BrokerError> {
        let (attestation, decision) = self.authorize(evidence, request, CredentialKind::Jwt)?;
        let minted = self.sign_jwt(&attestation, &decision, request)?;
        let grant = &decision.grant;
        self.ledger
            .record(CredentialRecord {
                credential_id: minted.jti.clone(),
                kind: CredentialKind::Jwt,
                workload: grant.workload.to_string(),
                owner: grant.owner.clone(),
                destination: request.destination.clone(),
                purpose: request.purpose.clone(),
                grant: grant.name.clone(),
                evidence_kind: attestation.evidence_kind,
                evidence_hash: attestation.evidence_hash.clone(),
                issued_at: minted.issued_at,
                expires_at: minted.expires_at,
                status: Status::Live,
            })
            .await?;
        tracing::info!(
            credential_id = %minted.jti,
            kind = "jwt",
            workload = %grant.workload,
            caller = %attestation.identity,
            evidence = attestation.evidence_kind.as_str(),
            destination = %request.destination,
            purpose = %request.purpose,
            ttl = minted.expires_at - minted.issued_at,
            grant = %grant.name,
            "credential issued"
        );
        Ok(minted)
    }
}
