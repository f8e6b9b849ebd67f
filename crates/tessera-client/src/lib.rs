//! Tessera's SDK, what a workload or a relying party adds to its `Cargo.toml`. It compiles no
//! server: no redb, no axum, no hyper server, no rcgen.
//!
//! - [`mint`]: ask the broker for JWTs and X.509-SVIDs over gRPC (mTLS or a bearer SVID).
//! - [`exchange`]: trade a CI / Kubernetes OIDC token for a credential (RFC 8693).
//! - [`source`]: hold a fresh credential: mint, renew at half-life with jitter, retry, and
//!   renew at once when a revocation covers it (what `tessera agent` runs).
//! - [`relying_party`]: verify minted JWTs offline and follow `WatchRevocations`.
//! - [`spiffe_tls`]: rustls verifiers for mTLS between X.509-SVIDs.

pub mod exchange;
pub mod mint;
pub mod relying_party;
pub mod source;
pub mod spiffe_tls;

pub use tessera_proto as proto;
