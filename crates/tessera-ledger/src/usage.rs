//! How much each grant is used (DESIGN.md, "Governance"): per (grant, destination, purpose,
//! credential kind), the first and last issue and how many credentials were issued per UTC day
//! (with the hour of the day, so that "the last 24 hours" is exact to the hour). Written by
//! [`crate::Ledger::record`] in the transaction that stores the record — each batch adds its
//! records up per key first, so a batch writes one summary and one day row per distinct key,
//! not one per record — and so it survives restarts and is shared by replicas.
//!
//! Layout (redb tables / PostgreSQL tables, see each backend):
//! - usage: (grant, destination, purpose, kind) → first and last issue (unix ms), total;
//! - usage days: (UTC day, grant, destination, purpose, kind) → 24 hourly counts. Days older
//!   than [`USAGE_DAYS_KEPT`] are dropped by [`crate::Ledger::sweep`]; summaries are kept.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::{CredentialKind, CredentialRecord, LedgerError};

/// Days of usage history kept: [`crate::Ledger::sweep`] drops day rows older than this many
/// days before its `expired_before` (first and last issue are kept whatever their age).
pub const USAGE_DAYS_KEPT: i64 = 400;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Returns the UTC day (days since 1970-01-01) of unix milliseconds `ms`.
pub fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY)
}

/// Returns the hour of the UTC day (0 to 23) of unix milliseconds `ms`.
fn utc_hour(ms: i64) -> usize {
    // rem_euclid of a positive divisor is in 0..24.
    usize::try_from(ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR).unwrap_or(0)
}

/// What usage is counted by: the grant that allowed an issue and what it was issued for.
/// Ordered as stored: by grant, destination, purpose (bytewise), then kind code.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub grant: String,
    pub destination: String,
    pub purpose: String,
    pub kind: CredentialKind,
}

impl Ord for UsageKey {
    fn cmp(&self, other: &Self) -> Ordering {
        fn parts(k: &UsageKey) -> (&str, &str, &str, u8) {
            (
                k.grant.as_str(),
                k.destination.as_str(),
                k.purpose.as_str(),
                kind_code(k.kind),
            )
        }
        parts(self).cmp(&parts(other))
    }
}

impl PartialOrd for UsageKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl UsageKey {
    /// Returns the key `record` is counted under.
    pub fn of(record: &CredentialRecord) -> Self {
        UsageKey {
            grant: record.grant.clone(),
            destination: record.destination.clone(),
            purpose: record.purpose.clone(),
            kind: record.kind,
        }
    }
}

/// Issues of one key on one UTC day, by hour of the day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Issues in each hour of the day (UTC), hour 0 first.
    pub hours: [u64; 24],
}

impl UsageDay {
    /// Returns how many were issued that day.
    pub fn total(&self) -> u64 {
        self.hours.iter().sum()
    }

    /// Returns how many were issued at or after unix milliseconds `since_ms`, counting whole
    /// hours (the hour that holds `since_ms` counts whole).
    pub fn since(&self, since_ms: i64) -> u64 {
        let first_hour = self.day.saturating_mul(24);
        let since_hour = since_ms.div_euclid(MS_PER_HOUR);
        (first_hour..)
            .zip(self.hours)
            .filter(|(hour, _)| *hour >= since_hour)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The usage of one key: first and last issue ever, how many in all, and the days asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub key: UsageKey,
    /// Unix milliseconds of the first issue recorded.
    pub first_ms: i64,
    /// Unix milliseconds of the last issue recorded.
    pub last_ms: i64,
    /// Issues recorded in all.
    pub total: u64,
    /// The days of [`UsageQuery::since_day`] and after that saw an issue, oldest first.
    pub days: Vec<UsageDay>,
}

/// Parameters of [`UsageStore::usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    /// Day counts from this UTC day on (see [`utc_day`]); earlier days are not read.
    pub since_day: i64,
}

/// Keeps the usage of grants (see the module doc).
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Returns the usage of every key ever recorded (by key), with its day counts from
    /// `query.since_day` on. Fails with `Storage` when the ledger cannot be read, `Corrupt`
    /// when it holds a kind it does not know.
    async fn usage(&self, query: UsageQuery) -> Result<Vec<UsageRow>, LedgerError>;
}

/// The usage one batch adds, summed per key, so that each key is written once per batch.
#[derive(Debug, Default)]
pub(crate) struct UsageBatch {
    pub keys: BTreeMap<UsageKey, UsageSum>,
}

/// What a batch adds to one key.
#[derive(Debug)]
pub(crate) struct UsageSum {
    pub first_ms: i64,
    pub last_ms: i64,
    pub total: u64,
    /// Day → hourly counts.
    pub days: BTreeMap<i64, [u64; 24]>,
}

impl UsageBatch {
    /// Counts one stored record.
    pub fn add(&mut self, record: &CredentialRecord) {
        let ms = record.issued_at_ms();
        let sum = self
            .keys
            .entry(UsageKey::of(record))
            .or_insert_with(|| UsageSum {
                first_ms: ms,
                last_ms: ms,
                total: 0,
                days: BTreeMap::new(),
            });
        sum.first_ms = sum.first_ms.min(ms);
        sum.last_ms = sum.last_ms.max(ms);
        sum.total += 1;
        sum.days.entry(utc_day(ms)).or_insert([0; 24])[utc_hour(ms)] += 1;
    }

    /// Returns true when the batch stored no record.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Returns the code `kind` is stored as (as in records: `jwt` 0, `x509` 1).
pub(crate) fn kind_code(kind: CredentialKind) -> u8 {
    match kind {
        CredentialKind::Jwt => 0,
        CredentialKind::X509 => 1,
    }
}

/// Returns the kind stored as `code`. Fails with `Corrupt` for a code no kind has.
pub(crate) fn kind_of(code: i64) -> Result<CredentialKind, LedgerError> {
    match code {
        0 => Ok(CredentialKind::Jwt),
        1 => Ok(CredentialKind::X509),
        other => Err(LedgerError::Corrupt(format!(
            "usage row with unknown credential kind code {other}"
        ))),
    }
}

/// Returns the rows of `summaries` (in key order) with the `days` of each key attached in the
/// order given; a day of a key without a summary is left out (both are written together).
pub(crate) fn assemble(
    summaries: Vec<UsageRow>,
    days: impl IntoIterator<Item = (UsageKey, UsageDay)>,
) -> Vec<UsageRow> {
    let mut rows: BTreeMap<UsageKey, UsageRow> = summaries
        .into_iter()
        .map(|row| (row.key.clone(), row))
        .collect();
    for (key, day) in days {
        if let Some(row) = rows.get_mut(&key) {
            row.days.push(day);
        }
    }
    rows.into_values().collect()
}

/// Returns `a + b`, hour by hour.
pub(crate) fn add_hours(a: [u64; 24], b: &[u64; 24]) -> [u64; 24] {
    let mut out = a;
    for (o, n) in out.iter_mut().zip(b) {
        *o = o.saturating_add(*n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, grant: &str) -> CredentialRecord {
        let mut r = crate::test_records::sample("id", ms / 1000 + 100);
        r.issued_at = ms / 1000;
        r.grant = grant.into();
        r
    }

    #[test]
    fn a_batch_sums_records_per_key_day_and_hour() {
        let mut batch = UsageBatch::default();
        let day = 20_000 * MS_PER_DAY;
        for ms in [
            day + 5_000,
            day + 2 * MS_PER_HOUR,
            day + 1_000,
            day + MS_PER_DAY,
        ] {
            batch.add(&at(ms, "g"));
        }
        batch.add(&at(day, "h"));
        assert_eq!(batch.keys.len(), 2);
        let g = &batch.keys[&UsageKey::of(&at(0, "g"))];
        assert_eq!(
            (g.first_ms, g.last_ms, g.total),
            (day + 1_000, day + MS_PER_DAY, 4)
        );
        let mut first = [0; 24];
        first[0] = 2;
        first[2] = 1;
        assert_eq!(g.days[&20_000], first);
        assert_eq!(g.days[&20_001][0], 1);
    }

    #[test]
    fn a_day_counts_whole_hours_since_a_moment() {
        let mut hours = [0; 24];
        hours[0] = 1;
        hours[10] = 2;
        hours[23] = 4;
        let d = UsageDay { day: 3, hours };
        let start = 3 * MS_PER_DAY;
        assert_eq!(d.total(), 7);
        assert_eq!(d.since(start - 1), 7);
        assert_eq!(d.since(start + 10 * MS_PER_HOUR + 59_000), 6);
        assert_eq!(d.since(start + 11 * MS_PER_HOUR), 4);
        assert_eq!(d.since(start + MS_PER_DAY), 0);
    }

    #[test]
    fn days_and_hours_are_utc_also_before_1970() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(-1), -1);
        assert_eq!(utc_hour(-1), 23);
        assert_eq!(utc_hour(MS_PER_DAY + 5 * MS_PER_HOUR), 5);
    }
}
