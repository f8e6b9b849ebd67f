//! The wire: gRPC messages and services of `proto/tessera/v1`, generated at build time. Clients
//! are behind the `client` feature, servers behind `server`. Nothing else in Tessera below
//! `tessera-server` (or in `tessera-client`) sees these types.

#![allow(missing_debug_implementations)]

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("tessera.v1");
}

pub use generated::*;

/// The encoded file descriptor set, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tessera_descriptor");
