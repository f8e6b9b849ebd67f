//! `tessera ledger migrate` and `tessera ledger copy`, run as the binary against a fresh
//! PostgreSQL database (`TESSERA_TEST_PG_URL`, default trust auth as `postgres` on
//! 127.0.0.1:5432; a server that cannot be reached fails the test).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_ledger::{
    CredentialKind, CredentialRecord, EvidenceKind, Ledger, NewRule, RecordParams, RedbLedger,
    RedbOptions, ReplayGuard, Selector, Status,
};
use tessera_testkit::harness::Fixture;

/// The server, without a database; a password is given to check it is never printed (trust
/// auth ignores it).
fn server() -> String {
    std::env::var("TESSERA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:s3cret@127.0.0.1:5432".to_owned())
}

/// Runs `sql` on the server's `postgres` database.
fn admin(sql: &str) {
    run_sql(&format!("{}/postgres?sslmode=disable", server()), sql);
}

fn run_sql(url: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is not reachable ({e})"));
        let driver = tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = driver.await;
    });
}

/// A database of its own, dropped with this.
struct TestDb {
    name: String,
}

impl TestDb {
    fn create() -> TestDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "tessera_test_cli_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(&format!("CREATE DATABASE {name}"));
        TestDb { name }
    }

    fn url(&self) -> String {
        format!("{}/{}?sslmode=disable", server(), self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("TESSERA_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn record(id: &str, kind: CredentialKind) -> CredentialRecord {
    CredentialRecord {
        credential_id: id.into(),
        kind,
        workload: "spiffe://example.org/w".into(),
        owner: "team".into(),
        destination: "https://d".into(),
        purpose: "read".into(),
        grant: "g".into(),
        evidence_kind: EvidenceKind::JwtSvid,
        evidence_hash: "00".repeat(32),
        issued_at: 4_000_000_000,
        expires_at: 4_000_000_300,
        status: Status::Live,
        ci: None,
    }
}

/// Writes an embedded ledger at `path`: two records (one with a replay guard) and a rule.
fn embedded_ledger(path: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ledger = RedbLedger::open(path, RedbOptions::default()).unwrap();
        let guard = ReplayGuard {
            key: "k".into(),
            expires_at: 4_000_000_300,
        };
        for (id, kind, replay_guard) in [
            ("a", CredentialKind::Jwt, Some(guard)),
            ("b", CredentialKind::X509, None),
        ] {
            let credential = record(id, kind);
            let params = RecordParams {
                credential,
                replay_guard,
            };
            ledger.record(params).await.unwrap();
        }
        let rule = NewRule {
            revocation_id: "r".into(),
            selector: Selector::CredentialId,
            value: "a".into(),
            effective_at: 4_000_000_001,
            reason: "test".into(),
            revoked_by: "spiffe://example.org/ops/admin".into(),
        };
        ledger.add_rule(rule).await.unwrap();
        ledger.close().await.unwrap();
    });
}

#[test]
fn ledger_copy_moves_an_embedded_ledger_once_and_never_prints_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let from = path.to_str().unwrap();
    let db = TestDb::create();

    let missing = tessera(&["ledger", "copy", "--from", from, "--to", &db.url()]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no embedded ledger at"));

    embedded_ledger(&path);
    let copied = tessera(&["ledger", "copy", "--from", from, "--to", &db.url()]);
    let (stdout, stderr) = (text(&copied.stdout), text(&copied.stderr));
    assert!(copied.status.success(), "{stdout}\n{stderr}");
    for line in [
        "records: 2",
        "rules: 1",
        "events: 3",
        "replay guards: 1",
        "last sequence: 3",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from {stdout}");
    }
    assert!(stdout.contains("postgres:***@"), "{stdout}");
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    assert!(
        !stderr.contains("records ("),
        "no progress bar off a terminal: {stderr}"
    );

    let again = tessera(&["ledger", "copy", "--from", from, "--to", &db.url()]);
    let stderr = text(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains("not empty (2 credentials, 3 events, 1 rules)"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"));
}

/// Returns the fixture's config with `[ledger] url` = `url` instead of its `path`.
fn postgres_config(fx: &Fixture, url: &str) -> std::path::PathBuf {
    let config = std::fs::read_to_string(&fx.config_path).unwrap();
    let mut lines: Vec<String> = config.lines().map(str::to_owned).collect();
    let at = lines.iter().position(|l| l == "[ledger]").unwrap() + 1;
    assert!(lines[at].starts_with("path = "));
    lines[at] = format!("url = {url:?}");
    let path = fx.dir.path().join("postgres.toml");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn ledger_migrate_migrates_the_configured_database_and_refuses_a_newer_or_embedded_one() {
    let fx = Fixture::new();
    let embedded = fx.config_path.to_str().unwrap();
    let refused = tessera(&["ledger", "migrate", "--config", embedded]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("nothing to migrate: [ledger] path is an embedded ledger"),
        "{stderr}"
    );

    let db = TestDb::create();
    let config = postgres_config(&fx, &db.url());
    let config = config.to_str().unwrap();
    let migrated = tessera(&["ledger", "migrate", "--config", config]);
    let stdout = text(&migrated.stdout);
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let version = tessera_ledger::POSTGRES_SCHEMA_VERSION;
    assert!(
        stdout.contains(&format!("migrated from version 0 to {version}")),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");
    let again = tessera(&["ledger", "migrate", "--config", config]);
    assert!(text(&again.stdout).contains(&format!("already at version {version}")));

    run_sql(&db.url(), "INSERT INTO migrations (version) VALUES (99)");
    let newer = tessera(&["ledger", "migrate", "--config", config]);
    assert!(!newer.status.success());
    let stderr = text(&newer.stderr);
    assert!(
        stderr.contains(&format!("schema version 99, newer than the {version}")),
        "{stderr}"
    );
}
