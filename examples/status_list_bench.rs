//! Token Status Lists (issue 12 benchmark):
//! - revoke → served list reflecting it, for a rule covering 1 credential and one covering
//!   1,000,000, with 1,000,000 credentials listed: from the moment the rule is committed (the
//!   Revoke reply) through the ledger subscription, the batched pass and the rendering
//!   (compression + signature) to a `GET /statuslists/<list>` answer (`StatusLists::serve`)
//!   whose bit is 1;
//! - the same for 1 covered credential through the real server: `Admin/Revoke` reply → an
//!   HTTPS fetch of the list whose bit is 1;
//! - the size of a list of 1,048,576 entries on the wire, with 0 %, 0.1 %, 1 % and 10 % revoked;
//! - the cost of minting a JWT with its `status` claim (allocate + sign + list the entry) against
//!   minting it without.
//!
//! ```text
//! cargo run --release --example status_list_bench -- [SAMPLES_1M] [SAMPLES_1]   # default 20 200
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_core::clock::{Clock, SharedClock, SystemClock};
use tessera_core::domain::{
    CredentialKind, CredentialRecord, EvidenceKind, NewRule, Selector, Status, StatusListRef,
};
use tessera_core::keys::SecretKey;
use tessera_core::mint::{JwtMinter, MintJwtParams, StatusClaim};
use tessera_core::spiffe_id::SpiffeId;
use tessera_core::status_list::EncodedList;
use tessera_ledger::{Ledger, RedbLedger, RedbOptions};
use tessera_server::signing::JwtKeys;
use tessera_server::status_list::{Served, StatusListConfig, StatusListParts, StatusLists};
use tokio_util::sync::CancellationToken;

const ISSUER: &str = "https://tessera.example.org";
const LISTED: usize = 1_000_000;

fn minter() -> Arc<JwtKeys> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let minter =
        JwtMinter::new(ISSUER, &SecretKey::from_pkcs8_der(pkcs8.as_ref().to_vec())).unwrap();
    Arc::new(JwtKeys::single(minter, Arc::new(SystemClock)))
}

fn lists(ledger: &Arc<dyn Ledger>, jwt: &Arc<JwtKeys>) -> Arc<StatusLists> {
    Arc::new(StatusLists::new(StatusListParts {
        issuer: ISSUER.into(),
        jwt: Arc::clone(jwt),
        ledger: Arc::clone(ledger),
        clock: Arc::new(SystemClock) as SharedClock,
        config: StatusListConfig::default(),
    }))
}

/// A record of `workload` listed at (`list`, `idx`), issued now.
fn record(id: usize, workload: &str, list: String, idx: u32, now: i64) -> CredentialRecord {
    CredentialRecord {
        credential_id: format!("c{id}"),
        kind: CredentialKind::Jwt,
        workload: workload.into(),
        owner: "team".into(),
        destination: "https://ledger.example.org".into(),
        purpose: "ledger:write".into(),
        grant: "g".into(),
        evidence_kind: EvidenceKind::X509Svid,
        evidence_hash: String::new(),
        issued_at: now,
        expires_at: now + 900,
        status: Status::Live,
        ci: None,
        status_list: Some(StatusListRef { list, idx }),
    }
}

/// Lists `n` credentials of `workload` (allocated and listed as the mint path does, not
/// recorded); returns the list and index of the last.
fn fill(lists: &StatusLists, n: usize, workload: &str) -> (String, u64) {
    let now = SystemClock.unix_seconds();
    let mut last = (String::new(), 0);
    for i in 0..n {
        let at = lists.allocate(now).unwrap();
        let list = at.list.to_string();
        lists.note_issued(&record(i, workload, list.clone(), at.idx, now));
        last = (list, u64::from(at.idx));
    }
    last
}

/// Returns the status of `idx` in the list `lists` serves as `name` now.
fn served_bit(lists: &StatusLists, name: &str, idx: u64) -> u8 {
    let Served::List(jwt) = lists.serve(name).unwrap() else {
        return 0;
    };
    let payload = std::str::from_utf8(&jwt)
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let list: EncodedList = serde_json::from_value(claims["status_list"].clone()).unwrap();
    list.decompress().unwrap().status(idx).unwrap()
}

fn rule(id: String, selector: Selector, value: &str) -> NewRule {
    NewRule {
        revocation_id: id,
        selector,
        value: value.into(),
        effective_at: SystemClock.unix_seconds(),
        // Covers the whole second (the seeded ids carry no time).
        effective_at_ms: None,
        reason: "bench".into(),
        revoked_by: "bench".into(),
        scope: None,
    }
}

/// Waits until `name` serves bit `idx` as 1; returns how long that took from `since`.
async fn until_served(lists: &StatusLists, name: &str, idx: u64, since: Instant) -> Duration {
    loop {
        if served_bit(lists, name, idx) == 1 {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

/// Revoke → served list, module level, 1,000,000 listed: rules covering all of them (a fresh
/// set of lists per sample) and rules covering one.
async fn revoke_to_list(samples_1m: usize, samples_1: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ledger: Arc<dyn Ledger> =
        Arc::new(RedbLedger::open(&dir.path().join("l.redb"), RedbOptions::default()).unwrap());
    let jwt = minter();
    let mut big = Vec::new();
    for sample in 0..samples_1m {
        let lists = lists(&ledger, &jwt);
        let stop = CancellationToken::new();
        let workload = format!("spiffe://bench/w{sample}");
        let (name, idx) = fill(&lists, LISTED, &workload);
        tessera_server::status_list::start(Arc::clone(&lists), stop.clone())
            .await
            .unwrap();
        assert_eq!(served_bit(&lists, &name, idx), 0);
        ledger
            .add_rule(rule(format!("r{sample}"), Selector::Workload, &workload))
            .await
            .unwrap();
        big.push(until_served(&lists, &name, idx, Instant::now()).await);
        stop.cancel();
    }
    report(
        "revoke -> served list, 1,000,000 covered (of 1,000,000 listed)",
        big,
    );

    let lists = lists(&ledger, &jwt);
    let stop = CancellationToken::new();
    fill(&lists, LISTED, "spiffe://bench/many");
    tessera_server::status_list::start(Arc::clone(&lists), stop.clone())
        .await
        .unwrap();
    let mut one = Vec::new();
    for sample in 0..samples_1 {
        let workload = format!("spiffe://bench/one{sample}");
        let (name, idx) = fill(&lists, 1, &workload);
        ledger
            .add_rule(rule(format!("one{sample}"), Selector::Workload, &workload))
            .await
            .unwrap();
        one.push(until_served(&lists, &name, idx, Instant::now()).await);
    }
    stop.cancel();
    report(
        "revoke -> served list, 1 covered (of 1,000,000 listed)",
        one,
    );
}

/// The size of a full list (1,048,576 entries) with `percent` of them revoked at random
/// indices, as served; and how long rendering it took.
fn sizes() {
    let dir = tempfile::tempdir().unwrap();
    let ledger: Arc<dyn Ledger> =
        Arc::new(RedbLedger::open(&dir.path().join("s.redb"), RedbOptions::default()).unwrap());
    let jwt = minter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for per_mille in [0u32, 1, 10, 100] {
        let lists = lists(&ledger, &jwt);
        let now = SystemClock.unix_seconds();
        let mut name = String::new();
        for i in 0..LISTED {
            let at = lists.allocate(now).unwrap();
            name = at.list.to_string();
            // Every 1000/per_mille-th credential is revoked; its index is pseudo-random.
            let revoked = per_mille > 0 && (i as u32).is_multiple_of(1000 / per_mille);
            let workload = if revoked {
                "spiffe://bench/revoked"
            } else {
                "spiffe://bench/kept"
            };
            lists.note_issued(&record(i, workload, name.clone(), at.idx, now));
        }
        rt.block_on(lists.load_rules()).unwrap();
        rt.block_on(lists.rebuild()).unwrap();
        let rule = tessera_core::domain::RevocationRule {
            rule: rule("size".into(), Selector::Workload, "spiffe://bench/revoked"),
            sequence: 1,
        };
        let started = Instant::now();
        let changed = rt.block_on(lists.apply(&[rule])).unwrap();
        let pass = started.elapsed();
        let started = Instant::now();
        let Served::List(body) = lists.serve(&name).unwrap() else {
            panic!("not served")
        };
        let render = started.elapsed();
        println!(
            "list of 1,000,000 credentials ({} revoked, {:.1} %): {} bytes on the wire (JWT), \
             rule pass {:.1} ms, rendered in {:.1} ms",
            changed,
            f64::from(per_mille) / 10.0,
            body.len(),
            pass.as_secs_f64() * 1e3,
            render.as_secs_f64() * 1e3
        );
    }
}

fn mint_params<'a>(
    workload: &'a SpiffeId,
    now: i64,
    status: Option<StatusClaim<'a>>,
) -> MintJwtParams<'a> {
    MintJwtParams {
        workload,
        destination: "https://ledger.example.org",
        purpose: "ledger:write",
        ttl: Duration::from_secs(300),
        issued_ms: now * 1000,
        cnf_x5t_s256: None,
        status,
    }
}

/// Mints `n` JWTs without a status claim, then `n` with one (allocate + sign + list); returns
/// the ns per mint of each, best of `rounds`.
fn mint_cost(n: usize, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ledger: Arc<dyn Ledger> =
        Arc::new(RedbLedger::open(&dir.path().join("m.redb"), RedbOptions::default()).unwrap());
    let jwt = minter();
    let workload: SpiffeId = "spiffe://example.org/ns/payments/sa/api".parse().unwrap();
    let (mut without, mut with) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let lists = lists(&ledger, &jwt);
        let now = SystemClock.unix_seconds();
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(
                jwt.signer()
                    .mint(mint_params(&workload, now, None))
                    .unwrap(),
            );
        }
        without = without.min(started.elapsed().as_nanos() as f64 / n as f64);
        let started = Instant::now();
        for i in 0..n {
            let at = lists.allocate(now).unwrap();
            let minted = jwt
                .signer()
                .mint(mint_params(
                    &workload,
                    now,
                    Some(StatusClaim {
                        idx: at.idx,
                        uri: &at.uri,
                    }),
                ))
                .unwrap();
            lists.note_issued(&record(
                i,
                workload.as_str(),
                at.list.to_string(),
                at.idx,
                now,
            ));
            std::hint::black_box(minted);
        }
        with = with.min(started.elapsed().as_nanos() as f64 / n as f64);
    }
    println!(
        "mint JWT without status claim: {:.1} µs; with (allocate + sign + list): {:.1} µs; +{:.1} µs ({:+.1} %)",
        without / 1e3,
        with / 1e3,
        (with - without) / 1e3,
        (with - without) / without * 100.0
    );
}

/// Revoke → HTTPS fetch of the list with the bit set, 1 credential covered, through the real
/// server (gRPC mint and Revoke, HTTPS GET with a new connection per poll).
async fn real_server(samples: usize) {
    use tessera_proto::RevokeRequest;
    use tessera_proto::revoke_request::Selector as RevokeSelector;
    use tessera_testkit::harness::{DEST, Env, PURPOSE, https_request, mint};
    let mut env = Env::start().await;
    let mut client = env.workload_client().await;
    let mut admin = env.admin_client().await;
    let issuer = env.fx.config().server.issuer;
    let mut took = Vec::new();
    for _ in 0..samples {
        let minted = mint(&mut client, DEST, PURPOSE, 300, None).await.unwrap();
        let payload = minted.token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let entry = &claims["status"]["status_list"];
        let path = entry["uri"]
            .as_str()
            .unwrap()
            .strip_prefix(&issuer)
            .unwrap()
            .to_owned();
        let idx = entry["idx"].as_u64().unwrap();
        admin
            .revoke(RevokeRequest {
                selector: Some(RevokeSelector::CredentialId(minted.credential_id)),
                reason: "bench".into(),
            })
            .await
            .unwrap();
        let replied = Instant::now();
        loop {
            let reply = https_request(&env, "GET", &path, None).await;
            if reply.status == 200 {
                let jwt = reply.text();
                let claims: serde_json::Value = serde_json::from_slice(
                    &URL_SAFE_NO_PAD
                        .decode(jwt.split('.').nth(1).unwrap())
                        .unwrap(),
                )
                .unwrap();
                let list: EncodedList =
                    serde_json::from_value(claims["status_list"].clone()).unwrap();
                if list.decompress().unwrap().status(idx).unwrap() == 1 {
                    break;
                }
            }
        }
        took.push(replied.elapsed());
    }
    report(
        "real server: Revoke reply -> HTTPS GET of the list with the bit set, 1 covered",
        took,
    );
    env.shutdown().await;
}

/// Records `count` credentials with status list entries (one workload, half of them revoked by a
/// rule) in a redb ledger, then measures how long a new process takes to load the rules and
/// rebuild its lists from the records.
async fn rebuild(count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let options = RedbOptions {
        max_batch: 8192,
        durable: false,
        ..RedbOptions::default()
    };
    let ledger: Arc<dyn Ledger> =
        Arc::new(RedbLedger::open(&dir.path().join("r.redb"), options).unwrap());
    let jwt = minter();
    let first = lists(&ledger, &jwt);
    let now = SystemClock.unix_seconds();
    let seeded = Instant::now();
    let chunk = 20_000;
    let mut name = String::new();
    for base in (0..count).step_by(chunk) {
        let tasks: Vec<_> = (base..(base + chunk).min(count))
            .map(|i| {
                let at = first.allocate(now).unwrap();
                name = at.list.to_string();
                let workload = if i % 2 == 0 {
                    "spiffe://bench/even"
                } else {
                    "spiffe://bench/odd"
                };
                let r = record(i, workload, at.list.to_string(), at.idx, now);
                let ledger = Arc::clone(&ledger);
                tokio::spawn(async move {
                    ledger
                        .record(tessera_ledger::RecordParams {
                            credential: r,
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
    ledger
        .add_rule(rule(
            "even".into(),
            Selector::Workload,
            "spiffe://bench/even",
        ))
        .await
        .unwrap();
    let seeded = seeded.elapsed();
    let restarted = lists(&ledger, &jwt);
    let started = Instant::now();
    restarted.load_rules().await.unwrap();
    restarted.rebuild().await.unwrap();
    let took = started.elapsed();
    let Served::List(body) = restarted.serve(&name).unwrap() else {
        panic!("not served")
    };
    println!(
        "restart: lists rebuilt from {count} records with entries (half revoked) in {:.2} s \
         (seeding took {:.1} s); the list is then {} bytes",
        took.as_secs_f64(),
        seeded.as_secs_f64(),
        body.len()
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let samples_1m = args.first().copied().unwrap_or(20);
    let samples_1 = args.get(1).copied().unwrap_or(200);
    mint_cost(100_000, 5);
    sizes();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(revoke_to_list(samples_1m, samples_1));
    rt.block_on(real_server(samples_1.min(100)));
    rt.block_on(rebuild(LISTED));
}
