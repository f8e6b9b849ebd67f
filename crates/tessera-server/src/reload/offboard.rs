//! What a reload takes away from the grants, as the `grant` rules that revoke it: a removed
//! grant (or one whose workload or `[grant.match]` changed) is revoked whole; a destination, purpose or
//! credential kind removed from a grant that stays is revoked as that part of the grant.

use std::sync::Arc;

use tessera_core::domain::{GrantPart, GrantSelection};
use tessera_core::policy::Grant;

/// One thing a reload took away, and why (the reason of its rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub selection: GrantSelection,
    /// `offboarded: …`, naming what changed.
    pub reason: String,
}

/// Returns what going from grants `old` to `new` takes away, in `old`'s order.
pub fn removals(old: &[Arc<Grant>], new: &[Arc<Grant>]) -> Vec<Removal> {
    let mut out = Vec::new();
    for before in old {
        let Some(after) = new.iter().find(|g| g.name == before.name) else {
            out.push(Removal {
                selection: GrantSelection::whole(&before.name),
                reason: format!("offboarded: grant `{}` removed", before.name),
            });
            continue;
        };
        if after.workload != before.workload {
            out.push(Removal {
                selection: GrantSelection::whole(&before.name),
                reason: format!(
                    "offboarded: grant `{}` now mints for {} instead of {}",
                    before.name, after.workload, before.workload
                ),
            });
            continue;
        }
        // Who may act as the workload changed: what was minted for a caller it no longer
        // admits cannot be told apart from the rest, so all of it goes (callers it still
        // admits mint again).
        if after.matcher != before.matcher {
            out.push(Removal {
                selection: GrantSelection::whole(&before.name),
                reason: format!(
                    "offboarded: grant `{}` now admits other callers ([grant.match] changed)",
                    before.name
                ),
            });
            continue;
        }
        out.extend(parts_removed(before, after));
    }
    out
}

/// Returns the destinations, purposes and kinds of `before` that `after` no longer has.
fn parts_removed(before: &Grant, after: &Grant) -> Vec<Removal> {
    let name = &before.name;
    let destinations = before
        .destinations
        .iter()
        .filter(|d| !after.destinations.contains(d))
        .map(|d| {
            (
                GrantPart::Destination(d.clone()),
                format!("destination `{d}`"),
            )
        });
    let purposes = before
        .purposes
        .iter()
        .filter(|p| !after.purposes.contains(p))
        .map(|p| (GrantPart::Purpose(p.clone()), format!("purpose `{p}`")));
    let kinds = before
        .credentials
        .iter()
        .filter(|k| !after.credentials.contains(k))
        .map(|k| {
            (
                GrantPart::Kind(*k),
                format!("credential kind `{}`", k.as_str()),
            )
        });
    destinations
        .chain(purposes)
        .chain(kinds)
        .map(|(part, what)| Removal {
            selection: GrantSelection::part(name, part),
            reason: format!("offboarded: {what} removed from grant `{name}`"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tessera_core::domain::CredentialKind;
    use tessera_core::policy::GrantMatch;

    use super::*;

    fn grant(name: &str, destinations: &[&str], kinds: &[CredentialKind]) -> Arc<Grant> {
        Arc::new(Grant {
            name: name.into(),
            workload: "spiffe://example.org/w".parse().unwrap(),
            owner: "team".into(),
            expires: time::macros::date!(2099 - 01 - 01),
            destinations: destinations.iter().map(|d| d.to_string()).collect(),
            purposes: vec!["read".into()],
            credentials: kinds.to_vec(),
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(60),
            matcher: GrantMatch::Spiffe("spiffe://example.org/w".parse().unwrap()),
        })
    }

    const BOTH: &[CredentialKind] = &[CredentialKind::Jwt, CredentialKind::X509];

    #[test]
    fn an_unchanged_configuration_takes_nothing_away() {
        let grants = [grant("a", &["d1", "d2"], BOTH)];
        assert!(removals(&grants, &grants).is_empty());
    }

    #[test]
    fn a_removed_grant_is_revoked_whole() {
        let old = [grant("a", &["d1"], BOTH), grant("b", &["d1"], BOTH)];
        let new = [grant("b", &["d1"], BOTH)];
        let r = removals(&old, &new);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].selection, GrantSelection::whole("a"));
        assert_eq!(r[0].reason, "offboarded: grant `a` removed");
    }

    #[test]
    fn a_narrowed_grant_loses_only_what_was_removed() {
        let old = [grant("a", &["d1", "d2"], BOTH)];
        let new = [grant("a", &["d1", "d3"], &[CredentialKind::Jwt])];
        let r = removals(&old, &new);
        let texts: Vec<String> = r.iter().map(|r| r.selection.to_string()).collect();
        assert_eq!(texts, ["a/destination=d2", "a/kind=x509"]);
        assert_eq!(
            r[0].reason,
            "offboarded: destination `d2` removed from grant `a`"
        );
    }

    #[test]
    fn a_grant_that_now_mints_for_another_workload_is_revoked_whole() {
        let old = [grant("a", &["d1"], BOTH)];
        let mut moved = (*old[0]).clone();
        moved.workload = "spiffe://example.org/other".parse().unwrap();
        let r = removals(&old, &[Arc::new(moved)]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].selection, GrantSelection::whole("a"));
        assert!(r[0].reason.contains("spiffe://example.org/other"));
    }

    #[test]
    fn a_grant_that_admits_other_callers_is_revoked_whole() {
        let old = [grant("a", &["d1"], BOTH)];
        let mut other = (*old[0]).clone();
        other.matcher = GrantMatch::Spiffe("spiffe://example.org/ns/*".parse().unwrap());
        let r = removals(&old, &[Arc::new(other)]);
        assert_eq!(r.len(), 1);
        assert!(r[0].reason.contains("[grant.match] changed"), "{r:?}");
    }

    #[test]
    fn a_widened_or_reordered_grant_takes_nothing_away() {
        let old = [
            grant("a", &["d1"], &[CredentialKind::Jwt]),
            grant("b", &["d1"], BOTH),
        ];
        let new = [
            grant("b", &["d1", "d2"], BOTH),
            grant("a", &["d1", "d2"], BOTH),
        ];
        assert!(removals(&old, &new).is_empty());
    }
}
