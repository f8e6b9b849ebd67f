//! Integration tests: the real server on 127.0.0.1:0 with real TLS and real tokens, with every
//! key and certificate made by code (rcgen) for each test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_debug_implementations
)]

mod agent;
mod bundle_endpoint;
mod ci;
mod common;
mod config;
mod credential_source;
mod cutoffs;
mod durability;
mod evidence;
mod grant_expiry;
mod grants;
mod http;
mod issuer;
mod layout;
mod ledger_cli;
mod loadgen;
mod mint;
mod refusals;
mod reload;
mod reload_race;
mod relying_party;
mod replicas;
mod restart;
mod revocation;
mod signing_keys;
mod ssf;
mod status_list;
mod status_list_npm;
mod token_exchange;
mod watch_limits;
mod workload_api;
mod x509;
