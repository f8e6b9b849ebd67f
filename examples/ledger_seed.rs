//! Seeds a ledger file with live credentials, for memory and restart measurements (issue 6,
//! `bench/memory.sh`): many workloads, destinations and purposes, expiries spread over the
//! next 50 minutes, optionally a share of X.509 records. Writes straight through
//! `RedbLedger` without fsync (`durable: false`), then compacts the file.
//!
//! ```text
//! cargo run --release --example ledger_seed -- PATH COUNT [X509_PERCENT] [WORKLOADS] [DELAY]
//! ```
//! Defaults: 0 % X.509, 10,000 workloads (with 100 owners), 50 destinations, 4 purposes.
//! Expiries are spread over the 50 minutes that start DELAY seconds from now (default 0): give
//! a long seed a delay so its credentials are still live when the broker is measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use tessera_core::clock::{Clock, SystemClock};
use tessera_ledger::{
    CredentialKind, CredentialRecord, EvidenceKind, Ledger, RecordParams, RedbLedger, RedbOptions,
    Status,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

const DESTINATIONS: u64 = 50;
const PURPOSES: [&str; 4] = ["read", "write", "ledger:write", "image:push"];
const OWNERS: u64 = 100;
/// Expiries are spread over this many seconds from now.
const SPREAD: u64 = 3000;

/// A well-mixed 64-bit value of `i` (splitmix64), standing in for random bytes.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`th seeded credential.
fn record(i: u64, now: i64, x509_percent: u64, workloads: u64, delay: i64) -> CredentialRecord {
    let w = mix(i) % workloads;
    let x509 = mix(i ^ 0x5eed) % 100 < x509_percent;
    let (kind, credential_id, evidence_kind) = if x509 {
        let id = format!("{:016x}{:016x}", mix(i) >> 1, mix(!i));
        (CredentialKind::X509, id, EvidenceKind::X509Svid)
    } else {
        // As long as a real `jti` (16 bytes, base64url): 22 characters.
        let id = format!("{:016x}{:06x}", mix(i), mix(!i) & 0xff_ffff);
        (CredentialKind::Jwt, id, EvidenceKind::JwtSvid)
    };
    let ttl_left = 1 + (mix(i.wrapping_mul(31)) % SPREAD) as i64;
    CredentialRecord {
        credential_id,
        kind,
        workload: format!("spiffe://example.org/ns/team-{}/sa/svc-{w}", w % OWNERS),
        owner: format!("team-{}", w % OWNERS),
        destination: format!("https://svc-{}.example.org", w % DESTINATIONS),
        purpose: PURPOSES[(mix(i ^ 7) % 4) as usize].to_owned(),
        grant: format!("grant-{w}"),
        evidence_kind,
        evidence_hash: format!(
            "{:016x}{:016x}{:016x}{:016x}",
            mix(i ^ 1),
            mix(i ^ 2),
            mix(i ^ 3),
            mix(i ^ 4)
        ),
        issued_at: now - 60,
        expires_at: now + delay + ttl_left,
        status: Status::Live,
        ci: None,
        status_list: None,
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(count)) = (args.first(), args.get(1)) else {
        return Err("usage: ledger_seed PATH COUNT [X509_PERCENT] [WORKLOADS] [DELAY]".into());
    };
    let count: u64 = count.parse()?;
    let x509_percent: u64 = args.get(2).map_or(Ok(0), |a| a.parse())?;
    let workloads: u64 = args.get(3).map_or(Ok(10_000), |a| a.parse())?;
    let delay: i64 = args.get(4).map_or(Ok(0), |a| a.parse())?;
    let now = SystemClock.unix_seconds();
    let started = Instant::now();
    let ledger = Arc::new(RedbLedger::open(
        std::path::Path::new(path),
        RedbOptions {
            max_batch: 8192,
            durable: false,
            // Random inserts into a multi-GB tree: a small cache turns each into reads.
            cache_size: 4 << 30,
            ..RedbOptions::default()
        },
    )?);
    let chunk = 20_000;
    for base in (0..count).step_by(chunk) {
        let tasks: Vec<_> = (base..(base + chunk as u64).min(count))
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                let credential = record(i, now, x509_percent, workloads, delay);
                tokio::spawn(async move {
                    ledger
                        .record(RecordParams {
                            credential,
                            replay_guard: None,
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        if (base / chunk as u64) % 50 == 49 {
            eprintln!("  {} seeded", base + chunk as u64);
        }
    }
    ledger.close().await?;
    drop(ledger);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {count} credentials in {secs:.1} s ({:.0}/s)",
        count as f64 / secs
    );
    // Non-durable commits cannot reuse the pages they free, so the file holds dead pages a
    // fsyncing broker would have reused: compact it to the size the data really takes.
    let written = std::fs::metadata(path)?.len();
    let started = Instant::now();
    let mut db = redb::Database::open(path)?;
    while db.compact()? {}
    drop(db);
    println!(
        "compacted {written} -> {} bytes in {:.1} s",
        std::fs::metadata(path)?.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
