//! The fake CI OIDC issuer of the test kit, under the name the tests import it by.

pub use tessera_testkit::ci_issuer::*;
