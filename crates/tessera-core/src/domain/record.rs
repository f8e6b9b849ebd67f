//! What the ledger keeps of one issued credential: no secret, only who, what for, and until when.

use serde::{Deserialize, Serialize};

use super::{CredentialKind, EvidenceKind, Status};

/// One issued credential, as the ledger keeps it. Holds no secret: neither the token nor the
/// evidence, only a SHA-256 of the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// JWT `jti`, or the certificate serial in lowercase hex.
    pub credential_id: String,
    pub kind: CredentialKind,
    /// The workload SPIFFE ID the credential was minted for (its `sub`).
    pub workload: String,
    pub owner: String,
    pub destination: String,
    pub purpose: String,
    /// Name of the grant that allowed the issuance.
    pub grant: String,
    pub evidence_kind: EvidenceKind,
    /// Lowercase hex SHA-256 of the evidence (the presented token or certificate).
    pub evidence_hash: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    pub status: Status,
    /// Who the CI token named, when the evidence was a CI / Kubernetes OIDC token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<CiEvidence>,
    /// Where the credential's status is published (the JWT's `status` claim); `None` for
    /// X.509 credentials and for JWTs minted before status lists existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_list: Option<StatusListRef>,
}

/// A credential's entry in a Token Status List: the list's name (its URI is
/// `<issuer>/statuslists/<list>`) and the credential's index in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatusListRef {
    pub list: String,
    pub idx: u32,
}

/// The CI identity behind a credential minted for an OIDC token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiEvidence {
    pub issuer: String,
    pub subject: String,
    /// The run / pipeline / pod the token belongs to, when the platform says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl CredentialRecord {
    /// Returns the issue time in unix milliseconds: read from a time-ordered id, else the start
    /// of the recorded issue second (ids of the older, random format).
    pub fn issued_at_ms(&self) -> i64 {
        super::id::issued_ms(&self.credential_id, self.issued_at)
    }

    /// The status as of `now` (unix seconds): a live record past `expires_at` reads as expired.
    pub fn status_at(&self, now: i64) -> Status {
        match self.status {
            Status::Live if self.expires_at <= now => Status::Expired,
            other => other,
        }
    }
}
