//! The conformance suite of [`crate::UsageStore`] (how much each grant is used), checked
//! through the traits alone against every backend, as [`crate::conformance`] does for the rest
//! of the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use crate::conformance::Backend;
use crate::test_records::{guarded, plain, sample};
use crate::{
    CredentialKind, CredentialRecord, LedgerError, SweepParams, USAGE_DAYS_KEPT, UsageDay,
    UsageKey, UsageQuery, UsageRow,
};

/// Makes one `#[tokio::test]` per check of this module, each on a backend made by `$make`.
macro_rules! usage_conformance_tests {
    ($make:expr) => {
        $crate::conformance_usage::usage_conformance_tests!(@each $make;
            usage_is_counted_per_key_day_and_hour_and_survives_a_reopen,
            concurrent_records_of_one_key_are_all_counted,
            a_refused_record_adds_no_usage,
            old_days_are_swept_and_first_and_last_issue_are_kept,
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend = $make.await;
                $crate::conformance_usage::$check(&backend).await;
            }
        )*
    };
}
pub(crate) use usage_conformance_tests;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// Returns record `id` of grant `grant`, for `destination` and `kind`, issued at unix second
/// `at` (ids of the tests are not time-ordered: the issue millisecond is the second's first).
fn issued(
    id: &str,
    grant: &str,
    destination: &str,
    kind: CredentialKind,
    at: i64,
) -> CredentialRecord {
    let mut record = sample(id, at + 300);
    record.issued_at = at;
    record.grant = grant.into();
    record.destination = destination.into();
    record.kind = kind;
    record
}

fn key(grant: &str, destination: &str, kind: CredentialKind) -> UsageKey {
    UsageKey {
        grant: grant.into(),
        destination: destination.into(),
        purpose: "read".into(),
        kind,
    }
}

/// Returns a day with `n` issues in each of `hours`.
fn day(day: i64, hours: &[(usize, u64)]) -> UsageDay {
    let mut counts = [0; 24];
    for (hour, n) in hours {
        counts[*hour] = *n;
    }
    UsageDay { day, hours: counts }
}

const ALL: UsageQuery = UsageQuery {
    since_day: i64::MIN,
};

pub(crate) async fn usage_is_counted_per_key_day_and_hour_and_survives_a_reopen(
    backend: &dyn Backend,
) {
    use CredentialKind::{Jwt, X509};
    let ledger = backend.open().await;
    assert_eq!(ledger.usage(ALL).await.unwrap(), vec![]);
    let d = 20_000 * DAY;
    for (id, grant, dest, kind, at) in [
        ("a1", "g", "https://a", Jwt, d + 2 * HOUR),
        ("a2", "g", "https://a", Jwt, d + 2 * HOUR + 59),
        ("a3", "g", "https://a", Jwt, d + 23 * HOUR),
        ("a4", "g", "https://a", Jwt, d + DAY + 1),
        ("x1", "g", "https://a", X509, d + 5 * HOUR),
        ("b1", "g", "https://b", Jwt, d),
        ("h1", "h", "https://a", Jwt, d + DAY),
    ] {
        ledger
            .record(plain(issued(id, grant, dest, kind, at)))
            .await
            .unwrap();
    }
    let ms = |s: i64| s * 1000;
    let row = |key, first, last, total, days| UsageRow {
        key,
        first_ms: ms(first),
        last_ms: ms(last),
        total,
        days,
    };
    let expected = vec![
        row(
            key("g", "https://a", Jwt),
            d + 2 * HOUR,
            d + DAY + 1,
            4,
            vec![day(20_000, &[(2, 2), (23, 1)]), day(20_001, &[(0, 1)])],
        ),
        row(
            key("g", "https://a", X509),
            d + 5 * HOUR,
            d + 5 * HOUR,
            1,
            vec![day(20_000, &[(5, 1)])],
        ),
        row(
            key("g", "https://b", Jwt),
            d,
            d,
            1,
            vec![day(20_000, &[(0, 1)])],
        ),
        row(
            key("h", "https://a", Jwt),
            d + DAY,
            d + DAY,
            1,
            vec![day(20_001, &[(0, 1)])],
        ),
    ];
    assert_eq!(ledger.usage(ALL).await.unwrap(), expected);
    let later = ledger
        .usage(UsageQuery { since_day: 20_001 })
        .await
        .unwrap();
    assert_eq!(later.len(), 4, "every key, whatever its days");
    assert_eq!(later[0].days, vec![day(20_001, &[(0, 1)])]);
    assert_eq!((later[0].first_ms, later[0].total), (ms(d + 2 * HOUR), 4));
    assert!(later[1].days.is_empty());
    drop(ledger);
    let ledger = backend.open().await;
    assert_eq!(ledger.usage(ALL).await.unwrap(), expected, "after a reopen");
}

pub(crate) async fn concurrent_records_of_one_key_are_all_counted(backend: &dyn Backend) {
    let ledger = backend.open().await;
    let at = 20_000 * DAY + 7 * HOUR;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            let record = issued(
                &format!("c{i}"),
                "g",
                "https://a",
                CredentialKind::Jwt,
                at + i,
            );
            tokio::spawn(async move { ledger.record(plain(record)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let usage = ledger.usage(ALL).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].total, 40);
    assert_eq!(
        (usage[0].first_ms, usage[0].last_ms),
        (at * 1000, (at + 39) * 1000)
    );
    assert_eq!(usage[0].days, vec![day(20_000, &[(7, 40)])]);
}

pub(crate) async fn a_refused_record_adds_no_usage(backend: &dyn Backend) {
    let ledger = backend.open().await;
    let first = issued("one", "g", "https://a", CredentialKind::Jwt, 1000);
    ledger.record(guarded(first.clone(), "k")).await.unwrap();
    let duplicate = ledger.record(plain(first)).await;
    assert!(
        matches!(duplicate, Err(LedgerError::Duplicate(_))),
        "{duplicate:?}"
    );
    let replayed = issued("two", "g", "https://a", CredentialKind::Jwt, 2000);
    let replayed = ledger.record(guarded(replayed, "k")).await;
    assert!(matches!(replayed, Err(LedgerError::Replay)), "{replayed:?}");
    let usage = ledger.usage(ALL).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].total, usage[0].last_ms), (1, 1_000_000));
}

pub(crate) async fn old_days_are_swept_and_first_and_last_issue_are_kept(backend: &dyn Backend) {
    let ledger = backend.open().await;
    let old = 10 * DAY + HOUR;
    let recent = (10 + USAGE_DAYS_KEPT + 5) * DAY;
    for (id, at) in [("old", old), ("recent", recent)] {
        let record = issued(id, "g", "https://a", CredentialKind::Jwt, at);
        ledger.record(plain(record)).await.unwrap();
    }
    // Days more than USAGE_DAYS_KEPT before the sweep's cut-off go: day 10 is 405 days old.
    let sweep = SweepParams {
        expired_before: recent,
        rules_before: 0,
        limit: 100,
    };
    ledger.sweep(sweep).await.unwrap();
    let usage = ledger.usage(ALL).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        usage[0].days,
        vec![day(10 + USAGE_DAYS_KEPT + 5, &[(0, 1)])]
    );
    assert_eq!(
        (usage[0].first_ms, usage[0].last_ms),
        (old * 1000, recent * 1000)
    );
    assert_eq!(usage[0].total, 2, "the total counts swept days too");
}
