//! The single-thread ceiling of the redb ledger writer (issue 16): how many credentials/s the
//! `ledger-writer` thread records at 100% of its core, for records like the broker's `mint-jwt`
//! (one workload, grant, destination and purpose; a status-list entry; time-ordered ids).
//!
//! For each number of writers in flight (the batch sizes a broker sees at rising load), it
//! records COUNT credentials through `Ledger::record` from that many concurrent tasks and reads
//! the writer thread's CPU time from `/proc` (`tessera bench`'s reader), so the figure is
//! the writer's own cost per credential, whatever the rest of the process does.
//!
//! ```text
//! cargo run --release --example ledger_writer_ceiling -- [COUNT] [fsync|nofsync]
//! ```
//! Defaults: 100,000 records per row, fsync on (the broker's default).
//! `LEDGER_CEILING_ROWS=16,64` measures only those numbers of writers in flight (e.g. to count
//! one batch size's instructions under callgrind).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use tessera_bench::report::cpu_of;
use tessera_core::domain::{StatusListRef, id};
use tessera_ledger::{
    CredentialKind, CredentialRecord, EvidenceKind, Ledger, RecordParams, RedbLedger, RedbOptions,
    Status,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The `i`th record, issued at `start_ms + i / 10` (10 per millisecond), like a dev mint.
fn record(i: u64, start_ms: i64) -> CredentialRecord {
    let issued_ms = start_ms + (i / 10) as i64;
    let mut random = [0u8; 16];
    random[..8].copy_from_slice(&i.to_le_bytes());
    random[8..].copy_from_slice(&(!i).rotate_left(17).to_le_bytes());
    CredentialRecord {
        credential_id: id::jwt_id(issued_ms, &random),
        kind: CredentialKind::Jwt,
        workload: "spiffe://example.org/ns/payments/sa/api".to_owned(),
        owner: "team-payments".to_owned(),
        destination: "https://ledger.example.org".to_owned(),
        purpose: "ledger:write".to_owned(),
        grant: "payments-ledger".to_owned(),
        evidence_kind: EvidenceKind::JwtSvid,
        evidence_hash: format!("{:064x}", i % 1000),
        issued_at: issued_ms.div_euclid(1000),
        expires_at: issued_ms.div_euclid(1000) + 300,
        status: Status::Live,
        ci: None,
        status_list: Some(StatusListRef {
            list: format!("{}", issued_ms / 3_600_000),
            idx: u32::try_from(i % (1 << 20)).unwrap(),
        }),
    }
}

/// Records `count` credentials with `in_flight` concurrent writers; returns (credentials/s of
/// wall time, writer CPU µs per credential, mean batch size).
async fn run(ledger: &Arc<RedbLedger>, first: u64, count: u64, in_flight: u64) -> (f64, f64, f64) {
    let start_ms = 1_800_000_000_000;
    let cpu = cpu_of(std::process::id()).unwrap();
    let commits = ledger.commits();
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|lane| {
            let ledger = Arc::clone(ledger);
            tokio::spawn(async move {
                let mut i = first + lane;
                while i < first + count {
                    let params = RecordParams {
                        credential: record(i, start_ms),
                        replay_guard: None,
                    };
                    ledger.record(params).await.unwrap();
                    i += in_flight;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    let per_credential = cpu.per_request(&cpu_of(std::process::id()).unwrap(), count);
    let writer_us = per_credential.get("ledger-writer").copied().unwrap_or(0.0);
    let batches = (ledger.commits() - commits).max(1) as f64;
    (count as f64 / wall, writer_us, count as f64 / batches)
}

/// Returns the numbers of writers in flight to measure: `LEDGER_CEILING_ROWS` (a comma-separated
/// list of positive integers) or every row. Fails naming the variable on anything else.
fn rows() -> Result<Vec<u64>, Error> {
    const VAR: &str = "LEDGER_CEILING_ROWS";
    let Some(list) = std::env::var_os(VAR) else {
        return Ok(vec![1, 4, 16, 64, 256, 1024, 4096]);
    };
    let list = list
        .into_string()
        .map_err(|_| format!("{VAR} is not UTF-8"))?;
    list.split(',')
        .map(|item| match item.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{VAR}={list}: {item:?} is not a positive number of writers").into()),
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: u64 = args.first().map_or(Ok(100_000), |a| a.parse())?;
    let durable = args.get(1).is_none_or(|a| a != "nofsync");
    let rows = rows()?;
    let dir = tempfile::tempdir()?;
    let options = RedbOptions {
        durable,
        ..RedbOptions::default()
    };
    let ledger = Arc::new(RedbLedger::open(&dir.path().join("ledger.redb"), options)?);
    println!("fsync {durable}, {count} records per row");
    println!(
        "| writers in flight | mean batch | credentials/s (wall) | writer CPU per credential | writer ceiling at 100% of a core |"
    );
    println!("|---|---|---|---|---|");
    let mut first = 0;
    for in_flight in rows {
        let (rate, us, batch) = run(&ledger, first, count, in_flight).await;
        first += count;
        println!(
            "| {in_flight} | {batch:.1} | {rate:.0} | {us:.1} µs | {:.0}/s |",
            1e6 / us
        );
    }
    ledger.close().await?;
    Ok(())
}
