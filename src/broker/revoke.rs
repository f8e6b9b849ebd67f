//! The revocation side of the broker: rebuild the index at start, follow committed rules,
//! answer a credential's status, and revoke.

use std::sync::Arc;

use super::{Broker, BrokerError, RevokeOutcome, RevokeParams};
use crate::ledger::{CredentialRecord, LedgerError, NewRule, Selector, Status};

impl Broker {
    /// Rebuilds the revocation index from the ledger: every stored rule, the persisted live
    /// counts, and the X.509 credentials the CRL may still list. Reads no JWT record, so its
    /// cost grows with distinct selector values times expiry minutes, not with credentials.
    /// Fails when the ledger cannot be read.
    pub async fn restore(&self) -> Result<(), LedgerError> {
        let started = std::time::Instant::now();
        for rule in self.ledger.rules().await? {
            self.revocations.apply(&rule);
        }
        let now = self.clock.unix_seconds();
        let counts = self.ledger.live_counts(now).await?;
        let live = counts.total(now);
        let buckets = counts.buckets();
        let x509 = self
            .ledger
            .x509_records(now.saturating_sub(crate::mint::crl::CRL_VALIDITY_SECS))
            .await?;
        self.revocations.restore(counts, &x509);
        crate::metrics::METRICS
            .live_credentials
            .inc_by(i64::try_from(live).unwrap_or(i64::MAX));
        tracing::info!(
            live,
            buckets,
            x509 = x509.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "revocation index restored from the ledger"
        );
        Ok(())
    }

    /// Applies every rule the ledger commits to the index, for as long as the ledger publishes
    /// events. A Revoke whose caller went away after the commit is still enforced this way; a
    /// lagging subscription reloads every rule. Returns when the server stops.
    pub async fn follow_rules(self: Arc<Self>) {
        let mut events = self.ledger.subscribe();
        loop {
            let received = tokio::select! {
                () = self.stopping.cancelled() => return,
                received = events.recv() => received,
            };
            match received {
                Ok(event) => {
                    if let Some(rule) = &event.revocation {
                        self.revocations.apply(rule);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    match self.ledger.rules().await {
                        Ok(rules) => rules.iter().for_each(|r| self.revocations.apply(r)),
                        Err(e) => tracing::error!(error = %e, "reloading revocation rules failed"),
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Returns the status of `record` now: revoked if a rule covers it, else expired or live.
    pub fn status_of(&self, record: &CredentialRecord) -> Status {
        if self.revocations.revoked_by(record).is_some() {
            return Status::Revoked;
        }
        record.status_at(self.clock.unix_seconds())
    }

    /// Revokes every credential `p.selector` selects that was issued up to now: the rule is
    /// durable and enforced before this returns, at the same cost however many it covers.
    /// Fails with `NotFound` for an unknown credential id, or when the ledger cannot store it.
    pub async fn revoke(&self, p: RevokeParams) -> Result<RevokeOutcome, BrokerError> {
        let now = self.clock.unix_seconds();
        let covered = match p.selector {
            Selector::CredentialId => {
                let record = self
                    .ledger
                    .get(&p.value)
                    .await?
                    .ok_or_else(|| BrokerError::NotFound(p.value.clone()))?;
                u64::from(self.status_of(&record) == Status::Live)
            }
            selector => self.revocations.live_count(selector, &p.value, now),
        };
        let id = crate::mint::random_hex::<16>()?;
        let rule = self
            .ledger
            .add_rule(NewRule {
                revocation_id: id,
                selector: p.selector,
                value: p.value,
                effective_at: now,
                reason: p.reason,
                revoked_by: p.revoked_by,
            })
            .await?;
        self.revocations.apply(&rule);
        crate::metrics::METRICS
            .revocation_rules
            .set(i64::try_from(self.revocations.rule_count()).unwrap_or(i64::MAX));
        self.audit(
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
        Ok(RevokeOutcome { rule, covered })
    }
}
