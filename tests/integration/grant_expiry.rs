//! The end of a grant, on an injected clock: the gauge of the time it has left, and at its end
//! one `grant` rule (audited), not one per look nor one per restart.

use std::sync::Arc;

use tessera_core::clock::ManualClock;
use tessera_core::domain::Selector;
use tessera_server::expiry::{ExpiryParts, ExpiryWatch};
use tokio_util::sync::CancellationToken;

use crate::common::{EXTRA_GRANTS, Fixture};
use crate::reload_race::assembled_with;

/// The gauge line of `grant` in `metrics`' text, if any.
fn gauge(metrics: &str, grant: &str) -> Option<i64> {
    let line = metrics.lines().find(|l| {
        l.starts_with("tessera_grant_expiry_seconds{") && l.contains(&format!("grant=\"{grant}\""))
    })?;
    line.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn an_ending_grant_counts_down_then_is_ended_by_one_rule() {
    // reports-cron's last day is 2030-01-01: its end is 2030-01-02T00:00:00Z.
    let end = 1_893_542_400;
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let ending = EXTRA_GRANTS.replace("2099-01-01", "2030-01-01");
    std::fs::write(&fx.config_path, text.replace(EXTRA_GRANTS, &ending)).unwrap();
    let clock = Arc::new(ManualClock::at(end - 3_600));
    let stop = CancellationToken::new();
    let s = assembled_with(&fx, &stop, clock.clone()).await;
    let watch = ExpiryWatch::new(ExpiryParts {
        settings: Arc::clone(&s.settings),
        revoker: Arc::clone(&s.revoker),
        metrics: Arc::clone(&s.metrics),
        audit: s.audit.clone(),
        clock: clock.clone(),
    });
    watch.look().await;
    assert_eq!(gauge(&s.metrics.encode(), "reports-cron"), Some(3_600));
    assert!(gauge(&s.metrics.encode(), "payments-api").is_some_and(|left| left > 3_600));
    let grant_rules = |rules: Vec<tessera_core::domain::RevocationRule>| {
        rules
            .into_iter()
            .filter(|r| r.rule.selector == Selector::Grant)
            .collect::<Vec<_>>()
    };
    assert!(grant_rules(s.ledger.rules().await.unwrap()).is_empty());
    clock.set(end + 1);
    watch.look().await;
    assert_eq!(gauge(&s.metrics.encode(), "reports-cron"), Some(-1));
    let rules = grant_rules(s.ledger.rules().await.unwrap());
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].rule.value, "reports-cron");
    assert_eq!(
        rules[0].rule.reason,
        "expired: grant `reports-cron` of owner `team-reports` ended on 2030-01-01"
    );
    clock.set(end + 10);
    watch.look().await;
    assert_eq!(
        grant_rules(s.ledger.rules().await.unwrap()).len(),
        1,
        "ended once"
    );
    // A process that starts after the end (a restart) finds the rule and adds none.
    let again = ExpiryWatch::new(ExpiryParts {
        settings: Arc::clone(&s.settings),
        revoker: Arc::clone(&s.revoker),
        metrics: Arc::clone(&s.metrics),
        audit: s.audit.clone(),
        clock: clock.clone(),
    });
    again.look().await;
    assert_eq!(
        grant_rules(s.ledger.rules().await.unwrap()).len(),
        1,
        "not once per restart"
    );
    stop.cancel();
}
