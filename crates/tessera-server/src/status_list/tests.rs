#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_core::clock::{Clock, ManualClock};
use tessera_core::domain::{EvidenceKind, NewRule, Status, StatusListRef};
use tessera_core::keys::SecretKey;
use tessera_core::mint::JwtMinter;
use tessera_core::status_list::{DecodedList, INVALID, StatusListClaims};
use tessera_ledger::{RecordParams, RedbLedger, RedbOptions};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::signing::JwtKeys;

const ISSUER: &str = "https://tessera.example.org";
const NOW: i64 = 1_767_225_600; // a window start for windows of an hour

struct Setup {
    lists: StatusLists,
    ledger: Arc<dyn Ledger>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn minter() -> JwtMinter {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let key = SecretKey::from_pkcs8_der(pkcs8.as_ref().to_vec());
    JwtMinter::new(ISSUER, &key).unwrap()
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ledger: Arc<dyn Ledger> = Arc::new(
        RedbLedger::open(&dir.path().join("ledger.redb"), RedbOptions::default()).unwrap(),
    );
    let clock = Arc::new(ManualClock::at(NOW));
    Setup {
        lists: lists_on(&ledger, &clock, minter()),
        ledger,
        clock,
        _dir: dir,
    }
}

fn lists_on(ledger: &Arc<dyn Ledger>, clock: &Arc<ManualClock>, jwt: JwtMinter) -> StatusLists {
    let shared = Arc::clone(clock) as SharedClock;
    StatusLists::new(StatusListParts {
        issuer: ISSUER.into(),
        jwt: Arc::new(JwtKeys::single(jwt, shared)),
        ledger: Arc::clone(ledger),
        clock: Arc::clone(clock) as SharedClock,
        config: StatusListConfig::default(),
    })
}

/// A record listed at `at`, of workload `w`, issued at `issued_at`, living 300 s.
fn record(id: &str, at: &Allocation, workload: &str, issued_at: i64) -> CredentialRecord {
    CredentialRecord {
        credential_id: id.into(),
        kind: tessera_core::domain::CredentialKind::Jwt,
        workload: workload.into(),
        owner: "team".into(),
        destination: "https://db.example.org".into(),
        purpose: "read".into(),
        grant: "g".into(),
        evidence_kind: EvidenceKind::X509Svid,
        evidence_hash: String::new(),
        issued_at,
        expires_at: issued_at + 300,
        status: Status::Live,
        ci: None,
        status_list: Some(StatusListRef {
            list: at.list.to_string(),
            idx: at.idx,
        }),
    }
}

fn rule(selector: Selector, value: &str, effective_at: i64) -> RevocationRule {
    RevocationRule {
        rule: NewRule {
            revocation_id: format!("r-{value}"),
            selector,
            value: value.into(),
            effective_at,
            effective_at_ms: None,
            reason: "test".into(),
            revoked_by: "admin".into(),
            scope: None,
        },
        sequence: 1,
    }
}

impl Setup {
    /// Allocates, lists and records one credential; returns its record.
    async fn issue(&self, id: &str, workload: &str) -> CredentialRecord {
        let now = self.clock.unix_seconds();
        let at = self.lists.allocate(now).unwrap();
        let r = record(id, &at, workload, now);
        self.lists.note_issued(&r);
        self.ledger
            .record(RecordParams {
                credential: r.clone(),
                replay_guard: None,
            })
            .await
            .unwrap();
        r
    }
}

/// Returns the claims and the decoded list of list `name` as `lists` serves it now.
fn fetch(lists: &StatusLists, name: &str) -> (StatusListClaims, DecodedList) {
    let Served::List(jwt) = lists.serve(name).unwrap() else {
        panic!("{name} not served");
    };
    let payload = std::str::from_utf8(&jwt)
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: StatusListClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let list = claims.status_list.decompress().unwrap();
    (claims, list)
}

/// Returns the indices whose status is INVALID.
fn invalid(list: &DecodedList) -> BTreeSet<u64> {
    (0..list.len())
        .filter(|i| list.status(*i).unwrap() == INVALID)
        .collect()
}

fn entry(r: &CredentialRecord) -> (String, u64) {
    let s = r.status_list.as_ref().unwrap();
    (s.list.clone(), u64::from(s.idx))
}

#[test]
fn allocation_hands_out_distinct_indices_and_rolls_over_with_the_window() {
    let s = setup();
    let first: Vec<Allocation> = (0..1000).map(|_| s.lists.allocate(NOW).unwrap()).collect();
    let names: BTreeSet<String> = first.iter().map(|a| a.list.to_string()).collect();
    assert_eq!(names.len(), 1);
    let idx: BTreeSet<u32> = first.iter().map(|a| a.idx).collect();
    assert_eq!(idx.len(), 1000, "no index twice");
    assert!(idx.iter().all(|i| *i < CAPACITY));
    assert_ne!(
        first.iter().map(|a| a.idx).take(3).collect::<Vec<_>>(),
        [0, 1, 2],
        "not in issuance order"
    );
    assert_eq!(first[0].list.window_start(), NOW);
    assert_eq!(
        first[0].uri,
        format!("{ISSUER}/statuslists/{}", first[0].list)
    );
    let later = s.lists.allocate(NOW + 3600 + 5).unwrap();
    assert_eq!(later.list.window_start(), NOW + 3600);
    let other = setup().lists.allocate(NOW).unwrap();
    assert_ne!(
        other.list, first[0].list,
        "another process opens its own list"
    );
}

#[tokio::test]
async fn a_selector_rule_sets_exactly_the_bits_of_what_it_covers() {
    let s = setup();
    let a = s.issue("a", "spiffe://t/a").await;
    s.issue("other workload", "spiffe://t/b").await;
    s.clock.advance(2);
    s.issue("issued after the cut-off", "spiffe://t/a").await;
    let name = entry(&a).0;
    let (claims, list) = fetch(&s.lists, &name);
    assert!(invalid(&list).is_empty());
    assert_eq!(claims.sub, format!("{ISSUER}/statuslists/{name}"));
    assert_eq!(claims.iss.as_deref(), Some(ISSUER));
    assert_eq!((claims.iat, claims.ttl), (NOW + 2, Some(60)));
    assert_eq!(claims.exp, Some(NOW + 2 + 120));
    assert_eq!(list.len(), u64::from(CAPACITY));

    let changed = s
        .lists
        .apply(&[rule(Selector::Workload, "spiffe://t/a", NOW + 1)])
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let (_, list) = fetch(&s.lists, &name);
    assert_eq!(invalid(&list), BTreeSet::from([entry(&a).1]));
}

#[tokio::test]
async fn a_credential_listed_after_a_rule_is_checked_against_it_as_it_is_listed() {
    let s = setup();
    s.lists
        .apply(&[rule(Selector::Owner, "team", NOW)])
        .await
        .unwrap();
    let same_second = s.issue("a", "spiffe://t/a").await;
    s.clock.advance(1);
    let after = s.issue("b", "spiffe://t/a").await;
    let (_, list) = fetch(&s.lists, &entry(&same_second).0);
    assert_eq!(invalid(&list), BTreeSet::from([entry(&same_second).1]));
    assert_eq!(list.status(entry(&after).1).unwrap(), 0);
}

#[tokio::test]
async fn a_credential_id_rule_sets_the_bit_of_that_credential_only() {
    let s = setup();
    let a = s.issue("a", "spiffe://t/a").await;
    let b = s.issue("b", "spiffe://t/a").await;
    s.lists
        .apply(&[rule(Selector::CredentialId, "b", NOW)])
        .await
        .unwrap();
    let (_, list) = fetch(&s.lists, &entry(&a).0);
    assert_eq!(invalid(&list), BTreeSet::from([entry(&b).1]));
}

#[tokio::test]
async fn after_a_restart_lists_are_not_served_until_rebuilt_then_with_their_bits() {
    let s = setup();
    let a = s.issue("a", "spiffe://t/a").await;
    let b = s.issue("b", "spiffe://t/b").await;
    let stored = s
        .ledger
        .add_rule(rule(Selector::Workload, "spiffe://t/b", NOW).rule)
        .await
        .unwrap();
    s.lists.apply(&[stored]).await.unwrap();
    let (name, _) = entry(&a);

    let restarted = lists_on(&s.ledger, &s.clock, minter());
    assert_eq!(restarted.serve(&name).unwrap(), Served::NotReady);
    restarted.load_rules().await.unwrap();
    restarted.rebuild().await.unwrap();
    let (_, list) = fetch(&restarted, &name);
    assert_eq!(invalid(&list), BTreeSet::from([entry(&b).1]));
    assert_eq!(restarted.sizes().1, 2, "each credential listed once");
    let new = restarted.allocate(NOW).unwrap();
    assert_ne!(
        new.list.to_string(),
        name,
        "a restart allocates in a list of its own"
    );
    assert_eq!(
        restarted.serve("1767225600-00000000000000ff").unwrap(),
        Served::NotFound
    );
    assert_eq!(restarted.serve("../x").unwrap(), Served::NotFound);
}

#[tokio::test]
async fn lists_are_dropped_once_every_credential_in_them_expired() {
    let s = setup();
    let old = s.issue("old", "spiffe://t/a").await;
    s.clock.advance(3600);
    let current = s.issue("current", "spiffe://t/a").await;
    s.lists.rebuild().await.unwrap();
    assert_ne!(entry(&old).0, entry(&current).0);
    s.clock.set(old.expires_at + LEEWAY_SECS);
    s.lists.drop_expired();
    assert!(matches!(
        s.lists.serve(&entry(&old).0).unwrap(),
        Served::List(_)
    ));
    s.clock.set(old.expires_at + LEEWAY_SECS + 1);
    s.lists.drop_expired();
    assert_eq!(s.lists.serve(&entry(&old).0).unwrap(), Served::NotFound);
    assert!(
        matches!(s.lists.serve(&entry(&current).0).unwrap(), Served::List(_)),
        "the list being allocated in stays"
    );
}

#[tokio::test]
async fn the_follower_applies_committed_rules_and_lists_other_replicas_credentials() {
    let s = setup();
    let lists = Arc::new(lists_on(&s.ledger, &s.clock, minter()));
    let stopping = CancellationToken::new();
    start(Arc::clone(&lists), stopping.clone()).await.unwrap();
    // Another replica (the setup's lists) issues and records; this one hears of it.
    let elsewhere = s.issue("x", "spiffe://t/x").await;
    s.ledger
        .add_rule(rule(Selector::Workload, "spiffe://t/x", NOW).rule)
        .await
        .unwrap();
    let (name, idx) = entry(&elsewhere);
    let mut flipped = false;
    for _ in 0..200 {
        if let Ok(Served::List(_)) = lists.serve(&name)
            && fetch(&lists, &name).1.status(idx).unwrap() == INVALID
        {
            flipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stopping.cancel();
    assert!(flipped, "the bit of another replica's credential was set");
}
