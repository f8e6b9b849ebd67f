//! Errors → `tonic::Status`, once, with exhaustive matches. The caller is told what it can fix;
//! internal causes are logged, not returned.

use tonic::Status;

use crate::attest::{AttestError, OidcError};
use crate::broker::BrokerError;
use crate::ledger::LedgerError;
use crate::mint::MintError;
use crate::request::RequestError;

/// Maps a malformed request to `INVALID_ARGUMENT`.
pub fn request_status(e: &RequestError) -> Status {
    crate::metrics::METRICS.refused("invalidargument");
    Status::invalid_argument(e.to_string())
}

/// Maps a refused or failed mint to its status: evidence problems are `UNAUTHENTICATED`, policy
/// refusals `PERMISSION_DENIED`, storage trouble `UNAVAILABLE`, signer trouble `INTERNAL`.
pub fn broker_status(e: &BrokerError) -> Status {
    let status = broker_status_inner(e);
    crate::metrics::METRICS.refused(&format!("{:?}", status.code()).to_lowercase());
    status
}

fn broker_status_inner(e: &BrokerError) -> Status {
    match e {
        BrokerError::Attest(AttestError::Oidc(OidcError::KeysUnavailable { issuer, reason })) => {
            tracing::warn!(%issuer, %reason, "issuer keys unavailable");
            Status::unavailable(format!(
                "the keys of issuer `{issuer}` cannot be fetched now; retry shortly"
            ))
        }
        BrokerError::Attest(e) => Status::unauthenticated(e.to_string()),
        BrokerError::Policy(e) => Status::permission_denied(e.to_string()),
        BrokerError::NotFound(_) => Status::not_found(e.to_string()),
        BrokerError::Mint(e) => {
            tracing::error!(error = %e, "minting failed");
            match e {
                MintError::Key(_) | MintError::Sign | MintError::Random => {
                    Status::internal("signing failed")
                }
                MintError::CaExpired(_) => {
                    Status::unavailable("the mint CA has expired; the operator must renew it")
                }
            }
        }
        BrokerError::Ledger(LedgerError::BadRequest(m)) => Status::invalid_argument(m.clone()),
        BrokerError::Ledger(LedgerError::Replay) => Status::unauthenticated(
            "OIDC token refused: it was already exchanged for this destination and purpose",
        ),
        BrokerError::Ledger(e) => {
            tracing::error!(error = %e, "ledger refused a record");
            match e {
                LedgerError::Closed => {
                    Status::unavailable("the broker is shutting down; retry on another replica")
                }
                LedgerError::Storage(_) | LedgerError::Corrupt(_) => {
                    Status::unavailable("the credential could not be recorded; retry")
                }
                LedgerError::Duplicate(_) | LedgerError::Replay | LedgerError::BadRequest(_) => {
                    Status::internal("credential id collision; retry")
                }
            }
        }
    }
}

/// Maps an overloaded broker to `RESOURCE_EXHAUSTED`.
pub fn overloaded_status(e: crate::limits::Overloaded) -> Status {
    crate::metrics::METRICS.refused("resourceexhausted");
    Status::resource_exhausted(e.to_string())
}
