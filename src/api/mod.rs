//! The wire edge: gRPC and HTTP translate requests into domain calls and errors into statuses,
//! each in one place.

pub mod grpc;
pub mod http;
mod status;
pub mod token;

pub use self::status::{broker_status, request_status};
