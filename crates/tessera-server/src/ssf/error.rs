//! Why a Shared Signals request was not served: one enum for the management and poll
//! endpoints, classified once in [`crate::refusal`].

use tessera_core::mint::MintError;
use tessera_ledger::LedgerError;

use super::stream::StreamError;

/// Why a Shared Signals request was not served (classified in [`crate::refusal`]).
#[derive(Debug, thiserror::Error)]
pub enum SsfError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("no stream `{0}` for this receiver")]
    UnknownStream(String),
    #[error("this receiver has {0} streams, the most allowed; delete one first")]
    OwnerFull(usize),
    #[error("the transmitter has {0} streams, the most it allows")]
    Full(usize),
    #[error("a verification was requested less than {0} s ago; retry later")]
    TooSoon(u64),
    #[error(
        "push to host `{0}` is not allowed for this receiver: poll instead, or ask an operator \
         to add the host to [ssf] push_hosts"
    )]
    PushHost(String),
    #[error("the stream is disabled: enable it first")]
    Disabled,
    #[error(
        "the stream delivers by push ({}): it cannot be polled",
        super::stream::PUSH
    )]
    NotPolled,
    #[error("stream `{0}` is stored unreadably: {1}")]
    Corrupt(String, String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Sign(#[from] MintError),
}
