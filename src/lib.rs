//! Tessera: a short-lived credential broker. A workload proves what it is (X509-SVID over mTLS
//! or a JWT-SVID) and receives a minutes-scoped credential bound to it, one destination and one
//! purpose, recorded durably before it is handed out.
//!
//! The request flow runs one way: [`api`] → [`attest`] → [`policy`] → [`mint`] → [`ledger`],
//! orchestrated by [`broker`] and wired up by [`server`].

pub mod api;
pub mod attest;
pub mod audit;
pub mod broker;
pub mod clock;
pub mod config;
pub mod csr;
pub mod dev;
pub mod http_client;
pub mod ledger;
pub mod limits;
pub mod loadgen;
pub mod metrics;
pub mod mint;
pub mod policy;
pub mod relying_party;
pub mod request;
pub mod revocation;
pub mod server;
pub mod spiffe_id;
pub mod spiffe_tls;
pub mod tls;

/// Generated gRPC types and services of `proto/tessera/v1`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    tonic::include_proto!("tessera.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("tessera_descriptor");
}
