//! The value of a `grant` revocation rule: a whole grant (`payments-api`), or the part of it a
//! reload took away (`payments-api/destination=https://billing.example.org`,
//! `payments-api/purpose=ledger:write`, `payments-api/kind=x509`). Grant names cannot hold a
//! `/`, so the first one ends the name.

use std::fmt;
use std::str::FromStr;

use super::CredentialKind;

/// The part of a grant a scoped rule covers: its credentials for one destination, one
/// purpose, or of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GrantPart {
    Destination(String),
    Purpose(String),
    Kind(CredentialKind),
}

impl GrantPart {
    /// Returns true when a credential for `destination` and `purpose` of `kind` is in this part.
    pub fn covers(&self, destination: &str, purpose: &str, kind: CredentialKind) -> bool {
        match self {
            GrantPart::Destination(d) => d == destination,
            GrantPart::Purpose(p) => p == purpose,
            GrantPart::Kind(k) => *k == kind,
        }
    }
}

impl fmt::Display for GrantPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantPart::Destination(d) => write!(f, "destination={d}"),
            GrantPart::Purpose(p) => write!(f, "purpose={p}"),
            GrantPart::Kind(k) => write!(f, "kind={}", k.as_str()),
        }
    }
}

/// What a `grant` rule selects: every credential minted under a grant, or one part of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantSelection {
    pub grant: String,
    /// `None`: the whole grant.
    pub part: Option<GrantPart>,
}

/// Why a `grant` rule value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantSelectionError {
    #[error("the grant name is empty")]
    EmptyName,
    #[error(
        "`{0}` is not a part of a grant: write <grant>, <grant>/destination=<d>, \
         <grant>/purpose=<p> or <grant>/kind=<jwt|x509>"
    )]
    BadPart(String),
}

impl GrantSelection {
    /// Every credential minted under `grant`.
    pub fn whole(grant: &str) -> Self {
        GrantSelection {
            grant: grant.to_owned(),
            part: None,
        }
    }

    /// The credentials minted under `grant` in `part`.
    pub fn part(grant: &str, part: GrantPart) -> Self {
        GrantSelection {
            grant: grant.to_owned(),
            part: Some(part),
        }
    }
}

impl GrantSelection {
    /// Returns true when a credential of `grant` for `destination` and `purpose` of `kind` is
    /// selected.
    pub fn covers(
        &self,
        grant: &str,
        destination: &str,
        purpose: &str,
        kind: CredentialKind,
    ) -> bool {
        self.grant == grant
            && self
                .part
                .as_ref()
                .is_none_or(|part| part.covers(destination, purpose, kind))
    }
}

impl fmt::Display for GrantSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.part {
            None => f.write_str(&self.grant),
            Some(part) => write!(f, "{}/{part}", self.grant),
        }
    }
}

impl FromStr for GrantSelection {
    type Err = GrantSelectionError;

    /// Parses `<grant>` or `<grant>/<destination|purpose|kind>=<value>`; fails on an empty
    /// name, an unknown part, an empty value or an unknown kind.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (grant, part) = match s.split_once('/') {
            None => (s, None),
            Some((grant, part)) => (grant, Some(part)),
        };
        if grant.is_empty() {
            return Err(GrantSelectionError::EmptyName);
        }
        let Some(part) = part else {
            return Ok(GrantSelection::whole(grant));
        };
        let bad = || GrantSelectionError::BadPart(part.to_owned());
        let (field, value) = part.split_once('=').ok_or_else(bad)?;
        if value.is_empty() {
            return Err(bad());
        }
        let part = match field {
            "destination" => GrantPart::Destination(value.to_owned()),
            "purpose" => GrantPart::Purpose(value.to_owned()),
            "kind" => GrantPart::Kind(value.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        Ok(GrantSelection::part(grant, part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_selects_the_whole_grant() {
        let s: GrantSelection = "payments-api".parse().unwrap();
        assert_eq!(s, GrantSelection::whole("payments-api"));
        assert_eq!(s.to_string(), "payments-api");
    }

    #[test]
    fn each_part_round_trips_through_its_text() {
        for text in [
            "g/destination=https://billing.example.org/v1",
            "g/purpose=ledger:write",
            "g/kind=x509",
        ] {
            let s: GrantSelection = text.parse().unwrap();
            assert!(s.part.is_some());
            assert_eq!(s.to_string(), text);
        }
    }

    #[test]
    fn a_destination_may_hold_slashes_and_equals_signs() {
        let s: GrantSelection = "g/destination=https://a/b?c=d".parse().unwrap();
        assert_eq!(
            s.part,
            Some(GrantPart::Destination("https://a/b?c=d".into()))
        );
    }

    #[test]
    fn unknown_parts_empty_values_and_names_are_refused() {
        for text in [
            "",
            "/kind=jwt",
            "g/",
            "g/owner=x",
            "g/kind=pem",
            "g/purpose=",
        ] {
            assert!(text.parse::<GrantSelection>().is_err(), "{text}");
        }
    }

    #[test]
    fn a_part_covers_only_its_own_credentials() {
        let part = GrantPart::Purpose("p".into());
        assert!(part.covers("d", "p", CredentialKind::Jwt));
        assert!(!part.covers("d", "q", CredentialKind::Jwt));
        let kind = GrantPart::Kind(CredentialKind::X509);
        assert!(kind.covers("d", "p", CredentialKind::X509));
        assert!(!kind.covers("d", "p", CredentialKind::Jwt));
    }
}
