//! The wire edge: gRPC and HTTP translate requests into domain calls, and render refusals
//! ([`crate::refusal`]) as gRPC statuses ([`status`]) and OAuth JSON ([`oauth`]), each in one
//! place.

pub mod admin;
mod body;
pub mod caller;
mod convert;
mod form;
#[cfg(fuzzing)]
pub mod fuzz_hooks;
pub mod grants;
pub mod grpc;
pub mod http;
pub mod introspect;
pub mod oauth;
mod replay;
pub mod status;
pub mod status_list;
pub mod token;
pub mod watch;
