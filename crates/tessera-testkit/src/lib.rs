//! Tessera's test kit: the dev PKI (`tessera dev certs` writes it to `certs-dev/`), config
//! fixtures, a fake CI OIDC issuer, a throwaway PostgreSQL database per test, a SPIFFE Workload
//! API server, and the harness that starts the real server for tests.
//! DEV AND TEST ONLY: nothing here is for production.
// A test kit fails the test that called it: panicking on a broken fixture is its error path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bundle_endpoint;
pub mod ci_issuer;
pub mod dev;
pub mod fixtures;
pub mod harness;
pub mod pki;
pub mod postgres;
pub mod workload_api;
