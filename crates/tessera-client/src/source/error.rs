//! Why a credential source could not mint, split into what a person must fix (evidence missing
//! or refused, no grant, a bad request) and what retrying fixes (the broker unreachable, slow or
//! overloaded).

use std::time::Duration;

use crate::mint::ClientError;

/// Why minting (or following revocations) failed. [`SourceError::is_transient`] tells a
/// failure that retrying fixes from one a person must fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The attestation evidence could not be read or is unusable (a file missing, empty, not
    /// PEM, a token that is not a header value).
    #[error("attestation evidence ({attestor}) is unusable: {reason}")]
    Evidence {
        attestor: &'static str,
        reason: String,
    },
    /// The broker refused: no or bad evidence (`UNAUTHENTICATED`), no grant
    /// (`PERMISSION_DENIED`), a bad request (`INVALID_ARGUMENT`) and the like.
    #[error("the broker refused ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
    /// The broker could not be reached, or failed, or shed the call; retried.
    #[error("the broker is unavailable ({code:?}): {message}")]
    Unavailable { code: tonic::Code, message: String },
    /// The broker did not answer in time; retried.
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    /// The broker's URL or CA cannot be used.
    #[error("broker endpoint `{url}`: {reason}")]
    Endpoint { url: String, reason: String },
    /// The broker answered something that cannot be used (a certificate for another key, a
    /// token that is not a JWT); retried.
    #[error("the broker's reply cannot be used: {0}")]
    BadReply(String),
    /// A key pair or CSR could not be made here.
    #[error("making the local key pair or CSR failed: {0}")]
    Key(String),
    /// The source stopped (its first mint failed for good, or it was dropped).
    #[error("the credential source has stopped")]
    Stopped,
}

impl SourceError {
    /// Returns true for a failure that retrying may fix (the broker unreachable, slow,
    /// overloaded, or answering nonsense); false for one a person must fix (evidence missing or
    /// refused, no grant, a bad request or endpoint).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Unavailable { .. } | SourceError::Timeout(_) | SourceError::BadReply(_)
        )
    }

    /// Returns the error for a status the broker answered with: refused for the codes that
    /// name the caller's mistake, unavailable for the rest.
    pub fn from_status(code: tonic::Code, message: &str) -> Self {
        let message = message.to_owned();
        match code {
            tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::NotFound
            | tonic::Code::Unimplemented => SourceError::Refused { code, message },
            _ => SourceError::Unavailable { code, message },
        }
    }
}

impl From<tonic::Status> for SourceError {
    fn from(status: tonic::Status) -> Self {
        SourceError::from_status(status.code(), status.message())
    }
}

impl From<ClientError> for SourceError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Url { url, source } => SourceError::Endpoint {
                url,
                reason: source.to_string(),
            },
            ClientError::Connect { url, source } => SourceError::Unavailable {
                code: tonic::Code::Unavailable,
                message: format!("connecting to {url}: {source}"),
            },
            ClientError::BadBearer => SourceError::Evidence {
                attestor: "bearer",
                reason: "the token is not a valid header value".to_owned(),
            },
            ClientError::Refused { code, message } => SourceError::from_status(code, &message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_the_caller_are_not_transient_and_outages_are() {
        for code in [
            tonic::Code::PermissionDenied,
            tonic::Code::Unauthenticated,
            tonic::Code::InvalidArgument,
        ] {
            assert!(
                !SourceError::from_status(code, "no").is_transient(),
                "{code:?}"
            );
        }
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::ResourceExhausted,
            tonic::Code::Unknown,
        ] {
            assert!(
                SourceError::from_status(code, "later").is_transient(),
                "{code:?}"
            );
        }
        assert!(SourceError::Timeout(Duration::from_secs(1)).is_transient());
        let missing = SourceError::Evidence {
            attestor: "token-file",
            reason: "gone".into(),
        };
        assert!(!missing.is_transient());
    }
}
