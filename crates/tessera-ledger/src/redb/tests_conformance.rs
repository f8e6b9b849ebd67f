//! The conformance suite of [`crate::conformance`], run against the embedded redb ledger, each
//! check on a file of its own: one suite, two implementations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;

use super::test_support::open;
use crate::Ledger;
use crate::conformance::{Backend, conformance_tests};
use crate::conformance_signals::signal_conformance_tests;
use crate::conformance_usage::usage_conformance_tests;

/// A temporary directory; each open opens its ledger file anew.
struct Redb(tempfile::TempDir);

#[async_trait]
impl Backend for Redb {
    async fn open(&self) -> Arc<dyn Ledger> {
        Arc::new(open(&self.0))
    }
}

conformance_tests!(async { Redb(tempfile::tempdir().unwrap()) });
signal_conformance_tests!(async { Redb(tempfile::tempdir().unwrap()) });
usage_conformance_tests!(async { Redb(tempfile::tempdir().unwrap()) });
