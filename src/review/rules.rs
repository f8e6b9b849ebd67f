//! The rules of `tessera review`, pure: from the grants `Admin/ListGrants` returned and the
//! time, the findings (what an owner should act on) and the longest `max_ttl`s (for
//! information). No I/O, no clock: the caller passes `now`.

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_proto::GrantInfo;

const MS_PER_DAY: i64 = 86_400_000;
/// Grants listed under the longest `max_ttl`s.
pub const LONGEST_SHOWN: usize = 5;

/// What the review looks for.
#[derive(Debug, Clone, Copy)]
pub struct ReviewParams {
    /// A grant with no issue within this long (or never) is unused.
    pub unused_for: Duration,
    /// A grant whose last valid moment is within this long is expiring.
    pub expiring_within: Duration,
    /// Unix milliseconds.
    pub now_ms: i64,
}

/// The kinds of finding, in the order a review lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    /// No issue within `unused_for`, or never.
    UnusedGrant,
    /// Destinations, purposes or credential kinds the grant allows but never issued for.
    NeverUsed,
    /// Past its `expires` day: it refuses mints.
    Expired,
    /// Its `expires` day ends within `expiring_within`.
    Expiring,
    /// A CI grant that trusts too widely (the start-up lint).
    WideTrust,
    /// An owner none of whose grants has a live credential.
    NothingLive,
}

impl FindingKind {
    /// The name reports use (JSON `kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::UnusedGrant => "unused-grant",
            FindingKind::NeverUsed => "never-used",
            FindingKind::Expired => "expired",
            FindingKind::Expiring => "expiring",
            FindingKind::WideTrust => "wide-ci-trust",
            FindingKind::NothingLive => "owner-nothing-live",
        }
    }

    /// A heading for the findings of this kind.
    pub fn title(self) -> &'static str {
        match self {
            FindingKind::UnusedGrant => "Unused grants",
            FindingKind::NeverUsed => "Never used: narrow the grant",
            FindingKind::Expired => "Expired grants",
            FindingKind::Expiring => "Grants expiring soon",
            FindingKind::WideTrust => "CI grants that trust too widely",
            FindingKind::NothingLive => "Owners with nothing live",
        }
    }
}

/// One thing to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// The grant, or `None` for a finding about an owner.
    pub grant: Option<String>,
    pub owner: String,
    /// What was found.
    pub message: String,
    /// What to do about it.
    pub suggestion: String,
}

/// A grant among the longest `max_ttl`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongTtl {
    pub grant: String,
    pub owner: String,
    pub max_ttl: Duration,
}

/// What a review found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// By kind, then in configuration order.
    pub findings: Vec<Finding>,
    /// The grants with the longest `max_ttl`, longest first (at most [`LONGEST_SHOWN`]).
    pub longest_ttls: Vec<LongTtl>,
}

/// Why the grants could not be reviewed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("grant `{grant}`: expires `{text}` is not a date like 2027-06-30")]
    BadDate { grant: String, text: String },
}

/// Returns the findings and the longest `max_ttl`s of `grants` under `p`. Fails when a grant's
/// `expires` is not a date (the broker sends none such).
pub fn review(grants: &[GrantInfo], p: &ReviewParams) -> Result<Review, ReviewError> {
    let mut findings = Vec::new();
    for g in grants {
        findings.extend(unused(g, p));
        findings.extend(never_used(g));
        findings.extend(expiry(g, p)?);
        findings.extend(g.warnings.iter().map(|w| Finding {
            kind: FindingKind::WideTrust,
            grant: Some(g.name.clone()),
            owner: g.owner.clone(),
            message: w.clone(),
            suggestion: "match `subject` exactly, or an owner or repository *_id claim".into(),
        }));
    }
    findings.extend(nothing_live(grants));
    findings.sort_by_key(|f| f.kind); // stable: configuration order within a kind
    Ok(Review {
        findings,
        longest_ttls: longest_ttls(grants),
    })
}

/// Returns `ms` as a UTC date, `YYYY-MM-DD`.
fn date(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Returns `d` as the largest whole unit: `30d`, `12h`, `15m`, `90s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Returns `d` in milliseconds, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Returns the finding of a grant with no issue within `unused_for`, or never.
fn unused(g: &GrantInfo, p: &ReviewParams) -> Option<Finding> {
    let message = match g.last_issued_at_ms {
        0 => "never issued a credential".to_owned(),
        last if p.now_ms.saturating_sub(last) > millis(p.unused_for) => format!(
            "no issue in {}: last issued on {} ({} days ago)",
            human(p.unused_for),
            date(last),
            p.now_ms.saturating_sub(last) / MS_PER_DAY
        ),
        _ => return None,
    };
    Some(Finding {
        kind: FindingKind::UnusedGrant,
        grant: Some(g.name.clone()),
        owner: g.owner.clone(),
        message,
        suggestion: format!(
            "remove the grant, or have {} confirm it is still needed",
            g.owner
        ),
    })
}

/// Returns `key = ["a", "b"]` as TOML.
fn toml_list(key: &str, values: &[&String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("{key} = [{}]", quoted.join(", "))
}

/// Findings for the destinations, purposes and kinds a grant that was used never used.
fn never_used(g: &GrantInfo) -> Vec<Finding> {
    if g.last_issued_at_ms == 0 {
        return Vec::new(); // the whole grant is unused: that finding says it
    }
    let parts = [
        (
            "destination",
            "destinations",
            &g.destinations,
            &g.unused_destinations,
        ),
        ("purpose", "purposes", &g.purposes, &g.unused_purposes),
        (
            "credential kind",
            "credentials",
            &g.credential_kinds,
            &g.unused_credential_kinds,
        ),
    ];
    parts
        .into_iter()
        .filter(|(_, _, _, unused)| !unused.is_empty())
        .map(|(what, key, configured, unused)| {
            let used: Vec<&String> = configured.iter().filter(|v| !unused.contains(v)).collect();
            let names: Vec<String> = unused.iter().map(|v| format!("`{v}`")).collect();
            let plural = if unused.len() > 1 { "s" } else { "" };
            Finding {
                kind: FindingKind::NeverUsed,
                grant: Some(g.name.clone()),
                owner: g.owner.clone(),
                message: format!("{what}{plural} {} never used", names.join(", ")),
                suggestion: format!("narrow the grant: {}", toml_list(key, &used)),
            }
        })
        .collect()
}

/// Returns the first unix ms at which a grant whose last day is `expires` no longer applies.
fn ends_at_ms(g: &GrantInfo) -> Result<i64, ReviewError> {
    let bad = || ReviewError::BadDate {
        grant: g.name.clone(),
        text: g.expires.clone(),
    };
    let day = time::Date::parse(
        &g.expires,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| bad())?;
    let next = day.next_day().ok_or_else(bad)?;
    Ok(next.midnight().assume_utc().unix_timestamp() * 1000)
}

/// Returns the finding of a grant expired, or expiring within `expiring_within`. Fails when
/// its `expires` is not a date.
fn expiry(g: &GrantInfo, p: &ReviewParams) -> Result<Option<Finding>, ReviewError> {
    let left = ends_at_ms(g)? - p.now_ms;
    let (kind, message, suggestion) = if left <= 0 {
        (
            FindingKind::Expired,
            format!("expired on {}: it refuses mints", g.expires),
            "renew it (a later `expires`) or remove it",
        )
    } else if left <= millis(p.expiring_within) {
        (
            FindingKind::Expiring,
            match left / MS_PER_DAY {
                0 => format!(
                    "expires on {} (at the end of that day UTC, within a day)",
                    g.expires
                ),
                1 => format!(
                    "expires on {} (at the end of that day UTC, in a day)",
                    g.expires
                ),
                days => format!(
                    "expires on {} (at the end of that day UTC, in {days} days)",
                    g.expires
                ),
            },
            "review it now: renew it (a later `expires`) or let it lapse",
        )
    } else {
        return Ok(None);
    };
    Ok(Some(Finding {
        kind,
        grant: Some(g.name.clone()),
        owner: g.owner.clone(),
        message,
        suggestion: suggestion.into(),
    }))
}

/// Findings for each owner none of whose grants has a live credential.
fn nothing_live(grants: &[GrantInfo]) -> Vec<Finding> {
    let mut by_owner: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
    for g in grants {
        let entry = by_owner.entry(g.owner.as_str()).or_default();
        entry.0 += g.live;
        entry.1.push(g.name.as_str());
    }
    by_owner
        .into_iter()
        .filter(|(_, (live, _))| *live == 0)
        .map(|(owner, (_, names))| Finding {
            kind: FindingKind::NothingLive,
            grant: None,
            owner: owner.to_owned(),
            message: format!(
                "no live credential under any of its grants ({})",
                names.join(", ")
            ),
            suggestion: "check that its workloads still run; if not, offboard them".into(),
        })
        .collect()
}

/// Returns the [`LONGEST_SHOWN`] grants with the longest `max_ttl`, longest first.
fn longest_ttls(grants: &[GrantInfo]) -> Vec<LongTtl> {
    let mut all: Vec<LongTtl> = grants
        .iter()
        .map(|g| LongTtl {
            grant: g.name.clone(),
            owner: g.owner.clone(),
            max_ttl: Duration::from_secs(u64::from(g.max_ttl_seconds)),
        })
        .collect();
    all.sort_by(|a, b| {
        b.max_ttl
            .cmp(&a.max_ttl)
            .then_with(|| a.grant.cmp(&b.grant))
    });
    all.truncate(LONGEST_SHOWN);
    all
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
