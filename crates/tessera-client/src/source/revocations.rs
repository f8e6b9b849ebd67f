//! A credential source follows `Broker/WatchRevocations` and, when a rule may cover the
//! credential it holds, tells its renewal loop to mint a new one at once. Rules are matched with
//! the core's `selects`; an `owner` or whole-`grant` rule cannot be matched here (the client
//! knows neither), so one whose cut-off reaches the credential counts as covering it: a needless
//! renewal is cheap, serving a revoked credential is not. Unlike a relying party, a source does
//! not acknowledge rules: it enforces none.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use tessera_core::domain::{CredentialKind, GrantSelection, Selector};
use tessera_core::revocation::{IssueSubject, selects};
use tessera_proto::RevocationEvent;

use super::broker::{Broker, RevocationStream};
use super::credential::{Issued, Mintable};
use super::error::SourceError;
use super::schedule::{Jitter, Schedule};
use super::state::Shared;
use crate::relying_party::cutoff_ms;

/// Returns true when `event` is a rule that covers (or, for a selector not matchable here, may
/// cover) `held`, a credential of `kind`.
pub(crate) fn covers(event: &RevocationEvent, held: &Issued, kind: CredentialKind) -> bool {
    if event.caught_up || cutoff_ms(event) < held.issued_ms {
        return false;
    }
    let Some(selector) = Selector::ALL
        .into_iter()
        .find(|s| s.as_str() == event.selector)
    else {
        // A selector this SDK does not know (a newer broker's): it may cover.
        return true;
    };
    match selector {
        Selector::Owner => true,
        // Which grant minted the credential is not known here; a rule on a part of a grant
        // that is not this credential's destination, purpose or kind cannot cover it.
        Selector::Grant => match event.value.parse::<GrantSelection>() {
            Ok(GrantSelection {
                part: Some(part), ..
            }) => part.covers(&held.destination, &held.purpose, kind),
            _ => true,
        },
        other => selects(
            other,
            &event.value,
            Some(&held.credential_id),
            &IssueSubject {
                workload: &held.workload,
                owner: "",
                destination: &held.destination,
                purpose: &held.purpose,
                grant: "",
                kind,
            },
        ),
    }
}

/// Follows the broker's revocation stream for the life of the source: on each rule that covers
/// the credential held, sends its id on `revoked`; reconnects with backoff when the stream
/// fails or is refused (a CI token may not watch: the source then renews on schedule only).
pub(crate) async fn follow<C: Mintable>(
    shared: Arc<Shared<C>>,
    broker: Arc<dyn Broker>,
    (schedule, jitter): (Schedule, Arc<dyn Jitter>),
    revoked: mpsc::Sender<String>,
) {
    let mut since = 0;
    let mut failures = 0u32;
    loop {
        let opened = tokio::time::timeout(schedule.call_timeout, broker.watch_revocations(since))
            .await
            .unwrap_or(Err(SourceError::Timeout(schedule.call_timeout)));
        let end = match opened {
            Ok(stream) => apply_stream(&shared, stream, &mut since, &mut failures, &revoked).await,
            Err(e) => e,
        };
        shared.set_following(false);
        if matches!(&end, SourceError::Refused { code, .. } if *code == tonic::Code::OutOfRange) {
            // The broker's ledger is behind our sequence (replaced or reset): replay it all.
            since = 0;
        }
        failures = failures.saturating_add(1);
        if failures == 1 {
            tracing::warn!(error = %end, "the revocation stream ended; reconnecting");
        } else {
            tracing::debug!(error = %end, failures, "the revocation stream is still down");
        }
        tokio::time::sleep(schedule.retry_delay(failures, jitter.unit(), None)).await;
    }
}

/// Applies the events of one open stream until it ends; returns why. Counts as following from
/// the caught-up marker on (and then forgets earlier failures).
async fn apply_stream<C: Mintable>(
    shared: &Shared<C>,
    mut stream: RevocationStream,
    since: &mut u64,
    failures: &mut u32,
    revoked: &mpsc::Sender<String>,
) -> SourceError {
    while let Some(next) = stream.next().await {
        let event = match next {
            Ok(event) => event,
            Err(status) => return SourceError::from(status),
        };
        *since = (*since).max(event.sequence);
        if event.caught_up {
            shared.set_following(true);
            // The broker answers: a renewal waiting out a backoff may go now.
            shared.broker_reachable();
            *failures = 0;
            continue;
        }
        let Some(held) = shared.current() else {
            continue;
        };
        if covers(&event, held.issued(), C::KIND) {
            tracing::info!(
                credential_id = %held.issued().credential_id,
                selector = %event.selector,
                revocation_id = %event.revocation_id,
                "the credential held is revoked; renewing at once"
            );
            // Full: the loop has renewals pending already; it checks the id held anyway.
            let _ = revoked.try_send(held.issued().credential_id.clone());
        }
    }
    SourceError::Unavailable {
        code: tonic::Code::Unavailable,
        message: "the broker closed the revocation stream".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Issued {
        Issued {
            credential_id: "c1".into(),
            workload: "spiffe://td/w".into(),
            destination: "https://d".into(),
            purpose: "p".into(),
            issued_ms: 10_000,
            expires_at: 300,
            received_ms: 10_000,
        }
    }

    fn rule(selector: &str, value: &str, cutoff_ms: i64) -> RevocationEvent {
        RevocationEvent {
            selector: selector.into(),
            value: value.into(),
            effective_at: cutoff_ms / 1000,
            effective_at_ms: cutoff_ms,
            ..RevocationEvent::default()
        }
    }

    #[test]
    fn a_rule_on_any_value_of_the_credential_covers_it_up_to_its_cut_off() {
        let jwt = CredentialKind::Jwt;
        for (selector, value) in [
            ("credential_id", "c1"),
            ("workload", "spiffe://td/w"),
            ("destination", "https://d"),
            ("purpose", "p"),
        ] {
            assert!(
                covers(&rule(selector, value, 10_000), &held(), jwt),
                "{selector}"
            );
            assert!(
                !covers(&rule(selector, value, 9_999), &held(), jwt),
                "{selector}"
            );
            assert!(
                !covers(&rule(selector, "other", 20_000), &held(), jwt),
                "{selector}"
            );
        }
    }

    #[test]
    fn owner_grant_and_unknown_rules_may_cover_and_scoped_grant_rules_are_matched() {
        let jwt = CredentialKind::Jwt;
        assert!(covers(&rule("owner", "team", 10_000), &held(), jwt));
        assert!(covers(&rule("grant", "payments", 10_000), &held(), jwt));
        assert!(covers(&rule("tenant", "t", 10_000), &held(), jwt));
        assert!(!covers(&rule("owner", "team", 9_000), &held(), jwt));
        let other_destination = rule("grant", "payments/destination=https://e", 10_000);
        assert!(!covers(&other_destination, &held(), jwt));
        assert!(covers(&rule("grant", "g/purpose=p", 10_000), &held(), jwt));
        assert!(!covers(&rule("grant", "g/kind=x509", 10_000), &held(), jwt));
        assert!(covers(
            &rule("grant", "g/kind=x509", 10_000),
            &held(),
            CredentialKind::X509
        ));
    }

    #[test]
    fn the_caught_up_marker_covers_nothing() {
        let marker = RevocationEvent {
            caught_up: true,
            sequence: 9,
            ..RevocationEvent::default()
        };
        assert!(!covers(&marker, &held(), CredentialKind::Jwt));
    }
}
