//! The JWT key ring on an injected clock: a key signs only after it was published for
//! `publish_before`, tokens of the old key verify throughout a rotation, and a key leaves the
//! JWKS only once everything it signed has expired (plus the verification leeway).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tessera_core::clock::{Clock, ManualClock, SharedClock};
use tessera_core::keys::SecretKey;
use tessera_core::mint::{JwtMinter, MintJwtParams, MintedJwt};
use tessera_core::spiffe_id::SpiffeId;

use super::{
    JwtKeyConfig, JwtKeys, SigningConfig, SigningError, VERIFY_LEEWAY_SECS, max_grant_ttl_secs,
};

const ISSUER: &str = "https://tessera.example.org";
const START: i64 = 1_800_000_000;
const PUBLISH_BEFORE: i64 = 600;

fn key(alg: &'static rcgen::SignatureAlgorithm) -> SecretKey {
    SecretKey::from_pkcs8_der(rcgen::KeyPair::generate_for(alg).unwrap().serialize_der())
}

fn p256() -> SecretKey {
    key(&rcgen::PKCS_ECDSA_P256_SHA256)
}

fn kid_of(key: &SecretKey) -> String {
    JwtMinter::new(ISSUER, key).unwrap().kid().to_owned()
}

/// A `[signing]` listing `keys` (key, active) with the default `publish_before`.
fn config(keys: &[(&SecretKey, bool)]) -> SigningConfig {
    SigningConfig {
        jwt_keys: keys
            .iter()
            .enumerate()
            .map(|(i, (key, active))| JwtKeyConfig {
                source: format!("signing.jwt_keys[{i}]"),
                key: (*key).clone(),
                active: *active,
            })
            .collect(),
        publish_before: Duration::from_secs(PUBLISH_BEFORE as u64),
        mint_cas: Vec::new(),
    }
}

struct Ring {
    keys: JwtKeys,
    clock: Arc<ManualClock>,
}

impl Ring {
    fn start(keys: &[(&SecretKey, bool)]) -> Ring {
        let clock = Arc::new(ManualClock::at(START));
        let shared: SharedClock = Arc::clone(&clock) as SharedClock;
        Ring {
            keys: JwtKeys::new(ISSUER, &config(keys), shared).unwrap(),
            clock,
        }
    }

    fn reload(&self, keys: &[(&SecretKey, bool)]) {
        self.keys
            .reload(&config(keys), self.clock.unix_millis())
            .unwrap();
    }

    /// Mints a token living `ttl` seconds from now.
    fn mint(&self, ttl: u64) -> MintedJwt {
        let workload: SpiffeId = "spiffe://example.org/ns/a/sa/b".parse().unwrap();
        self.keys
            .signer()
            .mint(MintJwtParams {
                workload: &workload,
                destination: "https://db.example.org",
                purpose: "read",
                ttl: Duration::from_secs(ttl),
                issued_ms: self.clock.unix_millis(),
                cnf_x5t_s256: None,
                status: None,
            })
            .unwrap()
    }

    /// Returns the kids of the published JWKS, in order.
    fn published(&self) -> Vec<String> {
        let jwks: Value = serde_json::from_slice(&self.keys.published().jwks).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    fn verifies(&self, token: &str) -> bool {
        self.keys.verify(token, self.clock.unix_seconds()).is_some()
    }

    fn set(&self, at: i64) {
        self.clock.set(at);
    }
}

/// The `kid` in a token's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[test]
fn a_single_key_at_start_is_published_and_signs_at_once() {
    let a = p256();
    let ring = Ring::start(&[(&a, true)]);
    assert_eq!(ring.published(), [kid_of(&a)]);
    let token = ring.mint(300).token;
    assert_eq!(kid(&token), kid_of(&a));
    assert!(ring.verifies(&token));
}

#[test]
fn at_start_the_active_key_signs_at_once_and_every_listed_key_is_published() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, false), (&b, true)]);
    assert_eq!(kid(&ring.mint(300).token), kid_of(&b), "no previous signer");
    assert_eq!(ring.published(), [kid_of(&b), kid_of(&a)], "signer first");
}

#[test]
fn a_new_active_key_is_in_the_jwks_at_once_and_signs_only_after_publish_before() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&a, false), (&b, true)]);
    assert_eq!(ring.published(), [kid_of(&a), kid_of(&b)]);
    assert_eq!(kid(&ring.mint(300).token), kid_of(&a));
    ring.set(START + PUBLISH_BEFORE - 1);
    assert_eq!(
        kid(&ring.mint(300).token),
        kid_of(&a),
        "not published long enough"
    );
    ring.set(START + PUBLISH_BEFORE);
    let token = ring.mint(300).token;
    assert_eq!(kid(&token), kid_of(&b), "published for publish_before");
    assert!(ring.verifies(&token));
    assert_eq!(ring.keys.signer().kid(), kid_of(&b));
}

#[test]
fn a_token_of_the_old_key_verifies_throughout_the_rotation() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    let old = ring.mint(900);
    ring.reload(&[(&b, true)]);
    for at in (START..old.expires_at).step_by(60) {
        ring.set(at);
        assert!(ring.verifies(&old.token), "at +{}s", at - START);
    }
    ring.set(old.expires_at);
    assert!(!ring.verifies(&old.token), "expired");
}

#[test]
fn a_removed_key_keeps_signing_until_its_successor_was_published_long_enough() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&b, true)]);
    ring.set(START + PUBLISH_BEFORE - 1);
    let last = ring.mint(300);
    assert_eq!(kid(&last.token), kid_of(&a));
    assert!(ring.published().contains(&kid_of(&a)));
    ring.set(START + PUBLISH_BEFORE);
    assert_eq!(kid(&ring.mint(300).token), kid_of(&b));
    assert!(
        ring.verifies(&last.token),
        "still published after it stopped signing"
    );
}

#[test]
fn a_removed_key_leaves_the_jwks_only_after_its_last_token_expired() {
    let (a, b, c) = (p256(), p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    // B is seen at a reload, so its last exp is what it really signed.
    ring.reload(&[(&b, true)]);
    ring.set(START + PUBLISH_BEFORE);
    ring.reload(&[(&c, true)]);
    let t = START + PUBLISH_BEFORE;
    let short = ring.mint(60);
    ring.set(t + 100);
    let last = ring.mint(900);
    assert_eq!(kid(&last.token), kid_of(&b));
    let leaves = last.expires_at + VERIFY_LEEWAY_SECS;
    for at in [
        short.expires_at + VERIFY_LEEWAY_SECS + 1,
        last.expires_at,
        leaves,
    ] {
        ring.set(at);
        assert!(ring.published().contains(&kid_of(&b)), "at +{}s", at - t);
    }
    ring.set(leaves + 1);
    assert!(!ring.published().contains(&kid_of(&b)));
    assert_eq!(ring.keys.signer().kid(), kid_of(&c));
}

#[test]
fn a_key_present_at_start_is_assumed_to_have_signed_for_the_longest_grant_ttl() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&b, true)]);
    let leaves = START + max_grant_ttl_secs() + VERIFY_LEEWAY_SECS;
    ring.set(leaves);
    assert!(ring.published().contains(&kid_of(&a)));
    ring.set(leaves + 1);
    assert_eq!(ring.published(), [kid_of(&b)]);
}

#[test]
fn a_key_that_became_ready_unobserved_has_taken_over_by_the_next_reload() {
    let (a, b, c) = (p256(), p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&b, true)]);
    // Nothing reads the ring until the next reload, made after B was ready.
    ring.set(START + PUBLISH_BEFORE);
    ring.reload(&[(&c, true)]);
    assert_eq!(
        kid(&ring.mint(300).token),
        kid_of(&b),
        "B, not A, until C is ready"
    );
}

#[test]
fn a_key_still_listed_stays_published_after_it_stopped_signing() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&a, false), (&b, true)]);
    ring.set(START + 10 * max_grant_ttl_secs());
    assert_eq!(kid(&ring.mint(300).token), kid_of(&b));
    assert_eq!(ring.published(), [kid_of(&b), kid_of(&a)]);
}

#[test]
fn a_key_that_never_signed_leaves_at_once_when_removed() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&a, false), (&b, true)]);
    // Rolled back before B signed anything: A signs on, B has nothing to verify.
    ring.set(START + 60);
    ring.reload(&[(&a, true)]);
    assert_eq!(ring.published(), [kid_of(&a)]);
    assert_eq!(kid(&ring.mint(300).token), kid_of(&a));
}

#[test]
fn a_key_listed_again_keeps_its_publication_time() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&a, true), (&b, false)]);
    ring.set(START + PUBLISH_BEFORE);
    // B has been published for publish_before already: it signs at once.
    ring.reload(&[(&a, false), (&b, true)]);
    assert_eq!(kid(&ring.mint(300).token), kid_of(&b));
}

#[test]
fn a_key_held_by_an_operation_stays_published_until_it_is_released() {
    let (a, b) = (p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&b, true)]);
    ring.set(START + PUBLISH_BEFORE - 1);
    let held = ring.keys.signer();
    assert_eq!(held.kid(), kid_of(&a));
    ring.set(START + max_grant_ttl_secs() + VERIFY_LEEWAY_SECS + 1);
    assert!(
        ring.published().contains(&kid_of(&a)),
        "an in-flight mint holds A"
    );
    drop(held);
    assert_eq!(ring.published(), [kid_of(&b)]);
}

#[test]
fn documents_signed_with_a_key_keep_it_published_until_they_are_valid_no_more() {
    let (a, b, c) = (p256(), p256(), p256());
    let ring = Ring::start(&[(&a, true)]);
    ring.reload(&[(&b, true)]);
    ring.set(START + PUBLISH_BEFORE);
    ring.reload(&[(&c, true)]);
    let until = START + 5000;
    let signer = ring.keys.signer();
    signer
        .sign_claims("statuslist+jwt", &serde_json::json!({"exp": until}), until)
        .unwrap();
    drop(signer);
    ring.set(until + VERIFY_LEEWAY_SECS);
    assert!(ring.published().contains(&kid_of(&b)));
    ring.set(until + VERIFY_LEEWAY_SECS + 1);
    assert!(!ring.published().contains(&kid_of(&b)));
}

#[test]
fn a_reload_with_an_unusable_key_changes_nothing() {
    let a = p256();
    let ring = Ring::start(&[(&a, true)]);
    let bad = SecretKey::from_pkcs8_der(b"not a key".to_vec());
    let err = ring
        .keys
        .reload(&config(&[(&a, false), (&bad, true)]), START * 1000)
        .unwrap_err();
    assert!(
        matches!(&err, SigningError::JwtKey { key, .. } if key == "signing.jwt_keys[1]"),
        "{err}"
    );
    assert_eq!(ring.published(), [kid_of(&a)]);
    assert_eq!(kid(&ring.mint(300).token), kid_of(&a));
}

#[test]
fn the_same_key_listed_twice_is_refused_naming_both_entries() {
    let a = p256();
    let clock: SharedClock = Arc::new(ManualClock::at(START));
    let err = JwtKeys::new(ISSUER, &config(&[(&a, true), (&a, false)]), clock)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("signing.jwt_keys[1]") && err.contains("signing.jwt_keys[0]"),
        "{err}"
    );
}

#[test]
fn discovery_lists_the_algorithm_of_every_published_key() {
    let (a, b) = (p256(), key(&rcgen::PKCS_ED25519));
    let ring = Ring::start(&[(&a, true)]);
    assert_eq!(ring.keys.published().algs, ["ES256"]);
    ring.reload(&[(&a, true), (&b, false)]);
    assert_eq!(ring.keys.published().algs, ["ES256", "EdDSA"]);
}
