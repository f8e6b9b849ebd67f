//! The issuing side of the flow, in one direction: authorize (attest → policy) → sign → record
//! durably → reply. Transport-neutral: gRPC and HTTP call it and render its errors once
//! ([`crate::refusal`]). An [`Issuer`] holds only what issuing needs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::attest::{AttestError, Attestation, Evidence, Principal};
use tessera_core::clock::SharedClock;
use tessera_core::csr::VerifiedCsr;
use tessera_core::domain::{CredentialKind, CredentialRecord, Status, StatusListRef};
use tessera_core::mint::{
    MintError, MintJwtParams, MintX509Params, MintedJwt, MintedX509, StatusClaim,
};
use tessera_core::policy::{DecideParams, Decision, PolicyError};
use tessera_core::request::CredentialRequest;
use tessera_core::revocation::{IssueSubject, RevocationIndex};
use tessera_ledger::{Ledger, LedgerError, RecordParams, ReplayGuard};

use crate::audit::Audit;
use crate::metrics::{IssuedLabels, Metrics};
use crate::settings::{Current, Settings};
use crate::signing::{JwtKeys, MintCas};
use crate::status_list::StatusLists;

/// Reloads a mint may see in a row before it is refused (each needs a new decision).
const RELOADS_RACED: usize = 3;

/// Why a credential was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Attest(#[from] AttestError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "no mint CA is configured ([signing] ca_cert or mint_cas): X.509-SVIDs cannot be issued"
    )]
    NoMintCa,
    #[error(
        "the configuration was reloaded several times while this credential was being issued; retry"
    )]
    Reloaded,
}

/// A caller that attested and a decision that allows its request: what signing needs.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub attestation: Attestation,
    pub decision: Decision,
    /// The generation of the settings it was decided under.
    pub generation: u64,
}

/// An X.509-SVID and the roots a verifier of it should trust.
#[derive(Debug, Clone)]
pub struct IssuedX509 {
    pub minted: MintedX509,
    /// DER roots of the workload's trust domain.
    pub trust_bundle: Vec<Vec<u8>>,
}

/// Parameters of [`Issuer::new`].
pub struct IssuerParts {
    /// The attestor, grants and bundles in force (reloadable).
    pub settings: Arc<Current>,
    /// The JWT keys: each mint asks for the current signer.
    pub jwt: Arc<JwtKeys>,
    /// The mint CAs: each X.509-SVID is signed by the active one (none without a mint CA).
    pub x509: Arc<MintCas>,
    pub ledger: Arc<dyn Ledger>,
    /// Told of every credential recorded (live counts per selector).
    pub revocations: Arc<RevocationIndex>,
    /// Gives every JWT its status list entry, and lists it.
    pub status_lists: Arc<StatusLists>,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
}

impl fmt::Debug for IssuerParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerParts").finish_non_exhaustive()
    }
}

/// Authorizes, signs and records credentials.
pub struct Issuer {
    parts: IssuerParts,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("settings", &self.parts.settings)
            .field("ledger", &self.parts.ledger)
            .finish_non_exhaustive()
    }
}

/// What was issued, for the ledger record and the log line.
#[derive(Debug, Clone)]
struct Issued<'a> {
    kind: CredentialKind,
    id: &'a str,
    issued_at: i64,
    expires_at: i64,
    status_list: Option<StatusListRef>,
}

impl Issuer {
    /// Assembles an issuer from its parts.
    pub fn new(parts: IssuerParts) -> Self {
        Issuer { parts }
    }

    /// Attests the caller by `evidence` and decides on `request` for a credential of `kind`.
    /// Returns who the caller is and what policy allows; fails when the evidence does not
    /// verify or no grant allows the request.
    pub async fn authorize(
        &self,
        evidence: Evidence<'_>,
        request: &CredentialRequest,
        kind: CredentialKind,
    ) -> Result<Authorized, IssueError> {
        let now = self.parts.clock.unix_seconds();
        let settings = self.parts.settings.load();
        let attestation = settings.attestor.attest(evidence, now).await?;
        decide(&settings, attestation, request, kind, now)
    }

    /// Like [`Issuer::authorize`] for a token presented on its own (RFC 8693 `subject_token`).
    pub async fn authorize_token(
        &self,
        token: &str,
        request: &CredentialRequest,
        kind: CredentialKind,
    ) -> Result<Authorized, IssueError> {
        let now = self.parts.clock.unix_seconds();
        let settings = self.parts.settings.load();
        let attestation = settings.attestor.attest_token(token, now).await?;
        decide(&settings, attestation, request, kind, now)
    }

    /// Returns the issue time for `authorized` (see [`Issuer::issue_ms`]) once it is certain
    /// that no reload took away what it is for. When a reload put new settings in force since
    /// it was decided, it is decided again under them: if its grant is unchanged it goes on as
    /// decided (an in-flight mint finishes under the configuration it started with), else under
    /// the new decision, with its issue time chosen again. Fails when the new settings do not
    /// allow it, or when reloads keep coming.
    ///
    /// Why this is enough: a reload puts its settings in force before it revokes what it took
    /// away, and a revoke's cut-off is never before the newest issue time noted. Either this
    /// issue time was noted before the new settings were in force (so the offboarding rule
    /// covers it), or the new settings are seen here.
    fn issue_ms_in_force(
        &self,
        authorized: &mut Authorized,
        request: &CredentialRequest,
        kind: CredentialKind,
    ) -> Result<i64, IssueError> {
        for _ in 0..RELOADS_RACED {
            let issued_ms = self.issue_ms(authorized, request, kind);
            let settings = self.parts.settings.load();
            if settings.generation == authorized.generation {
                return Ok(issued_ms);
            }
            let again = settings.policy.decide(DecideParams {
                identity: &authorized.attestation.principal,
                request,
                kind,
                now: issued_ms.div_euclid(1000),
            })?;
            authorized.generation = settings.generation;
            if *again.grant == *authorized.decision.grant {
                return Ok(issued_ms);
            }
            authorized.decision = again;
        }
        Err(IssueError::Reloaded)
    }

    /// Returns the TTL to mint with: the decision's, but never past the grant's end.
    fn ttl(decision: &Decision, now: i64) -> Duration {
        let left = u64::try_from(decision.grant.ends_at().saturating_sub(now)).unwrap_or_default();
        decision.ttl.min(Duration::from_secs(left))
    }

    /// Returns the issue time of a credential signed now for `authorized` and `request`, in
    /// unix milliseconds: never at or before the cut-off of a rule this broker knows that could
    /// cover it (DESIGN.md "Credential ids").
    fn issue_ms(
        &self,
        authorized: &Authorized,
        request: &CredentialRequest,
        kind: CredentialKind,
    ) -> i64 {
        let now_ms = self.parts.clock.unix_millis();
        let grant = &authorized.decision.grant;
        let subject = IssueSubject {
            workload: grant.workload.as_str(),
            owner: &grant.owner,
            destination: &request.destination,
            purpose: &request.purpose,
            grant: &grant.name,
            kind,
        };
        self.parts.revocations.issue_ms(now_ms, &subject)
    }

    /// Signs, records and returns a JWT for an `authorized` request (kind jwt). Fails when
    /// signing fails or the record cannot be made durable; nothing unrecorded is returned.
    pub async fn issue_jwt(
        &self,
        mut authorized: Authorized,
        request: &CredentialRequest,
    ) -> Result<MintedJwt, IssueError> {
        let issued_ms = self.issue_ms_in_force(&mut authorized, request, CredentialKind::Jwt)?;
        let now = issued_ms.div_euclid(1000);
        let entry = self.parts.status_lists.allocate(now)?;
        let minted = self.parts.jwt.signer().mint(MintJwtParams {
            workload: &authorized.decision.grant.workload,
            destination: &request.destination,
            purpose: &request.purpose,
            ttl: Self::ttl(&authorized.decision, now),
            issued_ms,
            cnf_x5t_s256: authorized.attestation.cnf_x5t_s256.as_deref(),
            status: Some(StatusClaim {
                idx: entry.idx,
                uri: &entry.uri,
            }),
        })?;
        let issued = Issued {
            kind: CredentialKind::Jwt,
            id: &minted.jti,
            issued_at: minted.issued_at,
            expires_at: minted.expires_at,
            status_list: Some(StatusListRef {
                list: entry.list.to_string(),
                idx: entry.idx,
            }),
        };
        self.record(&authorized, request, issued).await?;
        Ok(minted)
    }

    /// Signs an X.509-SVID for the key of `csr` once `authorized` (kind x509), records it
    /// durably, then returns it with the trust bundle. Fails without a mint CA, when signing
    /// fails, or when the record cannot be made durable.
    pub async fn issue_x509(
        &self,
        mut authorized: Authorized,
        request: &CredentialRequest,
        csr: &VerifiedCsr,
    ) -> Result<IssuedX509, IssueError> {
        let minter = self.parts.x509.signer().ok_or(IssueError::NoMintCa)?;
        let issued_ms = self.issue_ms_in_force(&mut authorized, request, CredentialKind::X509)?;
        let now = issued_ms.div_euclid(1000);
        let grant = &authorized.decision.grant;
        let minted = minter.mint(MintX509Params {
            workload: &grant.workload,
            destination: &request.destination,
            purpose: &request.purpose,
            csr,
            ttl: Self::ttl(&authorized.decision, now),
            issued_ms,
        })?;
        let issued = Issued {
            kind: CredentialKind::X509,
            id: &minted.serial_hex,
            issued_at: minted.issued_at,
            expires_at: minted.expires_at,
            status_list: None,
        };
        self.record(&authorized, request, issued).await?;
        let trust_bundle = self
            .parts
            .settings
            .load()
            .bundles
            .get(grant.workload.trust_domain_name())
            .cloned()
            .unwrap_or_default();
        Ok(IssuedX509 {
            minted,
            trust_bundle,
        })
    }

    /// Records an issued credential durably, then counts, audits and logs it (never the
    /// credential itself). Fails when the ledger refuses or cannot commit.
    async fn record(
        &self,
        authorized: &Authorized,
        request: &CredentialRequest,
        issued: Issued<'_>,
    ) -> Result<(), IssueError> {
        let Authorized {
            attestation,
            decision,
            ..
        } = authorized;
        let credential = credential_record(attestation, decision, request, issued);
        // Listed before it is durable: a rule committed meanwhile cannot miss it.
        self.parts.status_lists.note_issued(&credential);
        // The expiry is a function of the token alone (its `exp` and a constant), as the
        // ledger's guards require (`ReplayGuard`).
        let replay_guard = attestation.one_time.as_ref().map(|once| ReplayGuard {
            key: replay_key(&once.key, request),
            expires_at: once
                .until
                .saturating_add(tessera_core::attest::oidc::LEEWAY_SECS),
        });
        // Counted before the ledger is asked: its committed event may come back through the
        // ledger's subscription before the ledger's answer does.
        self.parts.revocations.note_issuing(&credential);
        let recorded = self
            .parts
            .ledger
            .record(RecordParams {
                credential: credential.clone(),
                replay_guard,
            })
            .await;
        if let Err(e) = recorded {
            self.parts.revocations.note_not_recorded(&credential);
            return Err(e.into());
        }
        self.observe(&credential, &attestation.principal);
        Ok(())
    }

    /// Counts, audits and logs one recorded credential.
    fn observe(&self, credential: &CredentialRecord, caller: &Principal) {
        let metrics = &self.parts.metrics;
        let labels = IssuedLabels {
            kind: credential.kind.as_str(),
            destination: credential.destination.clone(),
        };
        metrics.issued.get_or_create(&labels).inc();
        metrics.live_credentials.inc();
        self.parts.audit.record(
            "issued",
            serde_json::json!({
                "credential_id": credential.credential_id, "kind": credential.kind.as_str(),
                "workload": credential.workload, "caller": caller.to_string(),
                "evidence": credential.evidence_kind.as_str(), "destination": credential.destination,
                "purpose": credential.purpose, "grant": credential.grant, "expires_at": credential.expires_at,
            }),
        );
        tracing::info!(
            credential_id = %credential.credential_id,
            kind = credential.kind.as_str(),
            workload = %credential.workload,
            caller = %caller,
            evidence = credential.evidence_kind.as_str(),
            destination = %credential.destination,
            purpose = %credential.purpose,
            ttl = credential.expires_at - credential.issued_at,
            grant = %credential.grant,
            "credential issued"
        );
    }
}

/// Decides on `request` for a credential of `kind` for the caller of `attestation` under
/// `settings` at `now`; fails when no grant allows it.
fn decide(
    settings: &Settings,
    attestation: Attestation,
    request: &CredentialRequest,
    kind: CredentialKind,
    now: i64,
) -> Result<Authorized, IssueError> {
    let decision = settings.policy.decide(DecideParams {
        identity: &attestation.principal,
        request,
        kind,
        now,
    })?;
    Ok(Authorized {
        attestation,
        decision,
        generation: settings.generation,
    })
}

/// Returns the ledger record of a credential issued under `decision` to the attested caller.
fn credential_record(
    attestation: &Attestation,
    decision: &Decision,
    request: &CredentialRequest,
    issued: Issued<'_>,
) -> CredentialRecord {
    let grant = &decision.grant;
    CredentialRecord {
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
        ci: match &attestation.principal {
            Principal::Ci(ci) => Some(ci.evidence()),
            Principal::Spiffe(_) => None,
        },
        status_list: issued.status_list,
    }
}

/// Returns the replay key of one-time evidence used for one destination and purpose:
/// hex SHA-256 over the evidence's one-time key, destination and purpose, NUL-separated.
fn replay_key(one_time_key: &str, request: &CredentialRequest) -> String {
    let input = format!(
        "{one_time_key}\0{}\0{}",
        request.destination, request.purpose
    );
    tessera_core::attest::sha256_hex(input.as_bytes())
}
