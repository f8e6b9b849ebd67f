//! The request flow of one mint, in one direction: attest → policy → mint → ledger → reply.
//! Transport-neutral: the gRPC and HTTP layers call it and translate its errors once.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use rustls::pki_types::CertificateDer;

use crate::attest::{
    AttestError, Attestation, Attestor, Evidence, Principal, Usage, X509SvidVerifier,
};
use crate::audit::AuditLog;
use crate::clock::SharedClock;
use crate::csr::VerifiedCsr;
use crate::ledger::{
    CredentialKind, CredentialRecord, Ledger, LedgerError, RecordParams, ReplayGuard,
    RevocationRule, Selector, Status,
};
use crate::limits::Limits;
use crate::mint::{
    CrlCache, CrlParams, JwtMinter, MintError, MintJwtParams, MintX509Params, MintedJwt,
    MintedX509, X509Minter,
};
use crate::policy::{DecideParams, Decision, Policy, PolicyError};
use crate::request::CredentialRequest;
use crate::revocation::RevocationIndex;
use crate::spiffe_id::SpiffeId;

mod revoke;

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
    #[error("no credential has id `{0}`")]
    NotFound(String),
}

/// Everything a mint needs, shared by all connections.
pub struct Broker {
    attestor: Attestor,
    policy: Policy,
    jwt: JwtMinter,
    x509: Option<X509Minter>,
    bundles: HashMap<String, Vec<Vec<u8>>>,
    crl: CrlCache,
    revocations: RevocationIndex,
    admins: Vec<SpiffeId>,
    stopping: tokio_util::sync::CancellationToken,
    audit: Option<AuditLog>,
    limits: Limits,
    ledger: Arc<dyn Ledger>,
    clock: SharedClock,
}

/// Parameters of [`Broker::revoke`].
#[derive(Debug, Clone)]
pub struct RevokeParams {
    pub selector: Selector,
    pub value: String,
    pub reason: String,
    /// Who asked (for the rule and the audit trail).
    pub revoked_by: String,
}

/// What a revoke did.
#[derive(Debug, Clone)]
pub struct RevokeOutcome {
    pub rule: RevocationRule,
    /// Live credentials matching the selector when the rule took effect.
    pub covered: u64,
}

/// An X.509-SVID and the roots a verifier of it should trust.
#[derive(Debug, Clone)]
pub struct IssuedX509 {
    pub minted: MintedX509,
    /// DER roots of the workload's trust domain.
    pub trust_bundle: Vec<Vec<u8>>,
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
    /// The X.509-SVID minter; `None` when no mint CA is configured.
    pub x509: Option<X509Minter>,
    /// DER X.509 roots by trust domain name, returned as `trust_bundle`.
    pub bundles: HashMap<String, Vec<Vec<u8>>>,
    /// Who may use the Admin service (and revoke any token).
    pub admins: Vec<SpiffeId>,
    /// Where issuances, refusals, revokes and admin actions are recorded, if anywhere.
    pub audit: Option<AuditLog>,
    /// Load-shedding limits.
    pub limits: Limits,
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
            x509: parts.x509,
            bundles: parts.bundles,
            crl: CrlCache::default(),
            revocations: RevocationIndex::new(),
            admins: parts.admins,
            stopping: tokio_util::sync::CancellationToken::new(),
            audit: parts.audit,
            limits: parts.limits,
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

    /// Returns the token cancelled when the server starts shutting down (long-lived streams
    /// end on it).
    pub fn stopping(&self) -> &tokio_util::sync::CancellationToken {
        &self.stopping
    }

    /// Appends an entry to the audit log (a no-op without one).
    pub fn audit(&self, event: &str, fields: serde_json::Value) {
        if let Some(audit) = &self.audit {
            audit.record(event, self.clock.unix_seconds(), fields);
        }
    }

    /// Returns the load-shedding limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Waits until the audit log has written everything recorded so far (at shutdown).
    pub fn flush_audit(&self) {
        if let Some(audit) = &self.audit {
            audit.flush();
        }
    }

    /// Returns true when `id` is listed in `[admin]`.
    pub fn is_admin(&self, id: &SpiffeId) -> bool {
        self.admins.contains(id)
    }

    /// Returns the revocation index.
    pub fn revocations(&self) -> &RevocationIndex {
        &self.revocations
    }

    /// Returns the clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Attests the caller and decides; the pure, synchronous part of a mint. Returns the
    /// attestation and the decision, or why the caller may not have this credential.
    pub async fn authorize(
        &self,
        evidence: Evidence<'_>,
        request: &CredentialRequest,
        kind: CredentialKind,
    ) -> Result<(Attestation, Decision), BrokerError> {
        let now = self.clock.unix_seconds();
        let attestation = self.attestor.attest(evidence, now).await?;
        self.decide(attestation, request, kind, now)
    }

    /// Like [`Broker::authorize`] for a token presented on its own (RFC 8693 `subject_token`).
    pub async fn authorize_token(
        &self,
        token: &str,
        request: &CredentialRequest,
        kind: CredentialKind,
    ) -> Result<(Attestation, Decision), BrokerError> {
        let now = self.clock.unix_seconds();
        let attestation = self.attestor.attest_token(token, now).await?;
        self.decide(attestation, request, kind, now)
    }

    /// Decides for an already attested caller; the synchronous half of [`Broker::authorize`].
    pub fn decide(
        &self,
        attestation: Attestation,
        request: &CredentialRequest,
        kind: CredentialKind,
        now: i64,
    ) -> Result<(Attestation, Decision), BrokerError> {
        let decision = self.policy.decide(DecideParams {
            identity: &attestation.principal,
            request,
            kind,
            now,
        })?;
        Ok((attestation, decision))
    }

    /// Returns the TTL to mint with: the decision's, but never past the grant's end.
    fn ttl(&self, decision: &Decision, now: i64) -> Duration {
        let left = u64::try_from(decision.grant.ends_at().saturating_sub(now)).unwrap_or_default();
        decision.ttl.min(Duration::from_secs(left))
    }

    /// Signs a JWT for an authorized request without recording it (the benchmark's "mint path").
    pub fn sign_jwt(
        &self,
        attestation: &Attestation,
        decision: &Decision,
        request: &CredentialRequest,
    ) -> Result<MintedJwt, BrokerError> {
        let now = self.clock.unix_seconds();
        Ok(self.jwt.mint(MintJwtParams {
            workload: &decision.grant.workload,
            destination: &request.destination,
            purpose: &request.purpose,
            ttl: self.ttl(decision, now),
            now,
            cnf_x5t_s256: attestation.cnf_x5t_s256.as_deref(),
        })?)
    }

    /// Signs an X.509-SVID for an authorized request without recording it. Fails when no mint CA
    /// is configured or the signer fails.
    pub fn sign_x509(
        &self,
        decision: &Decision,
        request: &CredentialRequest,
        csr: &VerifiedCsr,
    ) -> Result<MintedX509, BrokerError> {
        let minter = self
            .x509
            .as_ref()
            .ok_or_else(|| MintError::Key("no mint CA is configured ([signing] ca_cert)".into()))?;
        let now = self.clock.unix_seconds();
        Ok(minter.mint(MintX509Params {
            workload: &decision.grant.workload,
            destination: &request.destination,
            purpose: &request.purpose,
            csr,
            ttl: self.ttl(decision, now),
            now,
        })?)
    }

    /// Mints a JWT: attest, decide, sign, record durably, and only then return it.
    /// Fails with the first stage that refuses; nothing is returned unless it was recorded.
    pub async fn mint_jwt(
        &self,
        evidence: Evidence<'_>,
        request: &CredentialRequest,
    ) -> Result<MintedJwt, BrokerError> {
        let authorized = self
            .authorize(evidence, request, CredentialKind::Jwt)
            .await?;
        self.issue_jwt(authorized, request).await
    }

    /// Signs, records and returns a JWT for an already `authorized` request (kind jwt).
    pub async fn issue_jwt(
        &self,
        authorized: (Attestation, Decision),
        request: &CredentialRequest,
    ) -> Result<MintedJwt, BrokerError> {
        let (attestation, decision) = authorized;
        let minted = self.sign_jwt(&attestation, &decision, request)?;
        let issued = Issued {
            kind: CredentialKind::Jwt,
            id: &minted.jti,
            issued_at: minted.issued_at,
            expires_at: minted.expires_at,
        };
        self.record(&attestation, &decision, request, issued)
            .await?;
        Ok(minted)
    }

    /// Mints an X.509-SVID for the key of `csr` once `authorized` (from [`Broker::authorize`]
    /// with kind x509): sign, record durably, then return it with the trust bundle.
    pub async fn mint_x509(
        &self,
        authorized: (Attestation, Decision),
        request: &CredentialRequest,
        csr: &VerifiedCsr,
    ) -> Result<IssuedX509, BrokerError> {
        let (attestation, decision) = authorized;
        let minted = self.sign_x509(&decision, request, csr)?;
        let issued = Issued {
            kind: CredentialKind::X509,
            id: &minted.serial_hex,
            issued_at: minted.issued_at,
            expires_at: minted.expires_at,
        };
        self.record(&attestation, &decision, request, issued)
            .await?;
        let trust_bundle = self
            .bundles
            .get(decision.grant.workload.trust_domain_name())
            .cloned()
            .unwrap_or_default();
        Ok(IssuedX509 {
            minted,
            trust_bundle,
        })
    }

    /// Mints a throwaway X.509-SVID for `spiffe://<domain>/tessera/self-test` and verifies it as a
    /// relying party would (chain to the domain's bundle, SPIFFE leaf rules). Returns why it
    /// does not verify; nothing is recorded.
    pub fn self_test_x509(&self, domain: &str) -> Result<(), String> {
        let id: SpiffeId = format!("spiffe://{domain}/tessera/self-test")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let csr_der = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .map_err(|e| e.to_string())?;
        let csr = VerifiedCsr::from_der(csr_der.der()).map_err(|e| e.to_string())?;
        let minter = self
            .x509
            .as_ref()
            .ok_or("no mint CA is configured ([signing] ca_cert)")?;
        let now = self.clock.unix_seconds();
        let params = MintX509Params {
            workload: &id,
            destination: "self-test",
            purpose: "self-test",
            csr: &csr,
            ttl: Duration::from_secs(60),
            now,
        };
        let minted = minter.mint(params).map_err(|e| e.to_string())?;
        let chain: Vec<CertificateDer<'_>> =
            minted.chain.iter().map(|c| c.as_slice().into()).collect();
        let roots: Vec<CertificateDer<'static>> = self
            .bundles
            .get(domain)
            .into_iter()
            .flatten()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        // As a relying party verifies it (the attestor itself refuses minted certificates).
        let verifier = X509SvidVerifier::for_bundle(domain, &roots)?;
        verifier
            .verify_for(&chain, now, Usage::ClientAuth)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Returns the DER CRL of the mint CA, or `None` when no mint CA is configured.
    pub fn crl(&self) -> Option<Result<Bytes, MintError>> {
        let minter = self.x509.as_ref()?;
        let now = self.clock.unix_seconds();
        let revision = self.revocations.revision();
        let revoked = || self.revocations.revoked_serials(now);
        Some(self.crl.current(CrlParams {
            minter,
            now,
            revision,
            revoked: &revoked,
        }))
    }

    /// Records an issued credential durably and logs it (never the credential itself).
    async fn record(
        &self,
        attestation: &Attestation,
        decision: &Decision,
        request: &CredentialRequest,
        issued: Issued<'_>,
    ) -> Result<(), BrokerError> {
        let grant = &decision.grant;
        let ci = match &attestation.principal {
            Principal::Ci(ci) => Some(ci.evidence()),
            Principal::Spiffe(_) => None,
        };
        let replay_guard = attestation.one_time.as_ref().map(|once| ReplayGuard {
            key: replay_key(&once.key, request),
            expires_at: once.until.saturating_add(crate::attest::oidc::LEEWAY_SECS),
        });
        let credential = CredentialRecord {
            credential_id: issued.id.to_owned(),
            kind: issued.kind,
            workload: grant.workload.to_string(),
            owner: grant.owner.clone(),
            destination: request.destination.clone(),
            purpose: request.purpose.clone(),
            grant: grant.name.clone(),
            evidence_kind: attestation.evidence_kind,
            evidence_hash: attestation.evidence_hash.clone(),
            issued_at: issued.issued_at,
            expires_at: issued.expires_at,
            status: Status::Live,
            ci,
        };
        self.ledger
            .record(RecordParams {
                credential: credential.clone(),
                replay_guard,
            })
            .await?;
        self.revocations.note_issued(&credential);
        let metrics = &crate::metrics::METRICS;
        let labels = crate::metrics::IssuedLabels {
            kind: credential.kind.as_str().to_owned(),
            destination: credential.destination.clone(),
        };
        metrics.issued.get_or_create(&labels).inc();
        metrics.live_credentials.inc();
        self.audit(
            "issued",
            serde_json::json!({
                "credential_id": credential.credential_id, "kind": credential.kind.as_str(),
                "workload": credential.workload, "caller": attestation.principal.to_string(),
                "evidence": credential.evidence_kind.as_str(), "destination": credential.destination,
                "purpose": credential.purpose, "grant": credential.grant, "expires_at": credential.expires_at,
            }),
        );
        tracing::info!(
            credential_id = %issued.id,
            kind = issued.kind.as_str(),
            workload = %grant.workload,
            caller = %attestation.principal,
            evidence = attestation.evidence_kind.as_str(),
            destination = %request.destination,
            purpose = %request.purpose,
            ttl = issued.expires_at - issued.issued_at,
            grant = %grant.name,
            "credential issued"
        );
        Ok(())
    }
}

/// Returns the replay key of one-time evidence used for one destination and purpose:
/// hex SHA-256 over the evidence's one-time key, destination and purpose, NUL-separated.
fn replay_key(one_time_key: &str, request: &CredentialRequest) -> String {
    let input = format!(
        "{one_time_key}\0{}\0{}",
        request.destination, request.purpose
    );
    crate::attest::sha256_hex(input.as_bytes())
}

/// What was issued, for the ledger record and the log line.
#[derive(Debug, Clone, Copy)]
struct Issued<'a> {
    kind: CredentialKind,
    id: &'a str,
    issued_at: i64,
    expires_at: i64,
}
