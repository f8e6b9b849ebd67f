//! `tessera grants`: the inventory of grants from `Admin/ListGrants` — who owns each, who may
//! use it, until when, how much it is used and what it allows but never issued — as a table or
//! JSON lines.

use tessera_proto::{GrantInfo, GrantMatch, ListGrantsRequest, MatchValue, match_value};

use crate::ops::{Connection, Result, connect, runtime, status};
use crate::review::rules::human;

/// Prints the grants in force: a table, or one JSON object per grant with `json`.
pub fn list(c: Connection, json: bool) -> Result<()> {
    let reply = runtime()?.block_on(async {
        let mut admin = connect(&c).await?;
        admin
            .list_grants(ListGrantsRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(status)
    })?;
    if json {
        for g in &reply.grants {
            println!("{}", grant_json(g));
        }
    } else {
        print!("{}", table(&reply.grants));
    }
    Ok(())
}

/// Returns a subject match for the table: the exact value, or `~pattern`.
fn value_text(v: Option<&MatchValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(match_value::Value::Exact(exact)) => exact.clone(),
        Some(match_value::Value::Pattern(pattern)) => format!("~{pattern}"),
        None => "(any subject)".into(),
    }
}

/// Returns who may use a grant, short: its SPIFFE ID or pattern, or `subject @ issuer`.
fn who(m: Option<&GrantMatch>) -> String {
    match m {
        Some(m) if m.issuer.is_empty() => m.spiffe_id.clone(),
        Some(m) => format!("{} @ {}", value_text(m.subject.as_ref()), m.issuer),
        None => String::new(),
    }
}

/// Returns unix `ms` as `YYYY-MM-DD HH:MM`, or `never` for 0.
fn issued(ms: i64) -> String {
    if ms == 0 {
        return "never".into();
    }
    crate::review::when(ms).trim_end_matches(" UTC").to_owned()
}

/// Returns what a grant allows but never issued, e.g. `dest:https://a kind:x509`, or `-`.
fn unused(g: &GrantInfo) -> String {
    let parts: Vec<String> = [
        ("dest", &g.unused_destinations),
        ("purpose", &g.unused_purposes),
        ("kind", &g.unused_credential_kinds),
    ]
    .into_iter()
    .flat_map(|(label, values)| values.iter().map(move |v| format!("{label}:{v}")))
    .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// Returns the grants as a table with a header, columns as wide as their widest cell.
fn table(grants: &[GrantInfo]) -> String {
    let header = [
        "NAME",
        "OWNER",
        "WORKLOAD",
        "MATCH",
        "EXPIRES",
        "LAST ISSUED",
        "24H",
        "30D",
        "LIVE",
        "UNUSED",
    ];
    let rows: Vec<[String; 10]> = grants
        .iter()
        .map(|g| {
            [
                g.name.clone(),
                g.owner.clone(),
                g.workload.clone(),
                who(g.r#match.as_ref()),
                g.expires.clone(),
                issued(g.last_issued_at_ms),
                g.issued_24h.to_string(),
                g.issued_30d.to_string(),
                g.live.to_string(),
                unused(g),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Returns a grant's match as JSON: `{spiffe_id}` or `{issuer, subject, claims}`.
fn match_json(m: Option<&GrantMatch>) -> serde_json::Value {
    let value = |v: Option<&MatchValue>| match v.and_then(|v| v.value.as_ref()) {
        Some(match_value::Value::Exact(e)) => serde_json::json!({ "exact": e }),
        Some(match_value::Value::Pattern(p)) => serde_json::json!({ "pattern": p }),
        None => serde_json::Value::Null,
    };
    match m {
        Some(m) if m.issuer.is_empty() => serde_json::json!({ "spiffe_id": m.spiffe_id }),
        Some(m) => serde_json::json!({
            "issuer": m.issuer,
            "subject": value(m.subject.as_ref()),
            "claims": m.claims.iter().map(|(k, v)| (k.clone(), value(Some(v))))
                .collect::<serde_json::Map<_, _>>(),
        }),
        None => serde_json::Value::Null,
    }
}

/// Returns one grant as JSON (the field names of the reply).
pub fn grant_json(g: &GrantInfo) -> serde_json::Value {
    serde_json::json!({
        "name": g.name, "owner": g.owner, "workload": g.workload,
        "match": match_json(g.r#match.as_ref()), "expires": g.expires,
        "max_ttl_seconds": g.max_ttl_seconds, "max_ttl": human(
            std::time::Duration::from_secs(u64::from(g.max_ttl_seconds))),
        "default_ttl_seconds": g.default_ttl_seconds,
        "destinations": g.destinations, "purposes": g.purposes,
        "credential_kinds": g.credential_kinds,
        "first_issued_at_ms": g.first_issued_at_ms, "last_issued_at_ms": g.last_issued_at_ms,
        "issued_24h": g.issued_24h, "issued_30d": g.issued_30d,
        "issued_total": g.issued_total, "live": g.live,
        "unused_destinations": g.unused_destinations, "unused_purposes": g.unused_purposes,
        "unused_credential_kinds": g.unused_credential_kinds, "warnings": g.warnings,
        "usage": g.usage.iter().map(|u| serde_json::json!({
            "destination": u.destination, "purpose": u.purpose, "kind": u.kind,
            "first_issued_at_ms": u.first_issued_at_ms,
            "last_issued_at_ms": u.last_issued_at_ms, "issued_24h": u.issued_24h,
            "issued_30d": u.issued_30d, "issued_total": u.issued_total,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_names_what_was_never_used() {
        let grants = [
            GrantInfo {
                name: "payments-api".into(),
                owner: "team-payments".into(),
                workload: "spiffe://example.org/ns/payments/sa/api".into(),
                r#match: Some(GrantMatch {
                    spiffe_id: "spiffe://example.org/ns/payments/sa/api".into(),
                    ..GrantMatch::default()
                }),
                expires: "2027-06-30".into(),
                unused_destinations: vec!["https://audit.example.org".into()],
                unused_credential_kinds: vec!["x509".into()],
                ..GrantInfo::default()
            },
            GrantInfo {
                name: "ci".into(),
                owner: "t".into(),
                workload: "spiffe://example.org/ci/deploy".into(),
                r#match: Some(GrantMatch {
                    issuer: "https://issuer".into(),
                    subject: Some(MatchValue {
                        value: Some(match_value::Value::Pattern("repo:a/.*".into())),
                    }),
                    ..GrantMatch::default()
                }),
                last_issued_at_ms: 1_772_366_400_000,
                ..GrantInfo::default()
            },
        ];
        let text = table(&grants);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let at = |line: &str, what: &str| line.find(what).unwrap();
        assert_eq!(at(lines[0], "EXPIRES"), at(lines[1], "2027-06-30"));
        assert!(lines[1].ends_with("dest:https://audit.example.org kind:x509"));
        assert!(lines[1].contains("never"));
        assert!(at(lines[2], "spiffe://example.org/ci/deploy") < at(lines[2], "~repo:a/.*"));
        assert_eq!(
            at(lines[0], "MATCH"),
            at(lines[2], "~repo:a/.* @ https://issuer")
        );
        assert!(lines[2].contains("2026-03-01 12:00"));
        assert!(lines[2].ends_with('-'));
    }
}
