//! `Admin/ListGrants`: the grants in force as the wire shows them, each with its usage read
//! from the ledger ([`crate::grants::summarize`]), its live credentials and its lint.

use std::collections::HashMap;

use tessera_core::domain::Selector;
use tessera_core::policy::{Grant, GrantMatch, MatchValue, SpiffePattern};
use tessera_ledger::{LedgerError, UsageQuery, UsageStore, utc_day};
use tessera_proto as proto;

use crate::grants::{Counts, GrantEntry, GrantUsage, entries, summarize};
use crate::revoker::Revoker;
use crate::settings::Settings;

/// Days of usage read for the windows: 30, and the day the 30-day window starts in.
const WINDOW_DAYS: i64 = 31;

/// Returns the ListGrants reply for the grants in force in `settings` as of unix ms `now_ms`.
/// Fails when the ledger cannot be read.
pub async fn list(
    settings: &Settings,
    usage: &dyn UsageStore,
    revoker: &Revoker,
    now_ms: i64,
) -> Result<proto::ListGrantsResponse, LedgerError> {
    let since_day = utc_day(now_ms) - WINDOW_DAYS;
    let rows = usage.usage(UsageQuery { since_day }).await?;
    let grants = entries(settings)
        .iter()
        .map(|entry| {
            let used = summarize(&entry.grant, &rows, now_ms);
            info(entry, used, live_now(revoker, &entry.grant))
        })
        .collect();
    Ok(proto::ListGrantsResponse { grants, now_ms })
}

/// Returns how many credentials minted under `grant` are live now (not yet expired).
fn live_now(revoker: &Revoker, grant: &Grant) -> u64 {
    revoker.live_count(Selector::Grant, &grant.name)
}

/// Returns `entry` as the wire shows it.
fn info(entry: &GrantEntry, used: GrantUsage, live: u64) -> proto::GrantInfo {
    let g = &entry.grant;
    let seconds = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    proto::GrantInfo {
        name: g.name.clone(),
        owner: g.owner.clone(),
        workload: g.workload.to_string(),
        r#match: Some(matcher(&g.matcher)),
        expires: g.expires.to_string(),
        max_ttl_seconds: seconds(g.max_ttl),
        default_ttl_seconds: seconds(g.default_ttl),
        destinations: g.destinations.clone(),
        purposes: g.purposes.clone(),
        credential_kinds: kinds(&g.credentials),
        first_issued_at_ms: used.counts.first_ms.unwrap_or(0),
        last_issued_at_ms: used.counts.last_ms.unwrap_or(0),
        issued_24h: used.counts.last_24h,
        issued_30d: used.counts.last_30d,
        issued_total: used.counts.total,
        live,
        unused_destinations: used.unused_destinations,
        unused_purposes: used.unused_purposes,
        unused_credential_kinds: kinds(&used.unused_kinds),
        warnings: entry.warnings.clone(),
        usage: used
            .lines
            .into_iter()
            .map(|(key, counts)| line(key, counts))
            .collect(),
    }
}

/// Returns the wire names of `kinds` (`jwt`, `x509`).
fn kinds(kinds: &[tessera_core::domain::CredentialKind]) -> Vec<String> {
    kinds.iter().map(|k| k.as_str().to_owned()).collect()
}

/// Returns the usage of one destination, purpose and kind as the wire shows it.
fn line(key: tessera_ledger::UsageKey, c: Counts) -> proto::GrantUsage {
    proto::GrantUsage {
        destination: key.destination,
        purpose: key.purpose,
        kind: key.kind.as_str().to_owned(),
        first_issued_at_ms: c.first_ms.unwrap_or(0),
        last_issued_at_ms: c.last_ms.unwrap_or(0),
        issued_24h: c.last_24h,
        issued_30d: c.last_30d,
        issued_total: c.total,
    }
}

/// Returns a grant's `[grant.match]` as the wire shows it.
fn matcher(m: &GrantMatch) -> proto::GrantMatch {
    match m {
        GrantMatch::Spiffe(pattern) => proto::GrantMatch {
            spiffe_id: match pattern {
                SpiffePattern::Exact(id) => id.to_string(),
                SpiffePattern::OneSegment(prefix) => format!("{prefix}/*"),
                SpiffePattern::AnySegments(prefix) => format!("{prefix}/**"),
            },
            ..proto::GrantMatch::default()
        },
        GrantMatch::Ci(ci) => proto::GrantMatch {
            spiffe_id: String::new(),
            issuer: ci.issuer.clone(),
            subject: ci.subject.as_ref().map(value),
            claims: ci
                .claims
                .iter()
                .map(|(name, v)| (name.clone(), value(v)))
                .collect::<HashMap<_, _>>(),
        },
    }
}

/// Returns a subject or claim match as written in the configuration.
fn value(v: &MatchValue) -> proto::MatchValue {
    use proto::match_value::Value;
    let value = match v {
        MatchValue::Exact(exact) => Value::Exact(exact.clone()),
        // Compiled as `^(?:pattern)$`: show the pattern as written.
        MatchValue::Pattern(re) => {
            let text = re.as_str();
            let written = text
                .strip_prefix("^(?:")
                .and_then(|t| t.strip_suffix(")$"))
                .unwrap_or(text);
            Value::Pattern(written.to_owned())
        }
    };
    proto::MatchValue { value: Some(value) }
}
