//! Grants that end. An expired grant refuses mints (policy); this watch makes the end visible
//! and final: `tessera_grant_expiry_seconds{grant,owner}` for every configured grant, a warning
//! once a day from [`WARN_BEFORE_SECS`] before, and at the end an audit line and a `grant` rule
//! revoking whatever was minted under it. TTLs are clamped to the grant's end, so normally
//! nothing minted under it is live by then; the rule is there for what a replica whose clock
//! was behind minted past it, and it is stored once: not when a rule on the grant already
//! covers its end (another replica's, or this one's before a restart), nor once everything the
//! grant could have minted has expired.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tessera_core::clock::SharedClock;
use tessera_core::domain::Selector;
use tessera_core::policy::{Grant, MAX_GRANT_TTL};
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::metrics::{GrantLabels, Metrics};
use crate::revoker::{RevokeError, RevokeOutcome, RevokeParams, Revoker};
use crate::settings::Current;

/// How long before its end a grant is warned about: 14 days.
pub const WARN_BEFORE_SECS: i64 = 14 * 86_400;
/// How long after its grant's end a credential minted under it may still be valid, at most:
/// the longest TTL, plus a minute for the clocks of other replicas.
const MINTED_OUTLIVES_SECS: i64 = MAX_GRANT_TTL.as_secs() as i64 + 60;
/// How often grants are looked at.
const EVERY: Duration = Duration::from_secs(5);

/// Parameters of [`ExpiryWatch::new`].
pub struct ExpiryParts {
    pub settings: Arc<Current>,
    pub revoker: Arc<Revoker>,
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    pub clock: SharedClock,
}

impl fmt::Debug for ExpiryParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpiryParts").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Grant name → the day (unix days) it was last warned about.
    warned: HashMap<String, i64>,
    /// Grants whose end this process has handled.
    ended: HashSet<String>,
    /// The label sets of the gauge, to drop those of grants no longer configured.
    labels: HashSet<GrantLabels>,
}

/// Watches the ends of the configured grants.
pub struct ExpiryWatch {
    parts: ExpiryParts,
    state: Mutex<State>,
}

impl fmt::Debug for ExpiryWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpiryWatch").finish_non_exhaustive()
    }
}

impl ExpiryWatch {
    /// A watch over the grants in force in `parts.settings`.
    pub fn new(parts: ExpiryParts) -> Self {
        ExpiryWatch {
            parts,
            state: Mutex::new(State::default()),
        }
    }

    /// Looks at the grants every few seconds until `stopping` fires.
    pub async fn run(self: Arc<Self>, stopping: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                _ = tick.tick() => self.look().await,
            }
        }
    }

    /// Updates the gauge, warns about grants ending soon (once a day each) and ends the
    /// grants whose day has passed.
    pub async fn look(&self) {
        let now = self.parts.clock.unix_seconds();
        let settings = self.parts.settings.load();
        let mut ended = Vec::new();
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let mut labels = HashSet::new();
            for grant in settings.policy.grants() {
                let left = grant.ends_at().saturating_sub(now);
                let label = GrantLabels {
                    grant: grant.name.clone(),
                    owner: grant.owner.clone(),
                };
                self.parts
                    .metrics
                    .grant_expiry_seconds
                    .get_or_create(&label)
                    .set(left);
                labels.insert(label);
                if left <= 0 {
                    if state.ended.insert(grant.name.clone()) {
                        ended.push(Arc::clone(grant));
                    }
                    continue;
                }
                // Renewed (by a reload) after it ended: it may end again.
                state.ended.remove(&grant.name);
                if left <= WARN_BEFORE_SECS {
                    warn_once_a_day(&mut state, grant, now);
                }
            }
            for gone in state.labels.difference(&labels) {
                self.parts.metrics.grant_expiry_seconds.remove(gone);
            }
            state.labels = labels;
        }
        for grant in ended {
            self.end(&grant).await;
        }
    }

    /// Audits the end of `grant` and revokes what was minted under it, unless a rule on the
    /// grant already covers its end or nothing it minted can still be valid.
    async fn end(&self, grant: &Grant) {
        tracing::warn!(grant = %grant.name, owner = %grant.owner, expires = %grant.expires,
            "grant expired: it refuses mints until its owner renews it");
        let end_ms = grant.ends_at().saturating_mul(1000);
        let covered = self
            .parts
            .revoker
            .cutoff_of(Selector::Grant, &grant.name)
            .is_some_and(|cutoff| cutoff >= end_ms);
        let all_expired =
            self.parts.clock.unix_seconds() > grant.ends_at().saturating_add(MINTED_OUTLIVES_SECS);
        let mut fields = serde_json::json!({
            "grant": grant.name, "owner": grant.owner, "expires": grant.expires.to_string(),
        });
        if !covered && !all_expired {
            match self.revoke(grant).await {
                Ok(outcome) => {
                    fields["revocation_id"] = outcome.rule.rule.revocation_id.into();
                    fields["covered"] = outcome.covered.into();
                }
                Err(e) => {
                    tracing::error!(grant = %grant.name, error = %e, "revoking an expired grant failed; retrying");
                    // Looked at again on the next tick.
                    self.state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .ended
                        .remove(&grant.name);
                    return;
                }
            }
        }
        self.parts.audit.record("grant_expired", fields);
    }

    /// Stores the `grant` rule that ends `grant`.
    async fn revoke(&self, grant: &Grant) -> Result<RevokeOutcome, RevokeError> {
        let reason = format!(
            "expired: grant `{}` of owner `{}` ended on {}",
            grant.name, grant.owner, grant.expires
        );
        self.parts
            .revoker
            .revoke(RevokeParams {
                selector: Selector::Grant,
                value: grant.name.clone(),
                reason,
                revoked_by: "tessera".into(),
            })
            .await
    }
}

/// Logs that `grant` ends soon, unless it was already warned about today.
fn warn_once_a_day(state: &mut State, grant: &Grant, now: i64) {
    let today = now.div_euclid(86_400);
    if state.warned.get(&grant.name) == Some(&today) {
        return;
    }
    state.warned.insert(grant.name.clone(), today);
    let days = grant.ends_at().saturating_sub(now).div_euclid(86_400);
    tracing::warn!(
        grant = %grant.name, owner = %grant.owner, expires = %grant.expires, days_left = days,
        "grant expires soon: its owner should renew or remove it"
    );
}
