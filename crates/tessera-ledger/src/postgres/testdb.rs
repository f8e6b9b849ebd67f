//! A fresh database per test, dropped when the test ends (also when it fails). The server is
//! `TESSERA_TEST_PG_URL` (default: trust auth as `postgres` on 127.0.0.1:5432); a server that
//! cannot be reached fails the test, it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;

use super::{PostgresLedger, PostgresOptions};

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
/// Prefix of every test database's name.
pub(super) const PREFIX: &str = "tessera_test_";

/// Returns the server URL, without a database.
fn server() -> String {
    std::env::var("TESSERA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// Runs `sql` on the server's `postgres` database; panics naming the server when it cannot
/// be reached.
async fn admin(sql: &str) {
    let url = format!("{}/postgres?sslmode=disable", server());
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {} ({e}): start it (CI does) or set \
                 TESSERA_TEST_PG_URL",
                server()
            )
        });
    let driver = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = driver.await;
}

/// A database of its own for one test; dropped (connections and all) when this is dropped.
#[derive(Debug)]
pub(crate) struct TestDb {
    name: String,
}

impl TestDb {
    /// Creates a database with a name no other test uses.
    pub(crate) async fn create() -> TestDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{PREFIX}{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(&format!("CREATE DATABASE {name}")).await;
        TestDb { name }
    }

    /// Returns the name of this database.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` on the server's `postgres` database (to alter this one from outside).
    pub(crate) async fn admin(&self, sql: &str) {
        admin(sql).await;
    }

    /// Returns the URL of this database.
    pub(crate) fn url(&self) -> String {
        format!("{}/{}?sslmode=disable", server(), self.name)
    }

    /// Returns ledger options for this database, with a small pool.
    pub(crate) fn options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: 4,
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(20),
            ..PostgresOptions::new(self.url())
        }
    }

    /// Returns a ledger on this database.
    pub(crate) async fn ledger(&self) -> PostgresLedger {
        PostgresLedger::connect(self.options()).await.unwrap()
    }

    /// Runs `sql` on this database.
    pub(crate) async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url(), NoTls).await.unwrap();
        let driver = tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = driver.await;
    }
}

impl Drop for TestDb {
    /// Drops the database (closing the connections still on it) from a thread of its own, so
    /// it also works while a test's runtime is unwinding.
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(admin(&sql));
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
