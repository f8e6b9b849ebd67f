//! The names every stage shares: credential and evidence kinds, statuses and selectors. Plain
//! values with their wire and config spellings; nothing here imports a stage.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::CredentialRecord;

/// What kind of credential a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    Jwt,
    X509,
}

impl CredentialKind {
    /// The wire and config name: `jwt` or `x509`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::X509 => "x509",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialKind {
    type Err = UnknownName;

    /// Parses `jwt` or `x509`; fails with the offending name otherwise.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jwt" => Ok(CredentialKind::Jwt),
            "x509" => Ok(CredentialKind::X509),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A name that is not one of an enumeration's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// How the caller proved its identity when the credential was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceKind {
    /// An X509-SVID presented as TLS client certificate.
    X509Svid,
    /// A JWT-SVID presented as bearer token.
    JwtSvid,
    /// A CI or Kubernetes OIDC ID token.
    Oidc,
}

impl EvidenceKind {
    /// `x509-svid`, `jwt-svid` or `oidc`.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::X509Svid => "x509-svid",
            EvidenceKind::JwtSvid => "jwt-svid",
            EvidenceKind::Oidc => "oidc",
        }
    }
}

/// The stored status of a credential. `Expired` is derived from `expires_at` when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Live,
    Revoked,
    Expired,
}

impl Status {
    /// `live`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
        }
    }
}

/// What a revocation rule selects by (DESIGN.md invariant 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    CredentialId,
    Workload,
    Destination,
    Purpose,
    Owner,
    /// The grant a credential was minted under (its `name`), whole or in part: see
    /// [`GrantSelection`](crate::domain::GrantSelection).
    Grant,
}

impl Selector {
    /// Every selector, in the order credentials are checked against rules.
    pub const ALL: [Selector; 6] = [
        Selector::CredentialId,
        Selector::Workload,
        Selector::Destination,
        Selector::Purpose,
        Selector::Owner,
        Selector::Grant,
    ];

    /// `credential_id`, `workload`, `destination`, `purpose`, `owner` or `grant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Selector::CredentialId => "credential_id",
            Selector::Workload => "workload",
            Selector::Destination => "destination",
            Selector::Purpose => "purpose",
            Selector::Owner => "owner",
            Selector::Grant => "grant",
        }
    }

    /// Returns the one-byte code the ledger stores for this selector: its position in
    /// [`Selector::ALL`].
    pub fn code(self) -> u8 {
        match self {
            Selector::CredentialId => 0,
            Selector::Workload => 1,
            Selector::Destination => 2,
            Selector::Purpose => 3,
            Selector::Owner => 4,
            Selector::Grant => 5,
        }
    }

    /// Returns the selector stored as `code`, or `None` for a code no selector has.
    pub fn from_code(code: u8) -> Option<Selector> {
        Selector::ALL.get(usize::from(code)).copied()
    }

    /// Returns the value of this selector for `record`.
    pub fn value_of(self, record: &CredentialRecord) -> &str {
        match self {
            Selector::CredentialId => &record.credential_id,
            Selector::Workload => &record.workload,
            Selector::Destination => &record.destination,
            Selector::Purpose => &record.purpose,
            Selector::Owner => &record.owner,
            Selector::Grant => &record.grant,
        }
    }
}
