//! One place classifies why a request was not served. Every error a request can meet becomes a
//! [`Refusal`]: a [`Class`] (invalid, unauthenticated, denied, not found, out of range,
//! overloaded, rate limited, unavailable, internal), what the caller is told, the OAuth error code it has on HTTP, and the
//! internal cause that is logged but never returned. The gRPC status (`api::status`) and the
//! OAuth JSON (`api::token`) only render a refusal; logging and the `tessera_refused` metric
//! happen once, in [`Refusal::observe`].

use tessera_core::attest::{AttestError, OidcError};
use tessera_core::csr::CsrError;
use tessera_core::mint::MintError;
use tessera_core::policy::{AccessError, PolicyError};
use tessera_core::request::RequestError;
use tessera_ledger::LedgerError;

use crate::audit::untrusted;
use crate::issuer::IssueError;
use crate::limits::Overloaded;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimited;
use crate::revoker::RevokeError;
use crate::ssf::error::SsfError;
use crate::watchers::WatchRefusal;

/// What kind of refusal: decides the gRPC code and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The request is malformed (`INVALID_ARGUMENT`, HTTP 400).
    Invalid,
    /// No or bad evidence (`UNAUTHENTICATED`; HTTP 400 on `/token`, 401 elsewhere).
    Unauthenticated,
    /// Authenticated, but not allowed (`PERMISSION_DENIED`, HTTP 400 on `/token`).
    Denied,
    /// What the request names does not exist (`NOT_FOUND`).
    NotFound,
    /// A position past the end, e.g. a sequence not yet assigned (`OUT_OF_RANGE`, HTTP 400).
    OutOfRange,
    /// At capacity: retry shortly (`RESOURCE_EXHAUSTED`, HTTP 503).
    Overloaded,
    /// This caller went past its own rate: retry later (`RESOURCE_EXHAUSTED`, HTTP 429).
    RateLimited,
    /// A dependency is down: retry (`UNAVAILABLE`, HTTP 503).
    Unavailable,
    /// The broker's own state refuses it until an operator fixes it, e.g. an invalid
    /// configuration file on reload (`FAILED_PRECONDITION`, HTTP 409).
    Precondition,
    /// A fault of the broker (`INTERNAL`, HTTP 500).
    Internal,
}

impl Class {
    /// The `reason` label of `tessera_refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Invalid => "invalid",
            Class::Unauthenticated => "unauthenticated",
            Class::Denied => "denied",
            Class::NotFound => "not_found",
            Class::OutOfRange => "out_of_range",
            Class::Overloaded => "overloaded",
            Class::RateLimited => "rate_limited",
            Class::Unavailable => "unavailable",
            Class::Internal => "internal",
            Class::Precondition => "precondition",
        }
    }
}

/// The RFC 6749 / 8693 error code a refusal has when rendered as OAuth JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    InvalidRequest,
    InvalidClient,
    InvalidTarget,
    InvalidScope,
    UnauthorizedClient,
    UnsupportedGrantType,
    TemporarilyUnavailable,
    /// RFC 8628 §3.5 (registered for OAuth extensions): the client must slow down.
    SlowDown,
    ServerError,
}

impl OAuthCode {
    /// The wire spelling, e.g. `invalid_target`.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthCode::InvalidRequest => "invalid_request",
            OAuthCode::InvalidClient => "invalid_client",
            OAuthCode::InvalidTarget => "invalid_target",
            OAuthCode::InvalidScope => "invalid_scope",
            OAuthCode::UnauthorizedClient => "unauthorized_client",
            OAuthCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthCode::SlowDown => "slow_down",
            OAuthCode::ServerError => "server_error",
        }
    }
}

/// A classified refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub class: Class,
    pub oauth: OAuthCode,
    /// What the caller is told: what it can fix, never an internal detail.
    pub message: String,
    /// The internal cause, logged at warn/error level; `None` when `message` says it all.
    pub cause: Option<String>,
    /// Seconds after which the caller may retry (HTTP `Retry-After`), when known.
    pub retry_after_secs: Option<u64>,
}

impl Refusal {
    /// A refusal whose message is everything there is to say.
    pub fn new(class: Class, oauth: OAuthCode, message: impl Into<String>) -> Self {
        Refusal {
            class,
            oauth,
            message: message.into(),
            cause: None,
            retry_after_secs: None,
        }
    }

    /// A malformed request, with the OAuth code that names the bad parameter.
    pub fn invalid(oauth: OAuthCode, message: impl Into<String>) -> Self {
        Refusal::new(Class::Invalid, oauth, message)
    }

    fn with_cause(mut self, cause: impl ToString) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// Logs the refusal (its cause, for the operator) and counts it, once. Message and cause
    /// may quote what the caller sent: each is logged cut to [`untrusted`]'s bound.
    pub fn observe(&self, metrics: &Metrics) {
        metrics.refused(self.class.as_str());
        let message = untrusted(&self.message);
        match (self.cause.as_deref().map(untrusted), self.class) {
            (Some(cause), Class::Internal) => {
                tracing::error!(cause = %cause, message = %message, "request failed")
            }
            (Some(cause), _) => {
                tracing::warn!(cause = %cause, message = %message, "request refused")
            }
            (None, _) => {
                tracing::debug!(class = self.class.as_str(), message = %message, "request refused")
            }
        }
    }
}

impl From<&AttestError> for Refusal {
    fn from(e: &AttestError) -> Self {
        match e {
            AttestError::Oidc(OidcError::KeysUnavailable { issuer, reason }) => Refusal::new(
                Class::Unavailable,
                OAuthCode::TemporarilyUnavailable,
                format!("the keys of issuer `{issuer}` cannot be fetched now; retry shortly"),
            )
            .with_cause(reason),
            AttestError::NoCredentials
            | AttestError::MalformedAuthorization
            | AttestError::JwtSvid(_)
            | AttestError::X509Svid(_)
            | AttestError::Oidc(_) => Refusal::new(
                Class::Unauthenticated,
                OAuthCode::InvalidRequest,
                e.to_string(),
            ),
        }
    }
}

impl From<&PolicyError> for Refusal {
    fn from(e: &PolicyError) -> Self {
        let oauth = match e {
            PolicyError::Purpose { .. } => OAuthCode::InvalidScope,
            PolicyError::NoGrant { .. }
            | PolicyError::Destination { .. }
            | PolicyError::Kind { .. }
            | PolicyError::GrantExpired { .. } => OAuthCode::InvalidTarget,
        };
        Refusal::new(Class::Denied, oauth, e.to_string())
    }
}

impl From<&AccessError> for Refusal {
    fn from(e: &AccessError) -> Self {
        match e {
            AccessError::CiToken { .. } => Refusal::new(
                Class::Unauthenticated,
                OAuthCode::InvalidClient,
                e.to_string(),
            ),
            AccessError::NotAdmin { .. } | AccessError::NotHolder => {
                Refusal::new(Class::Denied, OAuthCode::UnauthorizedClient, e.to_string())
            }
        }
    }
}

impl From<&MintError> for Refusal {
    fn from(e: &MintError) -> Self {
        match e {
            MintError::Key(_) | MintError::Sign | MintError::Random => {
                Refusal::new(Class::Internal, OAuthCode::ServerError, "signing failed")
            }
            MintError::CaExpired(_) => Refusal::new(
                Class::Unavailable,
                OAuthCode::TemporarilyUnavailable,
                "the mint CA has expired; the operator must renew it",
            ),
        }
        .with_cause(e)
    }
}

impl From<&LedgerError> for Refusal {
    fn from(e: &LedgerError) -> Self {
        match e {
            LedgerError::BadRequest(m) => Refusal::invalid(OAuthCode::InvalidRequest, m.clone()),
            LedgerError::Replay => Refusal::new(
                Class::Unauthenticated,
                OAuthCode::InvalidRequest,
                "OIDC token refused: it was already exchanged for this destination and purpose",
            ),
            LedgerError::Closed => Refusal::new(
                Class::Unavailable,
                OAuthCode::TemporarilyUnavailable,
                "the broker is shutting down; retry on another replica",
            )
            .with_cause(e),
            LedgerError::Storage(_)
            | LedgerError::Corrupt(_)
            | LedgerError::SchemaTooNew { .. } => Refusal::new(
                Class::Unavailable,
                OAuthCode::TemporarilyUnavailable,
                "the ledger cannot be used now; retry shortly",
            )
            .with_cause(e),
            LedgerError::Duplicate(_) => Refusal::new(
                Class::Internal,
                OAuthCode::ServerError,
                "credential id collision; retry",
            )
            .with_cause(e),
        }
    }
}

impl From<&IssueError> for Refusal {
    fn from(e: &IssueError) -> Self {
        match e {
            IssueError::Attest(e) => e.into(),
            IssueError::Policy(e) => e.into(),
            IssueError::Mint(e) => e.into(),
            IssueError::Ledger(e) => e.into(),
            IssueError::NoMintCa => {
                Refusal::new(Class::Internal, OAuthCode::ServerError, e.to_string())
            }
            IssueError::Reloaded => Refusal::new(
                Class::Unavailable,
                OAuthCode::TemporarilyUnavailable,
                e.to_string(),
            ),
        }
    }
}

impl From<&RevokeError> for Refusal {
    fn from(e: &RevokeError) -> Self {
        match e {
            RevokeError::NotFound(_) => {
                Refusal::new(Class::NotFound, OAuthCode::InvalidRequest, e.to_string())
            }
            RevokeError::Ledger(e) => e.into(),
            RevokeError::Random(e) => e.into(),
        }
    }
}

impl From<&RequestError> for Refusal {
    fn from(e: &RequestError) -> Self {
        Refusal::invalid(OAuthCode::InvalidRequest, e.to_string())
    }
}

impl From<&CsrError> for Refusal {
    fn from(e: &CsrError) -> Self {
        Refusal::invalid(OAuthCode::InvalidRequest, e.to_string())
    }
}

impl From<Overloaded> for Refusal {
    fn from(e: Overloaded) -> Self {
        Refusal::new(
            Class::Overloaded,
            OAuthCode::TemporarilyUnavailable,
            e.to_string(),
        )
    }
}

impl From<&WatchRefusal> for Refusal {
    fn from(e: &WatchRefusal) -> Self {
        match e {
            WatchRefusal::PoolFull { .. }
            | WatchRefusal::IdentityFull { .. }
            | WatchRefusal::ReplaysBusy { .. } => Refusal::new(
                Class::Overloaded,
                OAuthCode::TemporarilyUnavailable,
                e.to_string(),
            ),
            WatchRefusal::BeyondLast { .. } => {
                Refusal::new(Class::OutOfRange, OAuthCode::InvalidRequest, e.to_string())
            }
        }
    }
}

impl From<&RateLimited> for Refusal {
    fn from(e: &RateLimited) -> Self {
        Refusal {
            retry_after_secs: Some(e.retry_after_secs),
            ..Refusal::new(Class::RateLimited, OAuthCode::SlowDown, e.to_string())
        }
    }
}

impl From<&SsfError> for Refusal {
    fn from(e: &SsfError) -> Self {
        match e {
            SsfError::Stream(_) | SsfError::Disabled | SsfError::NotPolled => {
                Refusal::invalid(OAuthCode::InvalidRequest, e.to_string())
            }
            SsfError::UnknownStream(_) => {
                Refusal::new(Class::NotFound, OAuthCode::InvalidRequest, e.to_string())
            }
            SsfError::PushHost(_) => {
                Refusal::new(Class::Denied, OAuthCode::UnauthorizedClient, e.to_string())
            }
            SsfError::OwnerFull(_) | SsfError::Full(_) | SsfError::TooSoon(_) => Refusal::new(
                Class::Overloaded,
                OAuthCode::TemporarilyUnavailable,
                e.to_string(),
            ),
            SsfError::Corrupt(..) => Refusal::new(
                Class::Internal,
                OAuthCode::ServerError,
                "the stream cannot be read",
            )
            .with_cause(e),
            SsfError::Ledger(e) => e.into(),
            SsfError::Sign(e) => e.into(),
        }
    }
}

#[cfg(test)]
#[path = "refusal_tests.rs"]
mod tests;
