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
