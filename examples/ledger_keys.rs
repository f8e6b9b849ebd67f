//! Measures what time-ordered credential ids do to ledger inserts (issue 12): the same records
//! written to a fresh redb ledger once with ids of the older, purely random format and once
//! with time-ordered ids (issue millisecond first), through `Ledger::record` with many
//! concurrent writers, as the broker does. Reports credentials/s, the file size, and the size
//! after compaction (what the data really takes).
//!
//! ```text
//! cargo run --release --example ledger_keys -- [COUNT] [CACHE_MIB] [fsync]
//! ```
//! Defaults: 1,000,000 records, the broker's 64 MiB page cache, no fsync (so the B-tree's
//! cost is measured, not the disk's). Records are issued at 3 per millisecond.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use tessera_core::domain::id;
use tessera_ledger::{
    CredentialKind, CredentialRecord, EvidenceKind, Ledger, RecordParams, RedbLedger, RedbOptions,
    Status,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A well-mixed 64-bit value of `i` (splitmix64), standing in for random bytes.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`th record, issued at `start_ms + i / 3`, with a random or a time-ordered id.
fn record(i: u64, start_ms: i64, ordered: bool) -> CredentialRecord {
    let issued_ms = start_ms + (i / 3) as i64;
    let mut random = [0u8; 16];
    random[..8].copy_from_slice(&mix(i).to_le_bytes());
    random[8..].copy_from_slice(&mix(!i).to_le_bytes());
    let credential_id = if ordered {
        id::jwt_id(issued_ms, &random)
    } else {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    };
    let w = mix(i ^ 0x77) % 1000;
    CredentialRecord {
        credential_id,
        kind: CredentialKind::Jwt,
        workload: format!("spiffe://example.org/ns/team-{}/sa/svc-{w}", w % 100),
        owner: format!("team-{}", w % 100),
        destination: format!("https://svc-{}.example.org", w % 50),
        purpose: "read".to_owned(),
        grant: format!("grant-{w}"),
        evidence_kind: EvidenceKind::JwtSvid,
        evidence_hash: format!("{:016x}{:048x}", mix(i ^ 1), 0),
        issued_at: issued_ms.div_euclid(1000),
        expires_at: issued_ms.div_euclid(1000) + 3600,
        status: Status::Live,
        ci: None,
        status_list: None,
    }
}

/// Writes `count` records to a new ledger at `path`; returns credentials/s.
async fn write(path: &std::path::Path, count: u64, ordered: bool, options: RedbOptions) -> f64 {
    let ledger = Arc::new(RedbLedger::open(path, options).unwrap());
    let start_ms = 1_800_000_000_000;
    let started = Instant::now();
    let chunk = 2_000;
    for base in (0..count).step_by(chunk) {
        let tasks: Vec<_> = (base..(base + chunk as u64).min(count))
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                let credential = record(i, start_ms, ordered);
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
            t.await.unwrap().unwrap();
        }
    }
    ledger.close().await.unwrap();
    count as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: u64 = args.first().map_or(Ok(1_000_000), |a| a.parse())?;
    let cache_mib: usize = args.get(1).map_or(Ok(64), |a| a.parse())?;
    let durable = args.get(2).is_some_and(|a| a == "fsync");
    let dir = tempfile::tempdir()?;
    println!("| ids | records | cache | fsync | credentials/s | file | compacted |");
    println!("|---|---|---|---|---|---|---|");
    for (name, ordered) in [("random", false), ("time-ordered", true)] {
        let path = dir.path().join(format!("{name}.redb"));
        let options = RedbOptions {
            durable,
            cache_size: cache_mib << 20,
            ..RedbOptions::default()
        };
        let rate = write(&path, count, ordered, options).await;
        let written = std::fs::metadata(&path)?.len();
        let mut db = redb::Database::open(&path)?;
        while db.compact()? {}
        drop(db);
        let compacted = std::fs::metadata(&path)?.len();
        println!(
            "| {name} | {count} | {cache_mib} MiB | {durable} | {rate:.0} | {:.0} MiB | {:.0} MiB |",
            written as f64 / 1048576.0,
            compacted as f64 / 1048576.0
        );
    }
    Ok(())
}
