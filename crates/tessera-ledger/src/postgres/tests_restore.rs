//! Tests of what a reconnect reads (persisted live counts, the X.509 records), of migrations,
//! of the session settings, and of a database that cannot be reached.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::testdb::TestDb;
use super::tests::{plain, sample};
use super::*;
use crate::{CredentialKind, Selector};

fn x509(id: &str, expires_at: i64) -> CredentialRecord {
    let mut record = sample(id, expires_at);
    record.kind = CredentialKind::X509;
    record.workload = "spiffe://example.org/x".into();
    record
}

#[tokio::test]
async fn a_reconnect_restores_live_counts_without_reading_records() {
    let db = TestDb::create().await;
    {
        let ledger = db.ledger().await;
        for (i, exp) in [960, 960, 1980].into_iter().enumerate() {
            let id = format!("j{i}");
            ledger.record(plain(sample(&id, exp))).await.unwrap();
        }
        ledger.record(plain(x509("x0", 1500))).await.unwrap();
    }
    // The counts are rows of their own: records that no longer decode do not matter.
    db.execute("UPDATE credentials SET kind = 99 WHERE credential_id LIKE 'j%'")
        .await;
    let ledger = db.ledger().await;
    assert!(matches!(
        ledger.get("j0").await,
        Err(LedgerError::Corrupt(_))
    ));
    let counts = ledger.live_counts(0).await.unwrap();
    assert_eq!(counts.total(0), 4);
    let w = |counts: &LiveCounts, value: &str| counts.count(Selector::Workload, value, 0);
    assert_eq!(w(&counts, "spiffe://example.org/w"), 3);
    assert_eq!(w(&counts, "spiffe://example.org/x"), 1);
    assert_eq!(counts.count(Selector::Owner, "team", 960), 2);
    let later = ledger.live_counts(960).await.unwrap();
    assert_eq!(later.total(960), 2, "what expired at 960 is not loaded");
    assert_eq!(
        ledger.x509_records(0).await.unwrap(),
        vec![x509("x0", 1500)]
    );
    assert!(ledger.x509_records(1500).await.unwrap().is_empty());
}

#[tokio::test]
async fn expiry_deletes_persisted_counts_and_sweep_the_x509_records() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    ledger.record(plain(sample("soon", 100))).await.unwrap();
    ledger.record(plain(x509("cert", 100))).await.unwrap();
    ledger.record(plain(sample("later", 500))).await.unwrap();
    // Counts are kept per expiry minute: those of `soon` go once its minute (100 → 120) ends.
    ledger.expire(120, usize::MAX).await.unwrap();
    let rows = ledger
        .read("test", |c| async move {
            let row = c
                .query_one("SELECT count(*) FROM live_counts", &[])
                .await
                .unwrap();
            Ok(row.get::<_, i64>(0))
        })
        .await
        .unwrap();
    assert_eq!(rows, 5, "only the five counts of `later` remain");
    assert_eq!(ledger.live_counts(0).await.unwrap().total(0), 1);
    assert_eq!(ledger.x509_records(0).await.unwrap().len(), 1);
    let sweep = SweepParams {
        expired_before: 200,
        rules_before: 0,
        limit: 100,
    };
    ledger.sweep(sweep).await.unwrap();
    assert!(ledger.x509_records(0).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_event_reads_its_credential_from_the_table_and_none_once_swept() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    let mut late = sample("late", 1000);
    late.issued_at = 900;
    ledger.record(plain(late.clone())).await.unwrap();
    ledger.record(plain(sample("early", 100))).await.unwrap();
    let events = ledger.events_since(0, 10).await.unwrap();
    assert_eq!(events[1].credential, Some(sample("early", 100)));
    let sweep = SweepParams {
        expired_before: 200,
        rules_before: 0,
        limit: 100,
    };
    ledger.sweep(sweep).await.unwrap();
    let events = ledger.events_since(0, 10).await.unwrap();
    let resolved: Vec<_> = events
        .iter()
        .map(|e| (e.sequence, e.kind, e.credential.clone()))
        .collect();
    assert_eq!(
        resolved,
        vec![
            (1, crate::EventKind::Issued, Some(late)),
            (2, crate::EventKind::Issued, None),
        ]
    );
}

#[tokio::test]
async fn migrations_apply_once_and_are_idempotent() {
    let db = TestDb::create().await;
    assert_eq!(migrate(&db.url()).await.unwrap(), 0, "a new database");
    assert_eq!(migrate(&db.url()).await.unwrap(), SCHEMA_VERSION);
    let ledger = db.ledger().await;
    ledger.record(plain(sample("a", 1000))).await.unwrap();
    drop(ledger);
    assert_eq!(migrate(&db.url()).await.unwrap(), SCHEMA_VERSION);
    let ledger = db.ledger().await;
    assert_eq!(
        ledger.len().await.unwrap(),
        1,
        "migrating again kept the data"
    );
}

#[tokio::test]
async fn concurrent_first_connects_migrate_once() {
    let db = TestDb::create().await;
    let (a, b) = tokio::join!(
        PostgresLedger::connect(db.options()),
        PostgresLedger::connect(db.options())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    a.record(plain(sample("a", 1000))).await.unwrap();
    assert!(b.get("a").await.unwrap().is_some());
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused() {
    let db = TestDb::create().await;
    migrate(&db.url()).await.unwrap();
    let newer = SCHEMA_VERSION + 1;
    db.execute(&format!(
        "INSERT INTO migrations (version) VALUES ({newer})"
    ))
    .await;
    let err = PostgresLedger::connect(db.options()).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::SchemaTooNew { found, supported }
            if found == newer && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    assert!(matches!(
        migrate(&db.url()).await,
        Err(LedgerError::SchemaTooNew { .. })
    ));
}

#[tokio::test]
async fn every_connection_commits_synchronously() {
    let db = TestDb::create().await;
    db.execute(&format!(
        "ALTER DATABASE {} SET synchronous_commit = off",
        db.name()
    ))
    .await;
    let ledger = db.ledger().await;
    let setting = ledger
        .read("test", |c| async move {
            let row = c.query_one("SHOW synchronous_commit", &[]).await.unwrap();
            Ok(row.get::<_, String>(0))
        })
        .await
        .unwrap();
    assert_eq!(setting, "on");
}

#[tokio::test]
async fn an_unreachable_database_fails_with_storage_instead_of_hanging() {
    // Nothing listens on port 1: connections are refused at once.
    let mut options = PostgresOptions::new("postgres://postgres@127.0.0.1:1/none?sslmode=disable");
    options.connect_timeout = Duration::from_millis(500);
    let err = PostgresLedger::connect(options).await.unwrap_err();
    assert!(matches!(err, LedgerError::Storage(_)), "{err}");
    let err = migrate("postgres://postgres@127.0.0.1:1/none?sslmode=disable")
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Storage(_)), "{err}");
}

#[test]
fn options_debug_hides_the_password() {
    let options = PostgresOptions::new("postgres://tessera:s3cret@db.internal:5432/ledger");
    let debug = format!("{options:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(
        debug.contains("tessera:***@db.internal:5432/ledger"),
        "{debug}"
    );
    let plain = format!("{:?}", PostgresOptions::new("postgres://u@h/d"));
    assert!(plain.contains("postgres://u@h/d"), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_writes_with_storage_and_the_ledger_recovers_by_itself() {
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    let mut live = ledger.subscribe();
    ledger.record(plain(sample("before", 1000))).await.unwrap();
    let name = db.name().to_owned();
    db.admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await;
    db.admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let down = ledger.record(plain(sample("during", 1000))).await;
    assert!(matches!(down, Err(LedgerError::Storage(_))), "{down:?}");
    assert!(matches!(
        ledger.get("before").await,
        Err(LedgerError::Storage(_))
    ));
    db.admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    let sequence = ledger.record(plain(sample("after", 1000))).await.unwrap();
    assert_eq!(sequence, 2, "the refused record took no sequence");
    assert!(ledger.get("during").await.unwrap().is_none());
    let seen: Vec<_> = [live.recv().await.unwrap(), live.recv().await.unwrap()]
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(seen, vec![1, 2]);
}

#[tokio::test]
async fn commits_are_measured_in_the_ledger_metrics() {
    let db = TestDb::create().await;
    let metrics = LedgerMetrics::default();
    let options = PostgresOptions {
        metrics: metrics.clone(),
        ..db.options()
    };
    let ledger = PostgresLedger::connect(options).await.unwrap();
    for id in ["a", "b", "c"] {
        ledger.record(plain(sample(id, 1000))).await.unwrap();
    }
    assert_eq!(metrics.event_sequence.get(), 3);
    assert_eq!(ledger.commits(), 3, "one commit per sequential record");
}

/// Returns whether the test server offers TLS.
async fn server_has_tls(db: &TestDb) -> bool {
    let ledger = db.ledger().await;
    ledger
        .read("test", |c| async move {
            let row = c.query_one("SHOW ssl", &[]).await.unwrap();
            Ok(row.get::<_, String>(0) == "on")
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn tls_to_the_database_verifies_its_certificate() {
    let db = TestDb::create().await;
    let has_tls = server_has_tls(&db).await;
    // The test server's certificate (if any) is not signed by a Web PKI root.
    let options = PostgresOptions {
        url: db.url().replace("sslmode=disable", "sslmode=require"),
        ..db.options()
    };
    let err = PostgresLedger::connect(options).await.unwrap_err();
    let message = err.to_string().to_lowercase();
    assert!(matches!(err, LedgerError::Storage(_)), "{err}");
    if has_tls {
        assert!(message.contains("certificate"), "{message}");
    } else {
        assert!(message.contains("tls"), "{message}");
    }
}

/// Returns the DNS name the certificate `der` is for (its first DNS SAN, else its CN).
fn certificate_name(der: &[u8]) -> String {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().and_then(|san| {
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
    });
    san.unwrap_or_else(|| {
        let cn = cert.subject().iter_common_name().next().unwrap();
        cn.as_str().unwrap().to_owned()
    })
}

#[tokio::test]
async fn tls_to_a_server_whose_root_is_given_connects_and_records() {
    use rustls::pki_types::pem::PemObject;
    let db = TestDb::create().await;
    let ledger = db.ledger().await;
    assert!(
        server_has_tls(&db).await,
        "the test server must offer TLS (ssl = on, as Debian's PostgreSQL packages set up)"
    );
    let cert_file = ledger
        .read("test", |c| async move {
            let row = c.query_one("SHOW ssl_cert_file", &[]).await.unwrap();
            Ok(row.get::<_, String>(0))
        })
        .await
        .unwrap();
    let cert = CertificateDer::from_pem_file(&cert_file).unwrap();
    // Verify the certificate's own name, connect to the test server's address.
    let name = certificate_name(&cert);
    let url = db.url();
    assert!(url.contains("@127.0.0.1:"), "a local test server: {url}");
    let url = url
        .replace("@127.0.0.1:", &format!("@{name}:"))
        .replace("sslmode=disable", "sslmode=require&hostaddr=127.0.0.1");
    let options = PostgresOptions {
        url,
        ca_certs: vec![cert],
        ..db.options()
    };
    let tls = PostgresLedger::connect(options).await.unwrap();
    tls.record(plain(sample("over-tls", 1000))).await.unwrap();
    assert!(ledger.get("over-tls").await.unwrap().is_some());
}
