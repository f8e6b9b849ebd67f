//! The grants in force, for the inventory (`Admin/ListGrants`): [`entries`] of the settings in
//! force (a reload replaces them whole), and [`summarize`], which turns the usage the ledger keeps into what
//! one grant was used for, when, how much, and what it allows but never issued.

use std::collections::BTreeSet;
use std::sync::Arc;

use tessera_core::domain::CredentialKind;
use tessera_core::policy::Grant;
use tessera_ledger::{UsageKey, UsageRow};

use crate::settings::Settings;

const MS_PER_HOUR: i64 = 3_600_000;

/// One grant in force, with the start-up lint about it.
#[derive(Debug, Clone)]
pub struct GrantEntry {
    pub grant: Arc<Grant>,
    /// What deserves its owner's attention (e.g. a CI grant that trusts too widely).
    pub warnings: Vec<String>,
}

/// Returns the grants in force in `settings`, in configuration order, each with its lint.
pub fn entries(settings: &Settings) -> Vec<GrantEntry> {
    settings
        .policy
        .grants()
        .iter()
        .map(|grant| GrantEntry {
            grant: Arc::clone(grant),
            warnings: settings
                .lint
                .iter()
                .filter(|w| w.grant == grant.name)
                .map(|w| w.message.clone())
                .collect(),
        })
        .collect()
}

/// How many were issued since a moment, and when first and last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Unix milliseconds of the first issue, if any.
    pub first_ms: Option<i64>,
    /// Unix milliseconds of the last issue, if any.
    pub last_ms: Option<i64>,
    /// In the current hour and the 23 before it.
    pub last_24h: u64,
    /// In the current hour and the 719 before it.
    pub last_30d: u64,
    pub total: u64,
}

impl Counts {
    /// Adds `row`, whose windows end with the hour of `now_ms`.
    fn add(&mut self, row: &UsageRow, now_ms: i64) {
        self.first_ms = Some(self.first_ms.map_or(row.first_ms, |f| f.min(row.first_ms)));
        self.last_ms = Some(self.last_ms.map_or(row.last_ms, |l| l.max(row.last_ms)));
        self.total += row.total;
        let since = |hours: i64| now_ms - (hours - 1) * MS_PER_HOUR;
        for day in &row.days {
            self.last_24h += day.since(since(24));
            self.last_30d += day.since(since(30 * 24));
        }
    }
}

/// What one grant was used for, as [`summarize`] finds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantUsage {
    /// Over everything issued under the grant's name.
    pub counts: Counts,
    /// Per (destination, purpose, kind) issued for, in that order.
    pub lines: Vec<(UsageKey, Counts)>,
    /// Configured, never issued for.
    pub unused_destinations: Vec<String>,
    pub unused_purposes: Vec<String>,
    pub unused_kinds: Vec<CredentialKind>,
}

/// Returns the usage of `grant` among `rows` (every key the ledger holds, with the days of the
/// last 30 at least), as of unix milliseconds `now_ms`.
pub fn summarize(grant: &Grant, rows: &[UsageRow], now_ms: i64) -> GrantUsage {
    let mut usage = GrantUsage::default();
    let mine = rows.iter().filter(|r| r.key.grant == grant.name);
    for row in mine.clone() {
        usage.counts.add(row, now_ms);
        let mut line = Counts::default();
        line.add(row, now_ms);
        usage.lines.push((row.key.clone(), line));
    }
    let destinations: BTreeSet<&str> = mine.clone().map(|r| r.key.destination.as_str()).collect();
    let purposes: BTreeSet<&str> = mine.clone().map(|r| r.key.purpose.as_str()).collect();
    let kinds: Vec<CredentialKind> = mine.map(|r| r.key.kind).collect();
    usage.unused_destinations = unused(&grant.destinations, &destinations);
    usage.unused_purposes = unused(&grant.purposes, &purposes);
    usage.unused_kinds = grant
        .credentials
        .iter()
        .copied()
        .filter(|k| !kinds.contains(k))
        .collect();
    usage
}

/// Returns the values of `configured` not in `used`, in configuration order.
fn unused(configured: &[String], used: &BTreeSet<&str>) -> Vec<String> {
    configured
        .iter()
        .filter(|v| !used.contains(v.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use tessera_core::policy::{GrantMatch, SpiffePattern};
    use tessera_ledger::UsageDay;

    use super::*;

    fn grant() -> Grant {
        let id: tessera_core::spiffe_id::SpiffeId = "spiffe://example.org/w".parse().unwrap();
        Grant {
            name: "g".into(),
            workload: id.clone(),
            owner: "team".into(),
            expires: time::macros::date!(2099 - 01 - 01),
            destinations: vec!["https://a".into(), "https://b".into()],
            purposes: vec!["read".into(), "write".into()],
            credentials: vec![CredentialKind::Jwt, CredentialKind::X509],
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(900),
            matcher: GrantMatch::Spiffe(SpiffePattern::Exact(id)),
        }
    }

    fn row(grant: &str, destination: &str, first_ms: i64, last_ms: i64) -> UsageRow {
        let mut hours = [0; 24];
        hours[0] = 2; // day 10, 00:00–00:59
        hours[23] = 3; // day 10, 23:00–23:59
        UsageRow {
            key: UsageKey {
                grant: grant.into(),
                destination: destination.into(),
                purpose: "read".into(),
                kind: CredentialKind::Jwt,
            },
            first_ms,
            last_ms,
            total: 9,
            days: vec![UsageDay { day: 10, hours }],
        }
    }

    #[test]
    fn a_grant_adds_up_its_own_keys_and_names_what_it_never_issued() {
        let rows = [
            row("g", "https://a", 5, 50),
            row("g", "https://gone", 1, 20),
            row("other", "https://b", 0, 99),
        ];
        // 11 days and 12 hours after the epoch: day 10's last hour is within 24 h, its first
        // is not.
        let now_ms = (11 * 24 + 12) * MS_PER_HOUR;
        let usage = summarize(&grant(), &rows, now_ms);
        let c = usage.counts;
        assert_eq!((c.first_ms, c.last_ms, c.total), (Some(1), Some(50), 18));
        assert_eq!((c.last_24h, c.last_30d), (6, 10));
        assert_eq!(usage.lines.len(), 2);
        assert_eq!(usage.lines[0].0.destination, "https://a");
        assert_eq!(usage.lines[0].1.total, 9);
        assert_eq!(usage.unused_destinations, vec!["https://b".to_owned()]);
        assert_eq!(usage.unused_purposes, vec!["write".to_owned()]);
        assert_eq!(usage.unused_kinds, vec![CredentialKind::X509]);
    }

    #[test]
    fn a_grant_never_used_has_no_times_and_everything_unused() {
        let usage = summarize(&grant(), &[row("other", "https://a", 0, 1)], 0);
        assert_eq!(usage.counts, Counts::default());
        assert_eq!(usage.unused_destinations.len(), 2);
        assert_eq!(usage.unused_purposes.len(), 2);
        assert_eq!(usage.unused_kinds.len(), 2);
    }

    #[test]
    fn the_windows_end_with_the_current_hour() {
        let rows = [row("g", "https://a", 0, 1)];
        // At 23:30 on day 10, both hours of day 10 are within the last 24 h.
        let usage = summarize(&grant(), &rows, (10 * 24 + 23) * MS_PER_HOUR + 1_800_000);
        assert_eq!(usage.counts.last_24h, 5);
        // 30 days later, day 10 is out of both windows.
        let usage = summarize(&grant(), &rows, 41 * 24 * MS_PER_HOUR);
        assert_eq!((usage.counts.last_24h, usage.counts.last_30d), (0, 0));
    }
}
