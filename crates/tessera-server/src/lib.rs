//! Tessera's server: the wire edge ([`api`]: gRPC and HTTPS), TLS ([`tls`]), the issuing and
//! revoking handles ([`issuer`], [`revoker`]), the grants in force ([`grants`]), the keys and
//! CAs that sign, rotated by reload ([`signing`]), the Token Status Lists ([`status_list`]),
//! wiring from configuration ([`config`], [`assemble`], [`server`]), the audit log and metrics. It sits on `tessera-core` (the flow)
//! and `tessera-ledger` (storage); only this crate knows the wire types of `tessera-proto`.
//!
//! A request flows one way: `api` → [`refusal`] on failure, else `issuer` (attest → policy →
//! mint → ledger) → reply.

pub mod api;
pub mod assemble;
pub mod audit;
pub mod audit_anchor;
pub mod coalesce;
pub mod config;
pub mod conns;
pub mod enforcement;
pub mod expiry;
pub mod grants;
pub mod https_conns;
pub mod issuer;
pub mod limits;
pub mod metrics;
pub mod rate_limit;
pub mod readiness;
pub mod refusal;
pub mod refusal_audit;
pub mod reload;
pub mod revoker;
pub mod server;
pub mod settings;
pub mod signing;
pub mod ssf;
pub mod status_list;
pub mod sweeper;
pub mod tls;
pub mod watchers;
pub mod workload_api;
