//! The conformance suite of [`crate::conformance`], run against the PostgreSQL ledger, each
//! check on a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;

use super::testdb::TestDb;
use crate::Ledger;
use crate::conformance::{Backend, conformance_tests};
use crate::conformance_signals::signal_conformance_tests;
use crate::conformance_usage::usage_conformance_tests;

/// A test database; each open connects a new ledger to it.
struct Postgres(TestDb);

#[async_trait]
impl Backend for Postgres {
    async fn open(&self) -> Arc<dyn Ledger> {
        Arc::new(self.0.ledger().await)
    }
}

conformance_tests!(async { Postgres(TestDb::create().await) });
signal_conformance_tests!(async { Postgres(TestDb::create().await) });
usage_conformance_tests!(async { Postgres(TestDb::create().await) });
