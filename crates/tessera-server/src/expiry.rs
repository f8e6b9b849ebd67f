//! Grants that end. An expired grant refuses mints (policy); this watch makes the end visible
//! and final: `tessera_grant_expiry_seconds{grant,owner}` for every configured grant, a warning
//! once a day from [`WARN_BEFORE_SECS`] before, and at the end an audit line and the revoke of
//! anything still live under the grant. TTLs are clamped to the grant's end, so normally nothing
//! is; a replica whose clock was behind may have minted past it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tessera_core::clock::SharedClock;
use tessera_core::domain::Selector;
use tessera_core::policy::Grant;
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::metrics::{GrantLabels, Metrics};
use crate::revoker::{RevokeParams, Revoker};
use crate::settings::Current;

/// How long before its end a grant is warned about: 14 days.
pub const WARN_BEFORE_SECS: i64 = 14 * 86_400;
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
                } else if left <= WARN_BEFORE_SECS {
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

    /// Audits the end of `grant` and revokes what is still live under it.
    async fn end(&self, grant: &Grant) {
        let reason = format!(
            "expired: grant `{}` of owner `{}` ended on {}",
            grant.name, grant.owner, grant.expires
        );
        tracing::warn!(grant = %grant.name, owner = %grant.owner, expires = %grant.expires,
            "grant expired: it refuses mints until its owner renews it");
        let live = self.parts.revoker.live_count(Selector::Grant, &grant.name);
        let mut fields = serde_json::json!({
            "grant": grant.name, "owner": grant.owner, "expires": grant.expires.to_string(),
            "live": live,
        });
        if live > 0 {
            let revoked = self
                .parts
                .revoker
                .revoke(RevokeParams {
                    selector: Selector::Grant,
                    value: grant.name.clone(),
                    reason,
                    revoked_by: "tessera".into(),
                })
                .await;
            match revoked {
                Ok(outcome) => fields["revocation_id"] = outcome.rule.rule.revocation_id.into(),
                Err(e) => {
                    tracing::error!(grant = %grant.name, error = %e, "revoking an expired grant failed; retrying");
                    // Looked at again on the next tick.
                    self.state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .ended
                        .remove(&grant.name);
                }
            }
        }
        self.parts.audit.record("grant_expired", fields);
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
