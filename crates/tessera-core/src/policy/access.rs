//! Access beyond minting, decided here and nowhere else: who may use the Admin service, who
//! may follow revocations or introspect, and who may revoke a token over RFC 7009.

use crate::attest::Principal;
use crate::domain::CredentialRecord;
use crate::spiffe_id::SpiffeId;

/// Why a caller may not do what it asked. The message says what would be allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{caller} is not listed in [admin] spiffe_ids")]
    NotAdmin { caller: String },
    #[error("{action} needs an X509-SVID or a JWT-SVID, not a CI token")]
    CiToken { action: &'static str },
    #[error("only the token's workload or an admin may revoke it")]
    NotHolder,
}

/// The access rules: the `[admin]` identities, and what any SPIFFE workload may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    admins: Vec<SpiffeId>,
}

impl Access {
    /// Rules under which exactly `admins` may use the Admin service.
    pub fn new(admins: Vec<SpiffeId>) -> Self {
        Access { admins }
    }

    /// Returns true when `id` is listed in `[admin]`.
    pub fn is_admin(&self, id: &SpiffeId) -> bool {
        self.admins.contains(id)
    }

    /// Returns the caller's SPIFFE ID when it is an admin; fails with `NotAdmin` otherwise
    /// (a CI identity never is one).
    pub fn admin<'a>(&self, caller: &'a Principal) -> Result<&'a SpiffeId, AccessError> {
        match caller {
            Principal::Spiffe(id) if self.is_admin(id) => Ok(id),
            other => Err(AccessError::NotAdmin {
                caller: other.to_string(),
            }),
        }
    }

    /// Returns the caller's SPIFFE ID for an `action` any workload may take (follow
    /// revocations, introspect, revoke its own token); fails with `CiToken` for a CI identity,
    /// whose token authenticates exchanges only.
    pub fn workload<'a>(
        &self,
        caller: &'a Principal,
        action: &'static str,
    ) -> Result<&'a SpiffeId, AccessError> {
        match caller {
            Principal::Spiffe(id) => Ok(id),
            Principal::Ci(_) => Err(AccessError::CiToken { action }),
        }
    }

    /// RFC 7009: the workload a token was minted for, or an admin, may revoke it. Fails with
    /// `NotHolder` for anyone else.
    pub fn may_revoke(
        &self,
        caller: &SpiffeId,
        record: &CredentialRecord,
    ) -> Result<(), AccessError> {
        if record.workload == caller.as_str() || self.is_admin(caller) {
            Ok(())
        } else {
            Err(AccessError::NotHolder)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::CiIdentity;
    use crate::domain::{CredentialKind, EvidenceKind, Status};

    const ADMIN: &str = "spiffe://example.org/ops/admin";
    const HOLDER: &str = "spiffe://example.org/ns/prod/sa/payments";
    const OTHER: &str = "spiffe://example.org/ns/prod/sa/orders";

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    fn spiffe(s: &str) -> Principal {
        Principal::Spiffe(id(s))
    }

    fn ci() -> Principal {
        Principal::Ci(Box::new(CiIdentity {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: "repo:octo-org/octo-repo:ref:refs/heads/main".into(),
            claims: serde_json::Map::new(),
            run_id: None,
            jti: None,
        }))
    }

    fn record(workload: &str) -> CredentialRecord {
        CredentialRecord {
            credential_id: "jti-1".into(),
            kind: CredentialKind::Jwt,
            workload: workload.into(),
            owner: "team-payments".into(),
            destination: "https://db.example.org".into(),
            purpose: "read".into(),
            grant: "payments-db".into(),
            evidence_kind: EvidenceKind::X509Svid,
            evidence_hash: "00".into(),
            issued_at: 0,
            expires_at: 300,
            status: Status::Live,
            ci: None,
            status_list: None,
        }
    }

    #[test]
    fn only_listed_spiffe_ids_are_admins() {
        let access = Access::new(vec![id(ADMIN)]);
        let cases = [
            (spiffe(ADMIN), Ok(ADMIN)),
            (spiffe(HOLDER), Err(HOLDER.to_owned())),
            (
                spiffe("spiffe://other.org/ops/admin"),
                Err("spiffe://other.org/ops/admin".into()),
            ),
            (ci(), Err(ci().to_string())),
        ];
        for (caller, want) in cases {
            let got = access.admin(&caller).map(SpiffeId::as_str);
            let want = want.map_err(|caller| AccessError::NotAdmin { caller });
            assert_eq!(got, want, "{caller}");
        }
        assert!(Access::default().admin(&spiffe(ADMIN)).is_err());
    }

    #[test]
    fn any_spiffe_workload_may_follow_and_introspect_but_a_ci_token_may_not() {
        let access = Access::default();
        assert_eq!(
            access
                .workload(&spiffe(HOLDER), "introspect")
                .map(SpiffeId::as_str),
            Ok(HOLDER)
        );
        assert_eq!(
            access.workload(&ci(), "introspect"),
            Err(AccessError::CiToken {
                action: "introspect"
            })
        );
    }

    #[test]
    fn a_token_may_be_revoked_by_its_workload_or_an_admin_only() {
        let access = Access::new(vec![id(ADMIN)]);
        let cases = [
            (HOLDER, Ok(())),
            (ADMIN, Ok(())),
            (OTHER, Err(AccessError::NotHolder)),
            // Path case matters (standards §1.5).
            (
                "spiffe://example.org/ns/prod/sa/Payments",
                Err(AccessError::NotHolder),
            ),
        ];
        for (caller, want) in cases {
            assert_eq!(
                access.may_revoke(&id(caller), &record(HOLDER)),
                want,
                "{caller}"
            );
        }
    }
}
