//! The wire edge: gRPC and HTTP translate requests into domain calls and errors into statuses,
//! each in one place.

pub mod admin;
mod convert;
pub mod grpc;
pub mod http;
pub mod introspect;
mod status;
pub mod token;
pub mod watch;

pub use self::status::{broker_status, overloaded_status, request_status};
