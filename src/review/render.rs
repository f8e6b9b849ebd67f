//! How a [`Review`] is written: text for a terminal, Markdown for a ticket or a pull request,
//! JSON for a pipeline.

use super::rules::{Finding, Review, ReviewParams, human};

/// Returns `ms` as `YYYY-MM-DD HH:MM UTC`.
pub fn when(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()),
        Err(_) => ms.to_string(),
    }
}

/// Returns whom a finding is about: `grant (owner)`, or `owner O`.
fn subject(f: &Finding) -> String {
    match &f.grant {
        Some(grant) => format!("{grant} ({})", f.owner),
        None => format!("owner {}", f.owner),
    }
}

/// Returns the one-line count of findings and what was looked for.
fn summary(review: &Review, grants: usize, p: &ReviewParams) -> String {
    format!(
        "{} finding{} in {grants} grants (unused for {}, expiring within {})",
        review.findings.len(),
        if review.findings.len() == 1 { "" } else { "s" },
        human(p.unused_for),
        human(p.expiring_within)
    )
}

/// Returns the review as text: findings by kind, then the longest `max_ttl`s.
pub fn text(review: &Review, grants: usize, p: &ReviewParams) -> String {
    let mut out = format!(
        "review at {}: {}\n",
        when(p.now_ms),
        summary(review, grants, p)
    );
    let mut kind = None;
    for f in &review.findings {
        if kind != Some(f.kind) {
            kind = Some(f.kind);
            out += &format!("\n{}\n", f.kind.title());
        }
        out += &format!(
            "  - {}: {}\n    fix: {}\n",
            subject(f),
            f.message,
            f.suggestion
        );
    }
    out += "\nLongest max_ttl (for information)\n";
    for l in &review.longest_ttls {
        out += &format!("  {:<6} {} ({})\n", human(l.max_ttl), l.grant, l.owner);
    }
    out
}

/// Escapes `|` for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Returns the review as Markdown: one table per kind of finding, then the longest `max_ttl`s.
pub fn markdown(review: &Review, grants: usize, p: &ReviewParams) -> String {
    let mut out = format!(
        "# Grant review, {}\n\n{}.\n",
        when(p.now_ms),
        summary(review, grants, p)
    );
    let mut kind = None;
    for f in &review.findings {
        if kind != Some(f.kind) {
            kind = Some(f.kind);
            out += &format!(
                "\n## {}\n\n| grant | owner | finding | fix |\n|---|---|---|---|\n",
                f.kind.title()
            );
        }
        out += &format!(
            "| {} | {} | {} | {} |\n",
            cell(f.grant.as_deref().unwrap_or("")),
            cell(&f.owner),
            cell(&f.message),
            cell(&f.suggestion)
        );
    }
    out += "\n## Longest max_ttl (for information)\n\n| grant | owner | max_ttl |\n|---|---|---|\n";
    for l in &review.longest_ttls {
        out += &format!(
            "| {} | {} | {} |\n",
            cell(&l.grant),
            cell(&l.owner),
            human(l.max_ttl)
        );
    }
    out
}

/// Returns the review as one JSON object.
pub fn json(review: &Review, grants: usize, p: &ReviewParams) -> serde_json::Value {
    serde_json::json!({
        "now_ms": p.now_ms,
        "grants": grants,
        "unused_for_seconds": p.unused_for.as_secs(),
        "expiring_within_seconds": p.expiring_within.as_secs(),
        "findings": review.findings.iter().map(|f| serde_json::json!({
            "kind": f.kind.as_str(), "grant": f.grant, "owner": f.owner,
            "message": f.message, "suggestion": f.suggestion,
        })).collect::<Vec<_>>(),
        "longest_max_ttl": review.longest_ttls.iter().map(|l| serde_json::json!({
            "grant": l.grant, "owner": l.owner, "max_ttl_seconds": l.max_ttl.as_secs(),
        })).collect::<Vec<_>>(),
    })
}
