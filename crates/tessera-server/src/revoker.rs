//! The revocation side: rebuild the index at start, follow committed rules, answer a
//! credential's status, revoke, serve the CRL, and decide what the ledger may forget. A
//! [`Revoker`] holds only what revocation needs.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use tessera_core::clock::SharedClock;
use tessera_core::domain::{
    CredentialRecord, Event, EventKind, GrantPart, GrantSelection, NewRule, RevocationRule,
    RuleScope, Selector, Status,
};
use tessera_core::mint::MintError;
use tessera_core::mint::crl::CRL_VALIDITY_SECS;
use tessera_core::policy::MAX_GRANT_TTL;
use tessera_core::revocation::{RevocationIndex, RuleLog};
use tessera_ledger::{Ledger, LedgerError, ListParams, SweepParams};
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::enforcement::{Enforcement, Fetched};
use crate::metrics::Metrics;
use crate::signing::MintCas;

/// Pages of the ledger read at most to count what a rule on part of a grant covers.
const PART_SCAN_PAGES: usize = 100;

/// Why a revoke did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no credential has id `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Random(#[from] MintError),
}

/// Parameters of [`Revoker::revoke`].
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

/// Parameters of [`Revoker::new`].
pub struct RevokerParts {
    pub ledger: Arc<dyn Ledger>,
    pub revocations: Arc<RevocationIndex>,
    /// Every rule in force by sequence, for watchers that resume (the index keeps only the
    /// strongest rule per value).
    pub rules: Arc<RuleLog>,
    /// The mint CAs, whose CRLs it serves.
    pub cas: Arc<MintCas>,
    /// Keeps the evidence of each rule in force here.
    pub enforcement: Arc<Enforcement>,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
}

impl fmt::Debug for RevokerParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokerParts").finish_non_exhaustive()
    }
}

/// Single-credential revokes in progress: a queue per credential id.
type Revoking = std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// Revokes credentials by rule and answers what is revoked.
pub struct Revoker {
    parts: RevokerParts,
    /// Single-credential revokes in progress, by credential id (see [`Revoker::revoke_once`]).
    revoking: Revoking,
}

impl fmt::Debug for Revoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revoker")
            .field("rules", &self.parts.revocations.rule_count())
            .finish_non_exhaustive()
    }
}

impl Revoker {
    /// Assembles a revoker from its parts.
    pub fn new(parts: RevokerParts) -> Self {
        Revoker {
            parts,
            revoking: Revoking::default(),
        }
    }

    /// Rebuilds the revocation index from the ledger: every stored rule, the persisted live
    /// counts, and the X.509 credentials the CRL may still list. Reads no JWT record, so its
    /// cost grows with distinct selector values times expiry minutes, not with credentials.
    /// Fails when the ledger cannot be read.
    pub async fn restore(&self) -> Result<(), LedgerError> {
        let started = std::time::Instant::now();
        let ledger = &self.parts.ledger;
        let index = &self.parts.revocations;
        self.load_rules().await?;
        if let Some(newest) = ledger.newest_issue_ms().await? {
            index.cutoffs().note_issue(newest);
        }
        let now = self.parts.clock.unix_seconds();
        let counts = ledger.live_counts(now).await?;
        let live = counts.total(now);
        let buckets = counts.buckets();
        let x509 = ledger
            .x509_records(now.saturating_sub(CRL_VALIDITY_SECS))
            .await?;
        index.restore(counts, &x509);
        Metrics::set_count(&self.parts.metrics.live_credentials, live);
        Metrics::set_count(
            &self.parts.metrics.revocation_rules,
            index.rule_count() as u64,
        );
        tracing::info!(
            live,
            buckets,
            x509 = x509.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "revocation index restored from the ledger"
        );
        Ok(())
    }

    /// Follows what the ledger commits — on this replica or, on a shared ledger, any other —
    /// until `stopping` fires or the ledger stops publishing: rules go into the index (a
    /// Revoke whose caller went away after the commit is still enforced), credentials other
    /// replicas issued are counted (covered counts, the CRL), expiries leave the live gauge.
    /// A lagging subscription reloads every rule and the X.509 credentials the CRL may list.
    pub async fn follow_rules(self: Arc<Self>, stopping: CancellationToken) {
        let mut events = self.parts.ledger.subscribe();
        loop {
            let received = tokio::select! {
                () = stopping.cancelled() => return,
                received = events.recv() => received,
            };
            let missed = match received {
                Ok(event) => (!self.follow(&event)).then_some(0),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => Some(missed),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if let Some(missed) = missed {
                tracing::warn!(missed, "revocation follower missed events; reloading rules");
                if let Err(e) = self.reload().await {
                    tracing::error!(error = %e, "reloading revocation rules failed");
                }
            }
        }
    }

    /// Applies one committed event to the index, the rule log and the gauges. Returns false
    /// when the event does not follow the last one seen: events were missed.
    fn follow(&self, event: &Event) -> bool {
        let in_order = self
            .parts
            .rules
            .note(event.sequence, event.revocation.as_ref());
        let index = &self.parts.revocations;
        let metrics = &self.parts.metrics;
        match (event.kind, &event.credential, &event.revocation) {
            (EventKind::Revoked, _, Some(rule)) => {
                index.apply(rule);
                self.parts.enforcement.rule_in_force(rule);
                Metrics::set_count(&metrics.revocation_rules, index.rule_count() as u64);
            }
            (EventKind::Issued, Some(record), _) if index.note_committed(record) => {
                metrics.live_credentials.inc();
            }
            (EventKind::Expired, _, _) => {
                metrics.live_credentials.dec();
            }
            _ => {}
        }
        in_order
    }

    /// Loads every stored rule into the index and the rule log, which is then complete up to
    /// the last sequence read before the rules. Fails when the ledger cannot be read.
    async fn load_rules(&self) -> Result<(), LedgerError> {
        let through = self.parts.ledger.last_sequence().await?;
        let rules = self.parts.ledger.rules().await?;
        for rule in &rules {
            self.parts.revocations.apply(rule);
            self.parts.enforcement.rule_in_force(rule);
        }
        self.parts.rules.restore(rules, through);
        Ok(())
    }

    /// Reloads every rule and the X.509 credentials the CRL may list, after events were missed.
    async fn reload(&self) -> Result<(), LedgerError> {
        let index = &self.parts.revocations;
        self.load_rules().await?;
        let now = self.parts.clock.unix_seconds();
        let x509 = self
            .parts
            .ledger
            .x509_records(now.saturating_sub(CRL_VALIDITY_SECS))
            .await?;
        x509.iter().for_each(|record| index.track_x509(record));
        Ok(())
    }

    /// Returns the id of the rule that revokes `record`, if any.
    pub fn revoked_by(&self, record: &CredentialRecord) -> Option<String> {
        self.parts.revocations.revoked_by(record)
    }

    /// Returns how many live credentials have `value` for `selector` now (not for
    /// `credential_id`): counted per expiry minute, so one that expired in the last minute
    /// may be counted.
    pub fn live_count(&self, selector: Selector, value: &str) -> u64 {
        let now = self.parts.clock.unix_seconds();
        self.parts.revocations.live_count(selector, value, now)
    }

    /// Returns the cut-off (unix milliseconds) of the rule in force on exactly `selector` =
    /// `value`, if any.
    pub fn cutoff_of(&self, selector: Selector, value: &str) -> Option<i64> {
        self.parts.revocations.cutoff_of(selector, value)
    }

    /// Returns the status of `record` now: revoked if a rule covers it, else expired or live.
    pub fn status_of(&self, record: &CredentialRecord) -> Status {
        if self.parts.revocations.revoked_by(record).is_some() {
            return Status::Revoked;
        }
        record.status_at(self.parts.clock.unix_seconds())
    }

    /// Revokes every credential `p.selector` selects that was issued up to now (to the
    /// millisecond, and never less than the newest issue recorded): the rule is
    /// durable and enforced before this returns, at the same cost however many it covers.
    /// Fails with `NotFound` for an unknown credential id, or when the ledger cannot store it.
    pub async fn revoke(&self, p: RevokeParams) -> Result<RevokeOutcome, RevokeError> {
        let scope = self.scope_of(p.selector, &p.value).await?;
        // On a shared ledger another replica's newest credential may not have reached this one
        // yet (its reply may already have left): read the newest recorded issue, so the cut-off
        // is not before it whatever the replicas' clocks say. (Alone on its ledger, this
        // process noted every issue before recording it.)
        let ledger = &self.parts.ledger;
        if ledger.is_shared()
            && let Some(newest) = ledger.newest_issue_ms().await?
        {
            self.parts.revocations.cutoffs().note_issue(newest);
        }
        let now_ms = self.parts.clock.unix_millis();
        let cutoff_ms = self.parts.revocations.cutoffs().cutoff_ms(now_ms);
        let rule = self
            .parts
            .ledger
            .add_rule(NewRule {
                revocation_id: tessera_core::mint::random_hex::<16>()?,
                selector: p.selector,
                value: p.value,
                effective_at: cutoff_ms.div_euclid(1000),
                effective_at_ms: Some(cutoff_ms),
                reason: p.reason,
                revoked_by: p.revoked_by,
                scope: Some(scope),
            })
            .await?;
        self.parts.revocations.apply(&rule);
        self.parts.enforcement.rule_in_force(&rule);
        self.observe(&rule, scope.covered);
        Ok(RevokeOutcome {
            rule,
            covered: scope.covered,
        })
    }

    /// Returns what a rule on `selector` = `value` made now covers: how many live credentials,
    /// and when the last of them expires. Fails with `NotFound` for an unknown credential id.
    async fn scope_of(&self, selector: Selector, value: &str) -> Result<RuleScope, RevokeError> {
        let now = self.parts.clock.unix_seconds();
        if selector == Selector::CredentialId {
            let record = self
                .parts
                .ledger
                .get(value)
                .await?
                .ok_or_else(|| RevokeError::NotFound(value.to_owned()))?;
            let live = self.status_of(&record) == Status::Live;
            return Ok(RuleScope {
                covered: u64::from(live),
                access_ends_at: live.then_some(record.expires_at),
            });
        }
        if selector == Selector::Grant
            && let Ok(selection @ GrantSelection { part: Some(_), .. }) = value.parse()
        {
            return self.part_scope(&selection).await;
        }
        let index = &self.parts.revocations;
        Ok(RuleScope {
            covered: index.live_count(selector, value, now),
            access_ends_at: index.latest_expiry(selector, value, now),
        })
    }

    /// Returns what a rule on part of a grant covers, read from the ledger: live credentials
    /// are counted per selector value, not per part of a grant, and offboarding is rare.
    /// Reads at most [`PART_SCAN_PAGES`] pages. Fails when the ledger cannot be read.
    async fn part_scope(&self, selection: &GrantSelection) -> Result<RuleScope, RevokeError> {
        let mut params = ListParams {
            grant: selection.grant.clone(),
            page_size: 1000,
            scan_limit: 100_000,
            ..ListParams::default()
        };
        match &selection.part {
            Some(GrantPart::Destination(d)) => params.destination = d.clone(),
            Some(GrantPart::Purpose(p)) => params.purpose = p.clone(),
            Some(GrantPart::Kind(k)) => params.kind = Some(*k),
            None => {}
        }
        let mut scope = RuleScope {
            covered: 0,
            access_ends_at: None,
        };
        for _ in 0..PART_SCAN_PAGES {
            let page = self.parts.ledger.list(params.clone()).await?;
            for record in page
                .credentials
                .iter()
                .filter(|r| self.status_of(r) == Status::Live)
            {
                scope.covered += 1;
                scope.access_ends_at = scope.access_ends_at.max(Some(record.expires_at));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            params.page_token = page.next_page_token;
        }
        Ok(scope)
    }

    /// Revokes the credential of `record` (`p` selects it by id) unless it is no longer live:
    /// a second request, even one concurrent with the first on this replica, waits for it and
    /// adds no rule. Returns `None` when nothing was revoked. Fails as [`Revoker::revoke`].
    pub async fn revoke_once(
        &self,
        record: &CredentialRecord,
        p: RevokeParams,
    ) -> Result<Option<RevokeOutcome>, RevokeError> {
        let claim = Claim::new(&self.revoking, &record.credential_id);
        let _turn = claim.lock.lock().await;
        if self.status_of(record) != Status::Live {
            return Ok(None);
        }
        self.revoke(p).await.map(Some)
    }

    /// Counts, audits and logs a rule now in force.
    fn observe(&self, rule: &RevocationRule, covered: u64) {
        Metrics::set_count(
            &self.parts.metrics.revocation_rules,
            self.parts.revocations.rule_count() as u64,
        );
        self.parts.audit.record(
            "revoked",
            serde_json::json!({
                "revocation_id": rule.rule.revocation_id, "selector": rule.rule.selector.as_str(),
                "value": rule.rule.value, "reason": rule.rule.reason, "by": rule.rule.revoked_by,
                "sequence": rule.sequence, "covered": covered,
            }),
        );
        tracing::info!(
            revocation_id = %rule.rule.revocation_id,
            selector = rule.rule.selector.as_str(),
            value = %rule.rule.value,
            sequence = rule.sequence,
            covered,
            by = %rule.rule.revoked_by,
            reason = %rule.rule.reason,
            "revocation rule in force"
        );
    }

    /// Returns the DER CRL of the mint CA whose key id (lowercase hex) is `key_id`, or of the
    /// active mint CA when `None`, and counts the fetch as evidence of enforcement. `None` when
    /// there is no such CA (none configured, or one whose certificates have all expired).
    /// Fails when the CA cannot sign it.
    pub fn crl(&self, key_id: Option<&str>) -> Option<Result<Bytes, MintError>> {
        let index = &self.parts.revocations;
        let now = self.parts.clock.unix_seconds();
        let revoked = || index.revoked_serials(now);
        let crl = self
            .parts
            .cas
            .crl(key_id, now, index.revision(), &revoked)?;
        let now_ms = self.parts.clock.unix_millis();
        self.parts.enforcement.fetched(Fetched::Crl, now_ms);
        Some(crl)
    }

    /// Records `expired` events for at most `limit` credentials whose expiry passed; returns
    /// how many, `limit` when more may be left (the live gauge follows the events, see
    /// [`Revoker::follow_rules`]).
    pub async fn expire(&self, limit: usize) -> Result<u64, LedgerError> {
        self.parts
            .ledger
            .expire(self.parts.clock.unix_seconds(), limit)
            .await
    }

    /// Deletes from the ledger what `params` (from [`Revoker::forget`]) allows; returns how many
    /// records were deleted.
    pub async fn sweep(&self, params: SweepParams) -> Result<u64, LedgerError> {
        let ledger = &self.parts.ledger;
        // Acknowledgements of rules that are going: made before anything they covered expired.
        ledger
            .forget_acknowledgements(params.rules_before.saturating_mul(1000))
            .await?;
        ledger.sweep(params).await
    }

    /// Drops rules from the index once nothing they could cover is valid or on the CRL, and
    /// returns what the ledger may forget now: records and events older than `retain` (but no
    /// event older than a rule still in force), those dead rules, at most `limit` records a call.
    pub fn forget(&self, retain_secs: i64, limit: usize) -> SweepParams {
        let now = self.parts.clock.unix_seconds();
        let max_ttl = i64::try_from(MAX_GRANT_TTL.as_secs()).unwrap_or(i64::MAX);
        // Everything a rule could cover has expired and left the CRL (plus a minute of skew).
        let rules_before = now
            .saturating_sub(max_ttl)
            .saturating_sub(CRL_VALIDITY_SECS)
            .saturating_sub(60);
        self.parts.revocations.prune(rules_before, now);
        self.parts
            .enforcement
            .forget_before(rules_before.saturating_mul(1000));
        self.parts.rules.prune(rules_before);
        Metrics::set_count(
            &self.parts.metrics.revocation_rules,
            self.parts.revocations.rule_count() as u64,
        );
        // Events (revocations included) are kept at least as long as the rules they announce,
        // so a relying party that resumes late still learns every rule in force.
        SweepParams {
            expired_before: now.saturating_sub(retain_secs).min(rules_before),
            rules_before,
            limit,
        }
    }
}

/// One request's place in the queue of revokes of one credential; leaves it when dropped (also
/// when the request is cancelled), forgetting the credential once no one else waits.
struct Claim<'a> {
    revoking: &'a Revoking,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Claim<'a> {
    fn new(revoking: &'a Revoking, id: &str) -> Self {
        let lock = Arc::clone(
            revoking
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id.to_owned())
                .or_default(),
        );
        Claim {
            revoking,
            id: id.to_owned(),
            lock,
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut revoking = self.revoking.lock().unwrap_or_else(PoisonError::into_inner);
        // Clones are taken under this lock: two left (the map's and ours) means no one waits.
        if Arc::strong_count(&self.lock) == 2 {
            revoking.remove(&self.id);
        }
    }
}
