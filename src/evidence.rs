//! `tessera revocation show ID`: the evidence that a revocation's access is gone, from
//! `Admin/GetRevocation` — the rule, what it covered and until when, who enforced it and when.

use tessera_proto::{GetRevocationRequest, GetRevocationResponse};

use crate::ops::{Connection, Result, connect, runtime, status};

/// Prints the evidence of revocation `id` as text, or as one JSON object with `json`.
pub fn show(c: Connection, id: String, json: bool) -> Result<()> {
    runtime()?.block_on(async {
        let mut admin = connect(&c).await?;
        let reply = admin
            .get_revocation(GetRevocationRequest { revocation_id: id })
            .await
            .map_err(status)?
            .into_inner();
        if json {
            println!("{}", to_json(&reply));
        } else {
            print!("{}", to_text(&reply));
        }
        Ok(())
    })
}

/// Returns the evidence as JSON (the field names of the reply).
fn to_json(r: &GetRevocationResponse) -> serde_json::Value {
    let rule = r.rule.clone().unwrap_or_default();
    serde_json::json!({
        "revocation_id": rule.revocation_id, "sequence": rule.sequence,
        "selector": rule.selector, "value": rule.value, "reason": rule.reason,
        "effective_at": rule.effective_at, "effective_at_ms": rule.effective_at_ms,
        "revoked_by": r.revoked_by, "credentials_covered": r.credentials_covered,
        "access_ends_at": r.access_ends_at, "access_ended": r.access_ended,
        "acknowledgements": r.acknowledgements.iter().map(|a| serde_json::json!({
            "relying_party": a.relying_party, "acknowledged_at_ms": a.acknowledged_at_ms,
            "after_ms": a.after_ms})).collect::<Vec<_>>(),
        "crl_fetches_after": r.crl_fetches_after,
        "status_list_fetches_after": r.status_list_fetches_after,
        "introspections_refused": r.introspections_refused,
        "introspections_accepted": r.introspections_accepted,
        "accepted_credential_ids": r.accepted_credential_ids,
    })
}

/// Returns the evidence as lines for a person.
fn to_text(r: &GetRevocationResponse) -> String {
    let rule = r.rule.clone().unwrap_or_default();
    let mut out = format!(
        "revocation {} (sequence {})\n  rule: {}={} issued at or before {} ms, by {}: {}\n",
        rule.revocation_id,
        rule.sequence,
        rule.selector,
        rule.value,
        rule.effective_at_ms,
        r.revoked_by,
        rule.reason
    );
    out += &format!("  covered: {} live credentials\n", r.credentials_covered);
    out += &match (r.access_ends_at, r.access_ended) {
        (0, _) => "  access: nothing covered was live\n".to_owned(),
        (at, true) => format!("  access could not outlive {at} (unix s): it has ended\n"),
        (at, false) => format!("  access could not outlive {at} (unix s)\n"),
    };
    out += &format!(
        "  acknowledged by {} relying parties\n",
        r.acknowledgements.len()
    );
    for a in &r.acknowledgements {
        out += &format!("    {} after {} ms\n", a.relying_party, a.after_ms);
    }
    out += &format!(
        "  fetched after it: CRL {}, status lists {}\n  introspections refused: {}\n  \
         introspections accepted after it: {} (must be 0)\n",
        r.crl_fetches_after,
        r.status_list_fetches_after,
        r.introspections_refused,
        r.introspections_accepted
    );
    for id in &r.accepted_credential_ids {
        out += &format!("    accepted: {id}\n");
    }
    out
}
