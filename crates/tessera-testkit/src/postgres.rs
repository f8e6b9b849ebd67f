//! A throwaway PostgreSQL database per test: [`TestDatabase`] creates `tessera_it_<random>` on
//! the server `TESSERA_TEST_PG_URL` names (default: trust auth as `postgres` on
//! 127.0.0.1:5432) and drops it, `WITH (FORCE)`, when dropped (also when the test fails). A
//! server that cannot be reached fails the test; it is never skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::NoTls;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
/// Prefix of every database [`TestDatabase::create`] makes.
pub const PREFIX: &str = "tessera_it_";

/// Returns the server URL, without a database.
pub fn server() -> String {
    std::env::var("TESSERA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// Runs `sql` on `database` of the server; returns the rows of its last statement as text
/// (NULL as ""). Panics naming the server when it cannot be reached, or the SQL when it fails.
async fn run(database: &str, sql: &str) -> Vec<Vec<String>> {
    let url = format!("{}/{database}?sslmode=disable", server());
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
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = driver.await;
    messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default().to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// A database of its own for one test; dropped (connections and all) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    /// Creates a database with a name no other test (of any process) uses.
    pub async fn create() -> TestDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{PREFIX}{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("postgres", &format!("CREATE DATABASE {name}")).await;
        TestDatabase { name }
    }

    /// Returns the name of this database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the URL of this database (`sslmode=disable`), for `[ledger] url`.
    pub fn url(&self) -> String {
        format!("{}/{}?sslmode=disable", server(), self.name)
    }

    /// Runs `sql` on the server's `postgres` database (to alter or cut this one from outside);
    /// returns the rows of its last statement as text.
    pub async fn admin(&self, sql: &str) -> Vec<Vec<String>> {
        run("postgres", sql).await
    }

    /// Runs `sql` on this database; returns the rows of its last statement as text.
    pub async fn query(&self, sql: &str) -> Vec<Vec<String>> {
        run(&self.name, sql).await
    }

    /// Closes every connection to this database but the caller's; returns how many it closed.
    pub async fn terminate_connections(&self) -> usize {
        let rows = self
            .admin(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{}' AND pid <> pg_backend_pid()",
                self.name
            ))
            .await;
        rows.len()
    }

    /// Refuses (`false`) or allows again (`true`) new connections to this database.
    pub async fn allow_connections(&self, allow: bool) {
        self.admin(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
            self.name
        ))
        .await;
    }
}

impl Drop for TestDatabase {
    /// Drops the database (closing the connections still on it) from a thread of its own, so
    /// it also works while a test's runtime is unwinding.
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run("postgres", &sql));
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
