//! Renders a [`Refusal`] as a `tonic::Status`: the class picks the code, the message is the
//! refusal's, nothing else. Logging and counting happen in [`Refusal::observe`], here, once per
//! refused call.

use tonic::{Code, Status};

use crate::metrics::Metrics;
use crate::refusal::{Class, Refusal};
use crate::watchers::WatchRefusal;

/// Why a watch stream ended before the watcher went away; rendered by [`watch_end`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// Refused while replaying (no replay turn came in time): classified as any refusal.
    Refused(WatchRefusal),
    /// The ledger could not be read (`UNAVAILABLE`).
    Unreadable,
    /// The server is shutting down (`UNAVAILABLE`); resume after `last`.
    ShuttingDown { last: u64 },
    /// The watcher fell too far behind the live events (`ABORTED`); resume after `last`.
    FellBehind { last: u64 },
}

/// Returns the gRPC code of a refusal class.
pub fn code(class: Class) -> Code {
    match class {
        Class::Invalid => Code::InvalidArgument,
        Class::Unauthenticated => Code::Unauthenticated,
        Class::Denied => Code::PermissionDenied,
        Class::NotFound => Code::NotFound,
        Class::OutOfRange => Code::OutOfRange,
        Class::Overloaded | Class::RateLimited => Code::ResourceExhausted,
        Class::Unavailable => Code::Unavailable,
        Class::Precondition => Code::FailedPrecondition,
        Class::Internal => Code::Internal,
    }
}

/// Observes `refusal` (log + metric) and returns the status to send.
pub fn status(refusal: Refusal, metrics: &Metrics) -> Status {
    refusal.observe(metrics);
    Status::new(code(refusal.class), refusal.message)
}

/// Classifies `error`, observes it and returns the status to send.
pub fn refuse<'a, E>(error: &'a E, metrics: &Metrics) -> Status
where
    Refusal: From<&'a E>,
{
    status(Refusal::from(error), metrics)
}

/// Returns the status that ends a watch stream, naming the sequence to resume from; a refusal
/// is observed (logged and counted) as every refusal is.
pub fn watch_end(end: WatchEnd, metrics: &Metrics) -> Status {
    match end {
        WatchEnd::Refused(refusal) => refuse(&refusal, metrics),
        WatchEnd::Unreadable => Status::unavailable("events cannot be read; retry"),
        WatchEnd::ShuttingDown { last } => Status::unavailable(format!(
            "the broker is shutting down; resume with since_sequence = {last}"
        )),
        WatchEnd::FellBehind { last } => Status::aborted(format!(
            "this watcher fell behind; resume with since_sequence = {last}"
        )),
    }
}
