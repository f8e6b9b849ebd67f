//! Shared fixtures: the test kit's real-server harness (a fresh PKI, config and running server
//! per test), under the name the tests import it by.

pub use tessera_testkit::harness::*;
