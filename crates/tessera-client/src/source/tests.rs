//! The renewal loop against a broker stand-in, on paused tokio time read through the injected
//! clock: every time below is exact, nothing waits for real.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::future::BoxFuture;
use tessera_core::clock::Clock;
use tessera_core::domain::id;
use tessera_proto::RevocationEvent;

use super::*;
use crate::mint::{Jwt, MintParams, X509Svid};

/// Unix ms at which every test starts.
const T0: i64 = 1_800_000_000_000;
const WORKLOAD: &str = "spiffe://example.org/w";

/// A clock that reads tokio's (paused) time.
#[derive(Debug)]
struct PausedClock {
    start: tokio::time::Instant,
}

impl Clock for PausedClock {
    fn now(&self) -> Duration {
        Duration::from_millis(T0 as u64) + self.start.elapsed()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    Refuse,
    Hang,
}

/// The broker: mints JWTs of `ttl` seconds while up, records every attempt (ms after T0), and
/// streams the rules a test pushes.
#[derive(Debug)]
struct Fake {
    clock: Arc<PausedClock>,
    ttl: i64,
    mode: Mutex<Mode>,
    attempts: Mutex<Vec<(i64, bool)>>,
    watches: Mutex<Vec<u64>>,
    /// When each revocation stream opened, ms after T0.
    opened: Mutex<Vec<i64>>,
    stream: Mutex<Option<UnboundedSender<Result<RevocationEvent, tonic::Status>>>>,
    sequence: AtomicU64,
    serial: AtomicU64,
}

impl Fake {
    fn new(ttl: i64) -> Arc<Fake> {
        Arc::new(Fake {
            clock: Arc::new(PausedClock {
                start: tokio::time::Instant::now(),
            }),
            ttl,
            mode: Mutex::new(Mode::Up),
            attempts: Mutex::new(Vec::new()),
            watches: Mutex::new(Vec::new()),
            opened: Mutex::new(Vec::new()),
            stream: Mutex::new(None),
            sequence: AtomicU64::new(0),
            serial: AtomicU64::new(0),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Returns the attempts so far: ms after T0, and whether each minted.
    fn attempts(&self) -> Vec<(i64, bool)> {
        self.attempts.lock().unwrap().clone()
    }

    /// Sends a rule on the open revocation stream.
    fn revoke(&self, selector: &str, value: &str, cutoff_ms: i64) {
        let event = RevocationEvent {
            sequence: self.sequence.fetch_add(1, Ordering::SeqCst) + 1,
            selector: selector.into(),
            value: value.into(),
            effective_at: cutoff_ms / 1000,
            effective_at_ms: cutoff_ms,
            ..RevocationEvent::default()
        };
        let stream = self.stream.lock().unwrap();
        stream.as_ref().unwrap().unbounded_send(Ok(event)).unwrap();
    }

    /// Ends the open revocation stream with an error.
    fn break_stream(&self) {
        let stream = self.stream.lock().unwrap().take().unwrap();
        stream
            .unbounded_send(Err(tonic::Status::unavailable("gone")))
            .unwrap();
    }

    fn params(&self, jitter: f64) -> SourceParams {
        SourceParams {
            clock: Arc::clone(&self.clock) as SharedClock,
            jitter: Arc::new(FixedJitter(jitter)),
            ..SourceParams::new("https://d", "p")
        }
    }
}

impl Broker for Fake {
    fn mint_jwt<'a>(&'a self, _p: MintParams<'a>) -> BoxFuture<'a, Result<Jwt, SourceError>> {
        Box::pin(async move {
            let now = self.clock.unix_millis();
            let mode = *self.mode.lock().unwrap();
            self.attempts
                .lock()
                .unwrap()
                .push((now - T0, mode == Mode::Up));
            match mode {
                Mode::Up => {}
                Mode::Down => return Err(tonic::Status::unavailable("down").into()),
                Mode::Refuse => return Err(tonic::Status::permission_denied("no grant").into()),
                Mode::Hang => std::future::pending::<()>().await,
            }
            let serial = self.serial.fetch_add(1, Ordering::SeqCst) as u8;
            let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"{WORKLOAD}"}}"#));
            Ok(Jwt {
                token: format!("h.{claims}.s"),
                credential_id: id::jwt_id(now, &[serial; id::JTI_RANDOM_BYTES]),
                expires_at: now / 1000 + self.ttl,
            })
        })
    }

    fn mint_x509<'a>(
        &'a self,
        _csr: Vec<u8>,
        _p: MintParams<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, SourceError>> {
        Box::pin(async { Err(SourceError::BadReply("JWTs only".into())) })
    }

    fn watch_revocations(
        &self,
        since_sequence: u64,
    ) -> BoxFuture<'_, Result<RevocationStream, SourceError>> {
        self.watches.lock().unwrap().push(since_sequence);
        if *self.mode.lock().unwrap() == Mode::Down {
            return Box::pin(async { Err(tonic::Status::unavailable("down").into()) });
        }
        self.opened
            .lock()
            .unwrap()
            .push(self.clock.unix_millis() - T0);
        let (tx, rx) = unbounded();
        let marker = RevocationEvent {
            sequence: self.sequence.load(Ordering::SeqCst),
            caught_up: true,
            ..RevocationEvent::default()
        };
        tx.unbounded_send(Ok(marker)).unwrap();
        *self.stream.lock().unwrap() = Some(tx);
        Box::pin(async move { Ok(rx.boxed()) })
    }
}

fn start(fake: &Arc<Fake>, jitter: f64) -> JwtSource {
    JwtSource::spawn(fake.params(jitter), Arc::clone(fake) as Arc<dyn Broker>)
}

/// Waits (in paused time) for the next credential; returns it.
async fn next(changes: &mut watch::Receiver<Option<Arc<JwtCredential>>>) -> Arc<JwtCredential> {
    loop {
        changes.changed().await.unwrap();
        if let Some(c) = changes.borrow_and_update().clone() {
            return c;
        }
    }
}

/// Waits (in paused time) for a credential other than `previous`; returns it.
async fn next_after(source: &JwtSource, previous: &JwtCredential) -> Arc<JwtCredential> {
    let mut changes = source.subscribe();
    loop {
        if let Some(c) = changes.borrow_and_update().clone()
            && c.issued().credential_id != previous.issued().credential_id
        {
            return c;
        }
        changes.changed().await.unwrap();
    }
}

/// Waits (in paused time) until `done` holds for the source.
async fn until(source: &JwtSource, done: impl Fn(&SourceStatus) -> bool) {
    while !done(&source.status()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn renewals_come_at_the_drawn_point_of_each_lifetime_and_not_before() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    let first = source.ready().await.unwrap();
    let mut changes = source.subscribe();
    assert_eq!(first.issued().workload, WORKLOAD);
    assert_eq!(source.status().next_attempt_ms, Some(T0 + 50_000));
    let second = next(&mut changes).await;
    let third = next(&mut changes).await;
    assert_ne!(first.issued().credential_id, second.issued().credential_id);
    assert_eq!(
        fake.attempts(),
        [(0, true), (50_000, true), (100_000, true)],
        "half of each 100 s lifetime"
    );
    assert_eq!(third.issued().expires_at, (T0 + 200_000) / 1000);
    assert_eq!((source.renewals(), source.failures()), (3, 0));
    assert_eq!(source.seconds_to_expiry(), Some(100.0));
}

#[tokio::test(start_paused = true)]
async fn sources_with_different_draws_renew_at_different_points_of_the_window() {
    let fake = Fake::new(100);
    let early = start(&fake, 0.0);
    let late = start(&fake, 0.99);
    early.ready().await.unwrap();
    late.ready().await.unwrap();
    assert_eq!(early.status().next_attempt_ms, Some(T0 + 40_000));
    assert_eq!(late.status().next_attempt_ms, Some(T0 + 59_800));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_broker_leaves_the_last_good_credential_in_place_until_it_returns() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    let first = source.ready().await.unwrap();
    fake.set(Mode::Down);
    until(&source, |s| s.stale).await;
    let status = source.status();
    assert!(status.last_error.as_ref().unwrap().is_transient());
    assert!(!status.expired);
    assert_eq!(
        source.current().unwrap().issued().credential_id,
        first.issued().credential_id
    );
    tokio::time::sleep_until(fake.clock.start + Duration::from_secs(70)).await;
    fake.set(Mode::Up);
    let mut changes = source.subscribe();
    let renewed = next(&mut changes).await;
    assert_ne!(renewed.issued().credential_id, first.issued().credential_id);
    let status = source.status();
    assert!(!status.stale && status.last_error.is_none(), "{status:?}");
    let attempts = fake.attempts();
    let (at, minted) = *attempts.last().unwrap();
    assert!(minted && at > 70_000 && at < 100_000, "{attempts:?}");
    assert!(source.failures() >= 5, "{}", source.failures());
}

#[tokio::test(start_paused = true)]
async fn a_failing_renewal_is_retried_as_soon_as_the_revocation_stream_reconnects() {
    let fake = Fake::new(1_000);
    let source = start(&fake, 0.5);
    let first = source.ready().await.unwrap();
    until(&source, |s| s.following_revocations).await;
    fake.set(Mode::Down);
    fake.break_stream();
    // Renewal at 500 s fails; by 580 s the backoff has reached its maximum (15-30 s).
    tokio::time::sleep_until(fake.clock.start + Duration::from_secs(580)).await;
    assert!(source.failures() >= 6, "{}", source.failures());
    fake.set(Mode::Up);
    let renewed = next_after(&source, &first).await;
    let reopened = *fake.opened.lock().unwrap().last().unwrap();
    assert!(reopened > 580_000);
    assert_eq!(
        renewed.issued().received_ms - T0,
        reopened,
        "minted when the stream reconnected, not at the end of the backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_come_closer_together_before_expiry_and_the_expired_credential_is_reported() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    source.ready().await.unwrap();
    fake.set(Mode::Down);
    until(&source, |s| s.expired).await;
    let status = source.status();
    assert!(status.stale && status.expired && source.current().is_some());
    assert!(source.seconds_to_expiry().unwrap() <= 0.0);
    let failed: Vec<i64> = fake
        .attempts()
        .iter()
        .filter(|(_, minted)| !minted)
        .map(|(at, _)| *at)
        .collect();
    // The backoff alone would wait 22.5 s from 73.25 s, past the expiry at 100 s; capped by
    // half of what is left, attempts keep coming until the end.
    let last_second = failed.iter().filter(|at| (99_000..100_000).contains(*at));
    assert!(last_second.count() >= 2, "{failed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_rule_covering_the_credential_held_renews_it_at_once_and_others_do_not() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    let first = source.ready().await.unwrap();
    let mut changes = source.subscribe();
    until(&source, |s| s.following_revocations).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    fake.revoke("purpose", "another", T0 + 10_000);
    fake.revoke("credential_id", &first.issued().credential_id, T0 + 10_000);
    let second = next(&mut changes).await;
    assert_ne!(second.issued().credential_id, first.issued().credential_id);
    assert_eq!(fake.attempts(), [(0, true), (10_000, true)], "at once");
    assert_eq!(source.revocation_renewals(), 1);
    // The same rule again, and a rule whose cut-off is before the new credential: nothing.
    fake.revoke("credential_id", &first.issued().credential_id, T0 + 10_000);
    fake.revoke("workload", WORKLOAD, T0 + 9_999);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.attempts().len(), 2);
    // A workload rule that reaches the new credential does.
    fake.revoke("workload", WORKLOAD, T0 + 11_000);
    let third = next(&mut changes).await;
    assert_eq!(fake.attempts().last(), Some(&(11_000, true)));
    assert_ne!(third.issued().credential_id, second.issued().credential_id);
    assert_eq!(source.revocation_renewals(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_revoked_credential_that_cannot_be_replaced_is_withdrawn() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    let first = source.ready().await.unwrap();
    let mut changes = source.subscribe();
    until(&source, |s| s.following_revocations).await;
    fake.set(Mode::Down);
    fake.revoke("credential_id", &first.issued().credential_id, T0);
    changes.changed().await.unwrap();
    assert!(source.current().is_none());
    fake.set(Mode::Up);
    let replaced = next(&mut changes).await;
    assert_ne!(
        replaced.issued().credential_id,
        first.issued().credential_id
    );
}

#[tokio::test(start_paused = true)]
async fn the_revocation_stream_resumes_after_the_last_sequence_it_saw() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    source.ready().await.unwrap();
    until(&source, |s| s.following_revocations).await;
    fake.revoke("purpose", "unrelated", T0);
    fake.revoke("purpose", "unrelated-too", T0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    fake.break_stream();
    until(&source, |s| !s.following_revocations).await;
    until(&source, |s| s.following_revocations).await;
    assert_eq!(*fake.watches.lock().unwrap(), [0, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_source_told_not_to_follow_revocations_never_watches() {
    let fake = Fake::new(100);
    let params = SourceParams {
        follow_revocations: false,
        ..fake.params(0.5)
    };
    let source = JwtSource::spawn(params, Arc::clone(&fake) as Arc<dyn Broker>);
    let first = source.ready().await.unwrap();
    next_after(&source, &first).await;
    assert!(fake.watches.lock().unwrap().is_empty());
    assert!(!source.status().following_revocations);
}

#[tokio::test(start_paused = true)]
async fn a_first_mint_refused_stops_the_source_with_the_refusal() {
    let fake = Fake::new(100);
    fake.set(Mode::Refuse);
    let source = start(&fake, 0.5);
    let error = source.ready().await.unwrap_err();
    assert_eq!(source.status().stopped.as_ref(), Some(&error));
    assert!(
        matches!(&error, SourceError::Refused { code, .. } if *code == tonic::Code::PermissionDenied),
        "{error:?}"
    );
    assert!(!error.is_transient());
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fake.attempts().len(), 1, "not retried");
    assert_eq!((source.renewals(), source.failures()), (0, 1));
    assert!(fake.watches.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_first_mint_that_fails_transiently_is_retried_until_the_broker_answers() {
    let fake = Fake::new(100);
    fake.set(Mode::Down);
    let source = start(&fake, 0.0);
    until(&source, |s| s.consecutive_failures >= 3).await;
    assert!(source.current().is_none() && source.status().stopped.is_none());
    fake.set(Mode::Up);
    source.ready().await.unwrap();
    // Backoff 1 s, 2 s, 4 s... times the jitter's 0.5.
    let at: Vec<i64> = fake.attempts().iter().map(|(at, _)| *at).collect();
    assert_eq!(&at[..3], [0, 500, 1_500]);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_after_the_first_credential_keeps_it_and_keeps_trying() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    source.ready().await.unwrap();
    fake.set(Mode::Refuse);
    until(&source, |s| s.consecutive_failures >= 2).await;
    let status = source.status();
    assert!(status.stale && status.stopped.is_none());
    assert!(!status.last_error.unwrap().is_transient());
    assert!(source.current().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_broker_that_does_not_answer_times_out_and_is_retried() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    source.ready().await.unwrap();
    fake.set(Mode::Hang);
    until(&source, |s| s.stale).await;
    assert_eq!(
        source.status().last_error,
        Some(SourceError::Timeout(Duration::from_secs(10)))
    );
    assert_eq!(fake.attempts().last(), Some(&(50_000, false)));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_renewing() {
    let fake = Fake::new(100);
    let source = start(&fake, 0.5);
    source.ready().await.unwrap();
    let copy = source.clone();
    drop(source);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(fake.attempts().len(), 2, "the clone still renews");
    drop(copy);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fake.attempts().len(), 2);
}
