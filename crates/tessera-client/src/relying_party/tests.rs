//! The relying party against tokens signed here and a hand-made revocation stream.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use tessera_core::clock::{Clock, ManualClock};
use tessera_core::mint::{JwtMinter, MintJwtParams};
use tessera_core::spiffe_id::SpiffeId;

use super::*;

const ISSUER: &str = "https://broker.example.org";
const DEST: &str = "https://ledger.example.org";
const PURPOSE: &str = "ledger:write";
const WORKLOAD: &str = "spiffe://example.org/ns/payments/sa/api";
const T0: i64 = 1_700_000_000;
const CERT_A: &[u8] = b"the DER of certificate A";
const CERT_B: &[u8] = b"the DER of certificate B";

struct Harness {
    minter: JwtMinter,
    clock: Arc<ManualClock>,
    rp: Arc<RelyingParty>,
}

impl Harness {
    fn new() -> Harness {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let key = tessera_core::keys::SecretKey::from_pkcs8_der(pkcs8.as_ref().to_vec());
        let minter = JwtMinter::new(ISSUER, &key).unwrap();
        let jwks = serde_json::from_value(minter.jwks().clone()).unwrap();
        let clock = Arc::new(ManualClock::at(T0));
        let rp = RelyingParty::new(ISSUER, DEST, &jwks, clock.clone()).unwrap();
        Harness {
            minter,
            clock,
            rp: Arc::new(rp),
        }
    }

    /// Mints a token now for `purpose`, bound to `certificate` when given; returns it and its id.
    fn mint(&self, purpose: &str, certificate: Option<&[u8]>) -> (String, String) {
        let workload: SpiffeId = WORKLOAD.parse().unwrap();
        let thumbprint = certificate.map(tessera_core::attest::x5t_s256);
        let minted = self
            .minter
            .mint(MintJwtParams {
                workload: &workload,
                destination: DEST,
                purpose,
                ttl: Duration::from_secs(3600),
                issued_ms: self.clock.unix_millis(),
                cnf_x5t_s256: thumbprint.as_deref(),
                status: None,
            })
            .unwrap();
        (minted.token, minted.jti)
    }

    /// Follows a hand-made stream; returns its sender and the follower's task.
    fn follow(&self) -> (Sender, tokio::task::JoinHandle<StreamEnd>) {
        let (tx, rx) = mpsc::unbounded();
        let rp = Arc::clone(&self.rp);
        (tx, tokio::spawn(async move { rp.follow_stream(rx).await }))
    }

    /// Follows a stream that has replayed nothing and caught up; returns its sender.
    async fn following(&self) -> Sender {
        let (tx, _task) = self.follow();
        tx.unbounded_send(Ok(marker(0))).unwrap();
        wait_until(|| self.rp.is_following()).await;
        tx
    }
}

type Sender = mpsc::UnboundedSender<Result<RevocationEvent, tonic::Status>>;

fn rule(sequence: u64, selector: &str, value: &str, effective_at: i64) -> RevocationEvent {
    RevocationEvent {
        sequence,
        revocation_id: format!("r{sequence}"),
        selector: selector.into(),
        value: value.into(),
        effective_at,
        // As an older broker sends it: seconds only, covering the whole second.
        effective_at_ms: 0,
        reason: "test".into(),
        caught_up: false,
    }
}

/// Returns a rule with a millisecond cut-off, as this broker sends it.
fn rule_ms(sequence: u64, selector: &str, value: &str, cutoff_ms: i64) -> RevocationEvent {
    RevocationEvent {
        effective_at_ms: cutoff_ms,
        ..rule(sequence, selector, value, cutoff_ms.div_euclid(1000))
    }
}

fn marker(sequence: u64) -> RevocationEvent {
    RevocationEvent {
        sequence,
        caught_up: true,
        ..RevocationEvent::default()
    }
}

/// Waits (yielding to the follower task) until `done` holds; the test fails if it never does.
async fn wait_until(done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
}

fn revoked(selector: &'static str) -> Verdict {
    Verdict::Refuse(Refusal::Revoked(selector))
}

#[tokio::test]
async fn a_token_revoked_while_disconnected_is_not_accepted_before_the_replay_completes() {
    let h = Harness::new();
    let (token, jti) = h.mint(PURPOSE, None);
    let (tx, task) = h.follow();
    // The stream is open and replaying: an unrelated rule has been applied, the one revoking
    // the token has not arrived yet.
    tx.unbounded_send(Ok(rule(1, "credential_id", "another", T0)))
        .unwrap();
    wait_until(|| h.rp.last_sequence() == 1).await;
    assert!(
        matches!(
            h.rp.check(&token, Presentation::bearer(PURPOSE)),
            Verdict::Introspect(_)
        ),
        "a rule may still be missing: ask the broker"
    );
    tx.unbounded_send(Ok(rule(2, "credential_id", &jti, T0)))
        .unwrap();
    tx.unbounded_send(Ok(marker(2))).unwrap();
    wait_until(|| h.rp.is_following()).await;
    assert_eq!(
        h.rp.check(&token, Presentation::bearer(PURPOSE)),
        revoked("credential_id")
    );
    let (fresh, _) = h.mint(PURPOSE, None);
    assert!(matches!(
        h.rp.check(&fresh, Presentation::bearer(PURPOSE)),
        Verdict::Accept(_)
    ));
    drop(tx);
    assert_eq!(task.await.unwrap(), StreamEnd::Closed);
    assert!(!h.rp.is_following());
    assert!(matches!(
        h.rp.check(&fresh, Presentation::bearer(PURPOSE)),
        Verdict::Introspect(_)
    ));
}

#[tokio::test]
async fn a_millisecond_cut_off_spares_a_token_minted_one_millisecond_later() {
    let h = Harness::new();
    let tx = h.following().await;
    h.clock.advance_ms(500);
    let (before, _) = h.mint(PURPOSE, None);
    let cutoff = h.clock.unix_millis();
    h.clock.advance_ms(1);
    let (after, _) = h.mint(PURPOSE, None);
    tx.unbounded_send(Ok(rule_ms(1, "workload", WORKLOAD, cutoff)))
        .unwrap();
    wait_until(|| h.rp.last_sequence() == 1).await;
    assert_eq!(
        h.rp.check(&before, Presentation::bearer(PURPOSE)),
        revoked("workload")
    );
    assert!(
        matches!(
            h.rp.check(&after, Presentation::bearer(PURPOSE)),
            Verdict::Accept(_)
        ),
        "issued in the same second, one millisecond after the cut-off"
    );
}

#[tokio::test]
async fn the_caught_up_marker_is_not_a_rule_and_advances_the_resume_sequence() {
    let h = Harness::new();
    let (tx, task) = h.follow();
    tx.unbounded_send(Ok(rule(3, "workload", "spiffe://example.org/x", T0)))
        .unwrap();
    tx.unbounded_send(Ok(marker(9))).unwrap();
    wait_until(|| h.rp.is_following()).await;
    assert_eq!(h.rp.rule_count(), 1);
    assert_eq!(h.rp.last_sequence(), 9);
    tx.unbounded_send(Err(tonic::Status::aborted("fell behind")))
        .unwrap();
    assert!(matches!(
        task.await.unwrap(),
        StreamEnd::Failed {
            code: tonic::Code::Aborted,
            ..
        }
    ));
    assert!(!h.rp.is_following());
}

#[tokio::test]
async fn a_certificate_bound_token_is_accepted_only_with_its_certificate() {
    let h = Harness::new();
    let _tx = h.following().await;
    let (token, _) = h.mint(PURPOSE, Some(CERT_A));
    assert_eq!(
        h.rp.check(&token, Presentation::bearer(PURPOSE)),
        Verdict::Refuse(Refusal::CertificateMissing)
    );
    assert_eq!(
        h.rp.check(&token, Presentation::mtls(CERT_B, PURPOSE)),
        Verdict::Refuse(Refusal::CertificateMismatch)
    );
    assert!(matches!(
        h.rp.check(&token, Presentation::mtls(CERT_A, PURPOSE)),
        Verdict::Accept(_)
    ));
}

#[tokio::test]
async fn a_bearer_token_is_accepted_with_or_without_a_client_certificate() {
    let h = Harness::new();
    let _tx = h.following().await;
    let (token, _) = h.mint(PURPOSE, None);
    for presented in [
        Presentation::bearer(PURPOSE),
        Presentation::mtls(CERT_B, PURPOSE),
    ] {
        assert!(matches!(h.rp.check(&token, presented), Verdict::Accept(_)));
    }
}

#[tokio::test]
async fn a_token_is_refused_at_an_endpoint_serving_another_purpose() {
    let h = Harness::new();
    let _tx = h.following().await;
    let (token, _) = h.mint("ledger:read", None);
    assert_eq!(
        h.rp.check(&token, Presentation::bearer(PURPOSE)),
        Verdict::Refuse(Refusal::WrongScope)
    );
    assert!(matches!(
        h.rp.check(&token, Presentation::bearer("ledger:read")),
        Verdict::Accept(_)
    ));
}

#[tokio::test]
async fn rules_are_dropped_once_nothing_they_cover_can_be_valid() {
    let h = Harness::new();
    for i in 0..1000 {
        h.rp.apply(&rule(i + 1, "credential_id", &format!("c{i}"), T0));
    }
    h.rp.apply(&rule(1001, "owner", "team-payments", T0));
    assert_eq!(h.rp.rule_count(), 1001);
    // Past the longest token lifetime and the leeway: nothing they cover is valid.
    h.clock.advance(3600 + 61);
    h.rp.apply(&rule(
        1002,
        "purpose",
        "ledger:admin",
        h.clock.unix_seconds(),
    ));
    assert_eq!(h.rp.rule_count(), 1, "only the new rule is left");
    h.clock.advance(3600 + 61);
    assert_eq!(h.rp.prune(), 1);
    assert_eq!(h.rp.rule_count(), 0);
}

#[tokio::test]
async fn a_rule_is_kept_while_a_token_it_covers_can_still_be_accepted() {
    let h = Harness::new();
    let _tx = h.following().await;
    let (token, _) = h.mint(PURPOSE, None);
    h.rp.apply(&rule(1, "workload", WORKLOAD, T0));
    // The token expires at T0 + 3600 and is accepted for the leeway after that.
    h.clock.advance(3600 + 59);
    assert_eq!(h.rp.prune(), 0);
    assert_eq!(
        h.rp.check(&token, Presentation::bearer(PURPOSE)),
        revoked("workload")
    );
    h.clock.advance(2);
    assert_eq!(
        h.rp.check(&token, Presentation::bearer(PURPOSE)),
        Verdict::Refuse(Refusal::Expired)
    );
}

#[tokio::test]
async fn a_token_an_owner_rule_may_cover_goes_to_introspection_until_the_rule_is_dropped() {
    let h = Harness::new();
    let _tx = h.following().await;
    let (covered, _) = h.mint(PURPOSE, None);
    h.rp.apply(&rule(1, "owner", "team-payments", T0));
    assert!(matches!(
        h.rp.check(&covered, Presentation::bearer(PURPOSE)),
        Verdict::Introspect(_)
    ));
    h.clock.advance(1);
    let (later, _) = h.mint(PURPOSE, None);
    assert!(matches!(
        h.rp.check(&later, Presentation::bearer(PURPOSE)),
        Verdict::Accept(_)
    ));
    h.clock.advance(3600 + 60);
    assert_eq!(h.rp.prune(), 1);
    assert_eq!(h.rp.rule_count(), 0);
}

#[tokio::test]
async fn tokens_of_another_destination_or_type_are_refused() {
    let h = Harness::new();
    let _tx = h.following().await;
    assert!(matches!(
        h.rp.check("garbage", Presentation::bearer(PURPOSE)),
        Verdict::Refuse(Refusal::NotAJwt(_))
    ));
    let jwks = serde_json::from_value(h.minter.jwks().clone()).unwrap();
    let other =
        RelyingParty::new(ISSUER, "https://other.example.org", &jwks, h.clock.clone()).unwrap();
    let (token, _) = h.mint(PURPOSE, None);
    assert!(matches!(
        other.check(&token, Presentation::bearer(PURPOSE)),
        Verdict::Refuse(Refusal::Invalid(_))
    ));
}
