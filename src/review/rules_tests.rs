//! The review rules on hand-made ListGrants replies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const DAY: i64 = MS_PER_DAY;
/// 2026-03-01 12:00 UTC.
const NOW: i64 = 1_772_366_400_000;

fn params() -> ReviewParams {
    ReviewParams {
        unused_for: Duration::from_secs(30 * 86_400),
        expiring_within: Duration::from_secs(14 * 86_400),
        now_ms: NOW,
    }
}

/// A grant used for everything it allows an hour ago, live now, expiring in 2099.
fn clean(name: &str, owner: &str) -> GrantInfo {
    GrantInfo {
        name: name.into(),
        owner: owner.into(),
        workload: format!("spiffe://example.org/{name}"),
        expires: "2099-01-01".into(),
        max_ttl_seconds: 900,
        destinations: vec!["https://a".into(), "https://b".into()],
        purposes: vec!["read".into()],
        credential_kinds: vec!["jwt".into(), "x509".into()],
        first_issued_at_ms: NOW - 100 * DAY,
        last_issued_at_ms: NOW - 3_600_000,
        live: 2,
        ..GrantInfo::default()
    }
}

fn kinds(review: &Review) -> Vec<FindingKind> {
    review.findings.iter().map(|f| f.kind).collect()
}

#[test]
fn grants_used_for_everything_live_and_far_from_expiry_make_a_clean_review() {
    let review = review(&[clean("a", "t1"), clean("b", "t2")], &params()).unwrap();
    assert_eq!(review.findings, vec![]);
}

#[test]
fn a_grant_never_issued_is_unused_and_not_also_reported_as_never_used_in_parts() {
    let mut g = clean("a", "t");
    g.last_issued_at_ms = 0;
    g.first_issued_at_ms = 0;
    g.unused_destinations = g.destinations.clone();
    let review = review(&[g], &params()).unwrap();
    assert_eq!(kinds(&review), vec![FindingKind::UnusedGrant]);
    assert!(review.findings[0].message.contains("never issued"));
}

#[test]
fn a_grant_last_used_before_the_window_is_unused_and_one_inside_is_not() {
    let mut old = clean("old", "t");
    old.last_issued_at_ms = NOW - 31 * DAY;
    let mut recent = clean("recent", "t");
    recent.last_issued_at_ms = NOW - 29 * DAY;
    let review = review(&[old, recent], &params()).unwrap();
    assert_eq!(kinds(&review), vec![FindingKind::UnusedGrant]);
    let f = &review.findings[0];
    assert_eq!(f.grant.as_deref(), Some("old"));
    assert!(
        f.message.contains("2026-01-29 (31 days ago)"),
        "{}",
        f.message
    );
}

#[test]
fn parts_never_used_suggest_the_narrower_grant() {
    let mut g = clean("a", "t");
    g.unused_destinations = vec!["https://b".into()];
    g.unused_credential_kinds = vec!["x509".into()];
    let review = review(&[g], &params()).unwrap();
    assert_eq!(
        kinds(&review),
        vec![FindingKind::NeverUsed, FindingKind::NeverUsed]
    );
    assert_eq!(
        review.findings[0].suggestion,
        r#"narrow the grant: destinations = ["https://a"]"#
    );
    assert_eq!(
        review.findings[0].message,
        "destination `https://b` never used"
    );
    assert_eq!(
        review.findings[1].suggestion,
        r#"narrow the grant: credentials = ["jwt"]"#
    );
}

#[test]
fn a_grant_expiring_within_the_window_or_already_expired_is_found() {
    let mut soon = clean("soon", "t");
    soon.expires = "2026-03-10".into(); // ends 2026-03-11 00:00, 9.5 days away
    let mut later = clean("later", "t");
    later.expires = "2026-03-20".into(); // 19.5 days away
    let mut gone = clean("gone", "t");
    gone.expires = "2026-02-28".into();
    let mut today = clean("today", "t");
    today.expires = "2026-03-01".into(); // valid until midnight
    let review = review(&[soon, later, gone, today], &params()).unwrap();
    let found: Vec<(FindingKind, &str)> = review
        .findings
        .iter()
        .map(|f| (f.kind, f.grant.as_deref().unwrap()))
        .collect();
    assert_eq!(
        found,
        vec![
            (FindingKind::Expired, "gone"),
            (FindingKind::Expiring, "soon"),
            (FindingKind::Expiring, "today"),
        ]
    );
    assert!(review.findings[1].message.contains("in 9 days"));
    assert!(review.findings[2].message.contains("within a day"));
}

#[test]
fn each_lint_warning_of_a_grant_is_a_finding_about_that_grant() {
    let mut g = clean("ci", "t");
    g.warnings = vec!["trusts wildcard CI identities".into()];
    let review = review(&[g], &params()).unwrap();
    assert_eq!(kinds(&review), vec![FindingKind::WideTrust]);
    assert_eq!(review.findings[0].grant.as_deref(), Some("ci"));
}

#[test]
fn an_owner_is_found_only_when_none_of_its_grants_has_anything_live() {
    let mut idle1 = clean("i1", "idle");
    idle1.live = 0;
    let mut idle2 = clean("i2", "idle");
    idle2.live = 0;
    let mut half = clean("h1", "busy");
    half.live = 0;
    let review = review(&[idle1, half, idle2, clean("h2", "busy")], &params()).unwrap();
    assert_eq!(kinds(&review), vec![FindingKind::NothingLive]);
    let f = &review.findings[0];
    assert_eq!((f.grant.as_deref(), f.owner.as_str()), (None, "idle"));
    assert!(f.message.contains("(i1, i2)"));
}

#[test]
fn the_longest_max_ttls_are_listed_longest_first_and_are_not_findings() {
    let grants: Vec<GrantInfo> = (0..7)
        .map(|i| {
            let mut g = clean(&format!("g{i}"), "t");
            g.max_ttl_seconds = 60 * (i + 1);
            g
        })
        .collect();
    let review = review(&grants, &params()).unwrap();
    assert!(review.findings.is_empty());
    let names: Vec<&str> = review
        .longest_ttls
        .iter()
        .map(|l| l.grant.as_str())
        .collect();
    assert_eq!(names, vec!["g6", "g5", "g4", "g3", "g2"]);
    assert_eq!(human(review.longest_ttls[0].max_ttl), "7m");
}

#[test]
fn an_expiry_that_is_not_a_date_is_an_error_naming_the_grant() {
    let mut g = clean("bad", "t");
    g.expires = "soon".into();
    let err = review(&[g], &params()).unwrap_err();
    assert!(err.to_string().contains("grant `bad`"), "{err}");
}

#[test]
fn durations_read_in_their_largest_whole_unit() {
    assert_eq!(human(Duration::from_secs(30 * 86_400)), "30d");
    assert_eq!(human(Duration::from_secs(7_200)), "2h");
    assert_eq!(human(Duration::from_secs(90)), "90s");
}
