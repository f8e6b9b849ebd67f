//! A mint decided before a reload and signed after it, driven step by step on the assembled
//! services: it may not escape what the reload took away, and an unchanged grant lets it finish
//! as decided.

use std::sync::Arc;

use tessera_core::clock::SystemClock;
use tessera_core::domain::CredentialKind;
use tessera_core::policy::PolicyError;
use tessera_core::request::CredentialRequest;
use tessera_ledger::{RedbLedger, RedbOptions};
use tessera_server::assemble::{Services, services};
use tessera_server::config::Config;
use tessera_server::issuer::IssueError;
use tessera_server::metrics::Metrics;
use tessera_server::settings::{Settings, SettingsParts};
use tokio_util::sync::CancellationToken;

use tessera_testkit::dev::WORKLOAD_ID;

use crate::common::{DEST, EXTRA_GRANTS, Fixture, JWT_ONLY_ID, PURPOSE};

/// Returns the services of `fx`'s configuration on a fresh ledger, ready to issue.
async fn assembled(fx: &Fixture, stop: &CancellationToken) -> Services {
    assembled_with(fx, stop, Arc::new(SystemClock)).await
}

/// Like [`assembled`], on `clock`.
pub(crate) async fn assembled_with(
    fx: &Fixture,
    stop: &CancellationToken,
    clock: tessera_core::clock::SharedClock,
) -> Services {
    std::fs::create_dir_all(fx.ledger_path.parent().unwrap()).unwrap();
    let ledger = Arc::new(RedbLedger::open(&fx.ledger_path, RedbOptions::default()).unwrap());
    let s = services(&fx.config(), ledger, Arc::new(Metrics::new()), clock).unwrap();
    s.revoker.restore().await.unwrap();
    tessera_server::status_list::start(Arc::clone(&s.status_lists), stop.clone())
        .await
        .unwrap();
    s
}

/// Puts in force the grants of `fx`'s configuration file edited by `edit`, as a reload does
/// (everything else as it was).
fn reload_edited(s: &Services, fx: &Fixture, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let config = Config::parse(&fx.config_path, &edit(text), &SystemClock).unwrap();
    let old = s.settings.load();
    s.settings.replace(Settings::new(SettingsParts {
        attestor: Arc::clone(&old.attestor),
        grants: config.grants.clone(),
        lint: Vec::new(),
        access: (*old.access).clone(),
        bundles: old.bundles.clone(),
    }));
}

fn request(destination: &str, purpose: &str) -> CredentialRequest {
    CredentialRequest {
        destination: destination.into(),
        purpose: purpose.into(),
        ttl: None,
    }
}

#[tokio::test]
async fn a_mint_decided_before_a_reload_that_removed_its_grant_is_refused() {
    let fx = Fixture::new();
    let stop = CancellationToken::new();
    let s = assembled(&fx, &stop).await;
    let reports = request("https://reports.example.org", "reports:read");
    let token = fx.jwt_svid(JWT_ONLY_ID);
    let decided = s
        .issuer
        .authorize_token(&token, &reports, CredentialKind::Jwt)
        .await
        .unwrap();
    reload_edited(&s, &fx, |t| t.replace(EXTRA_GRANTS, ""));
    let refused = s.issuer.issue_jwt(decided, &reports).await.unwrap_err();
    assert!(
        matches!(refused, IssueError::Policy(PolicyError::NoGrant { .. })),
        "{refused:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_mint_decided_before_a_reload_finishes_as_decided_when_its_grant_is_unchanged() {
    let fx = Fixture::new();
    let stop = CancellationToken::new();
    let s = assembled(&fx, &stop).await;
    let ledger = request(DEST, PURPOSE);
    let token = fx.jwt_svid(WORKLOAD_ID);
    let decided = s
        .issuer
        .authorize_token(&token, &ledger, CredentialKind::Jwt)
        .await
        .unwrap();
    reload_edited(&s, &fx, |t| t.replace(EXTRA_GRANTS, ""));
    let minted = s.issuer.issue_jwt(decided, &ledger).await.unwrap();
    assert!(minted.expires_at > minted.issued_at);
    stop.cancel();
}

#[tokio::test]
async fn a_mint_decided_before_a_reload_that_narrowed_its_grant_goes_on_under_the_new_one() {
    let fx = Fixture::new();
    let stop = CancellationToken::new();
    let s = assembled(&fx, &stop).await;
    let ledger = request(DEST, PURPOSE);
    let token = fx.jwt_svid(WORKLOAD_ID);
    let decided = s
        .issuer
        .authorize_token(&token, &ledger, CredentialKind::Jwt)
        .await
        .unwrap();
    reload_edited(&s, &fx, |t| {
        t.replace("default_ttl = \"5m\"", "default_ttl = \"1m\"")
            .replace("max_ttl = \"15m\"", "max_ttl = \"1m\"")
    });
    let minted = s.issuer.issue_jwt(decided, &ledger).await.unwrap();
    assert_eq!(
        minted.expires_at - minted.issued_at,
        60,
        "the grant changed: the new decision's TTL"
    );
    stop.cancel();
}
