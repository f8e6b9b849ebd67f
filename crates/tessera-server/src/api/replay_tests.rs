//! Replays read rules from the rule log, and from the ledger only what the log has not seen:
//! a wrapping ledger counts the events it is asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use tessera_core::domain::{
    CredentialKind, CredentialRecord, Event, EvidenceKind, NewRule, RevocationRule, Selector,
    Status,
};
use tessera_core::revocation::{LiveCounts, RuleLog};
use tessera_ledger::{
    AckParams, AckStore, Acknowledgement, CredentialPage, EnqueueParams, Enqueued, LeaseParams,
    Ledger, LedgerError, ListParams, NewStream, PendingParams, PendingSet, RecordParams,
    RedbLedger, RedbOptions, SignalStore, StoredStream, StreamCreated, StreamUpdate, SweepParams,
    UsageQuery, UsageRow, UsageStore,
};
use tessera_proto as proto;

use super::ReplaySource;
use crate::api::convert;
use crate::api::watch::{Replay, WatchRequest, WatchStream, Watches};
use crate::metrics::Metrics;
use crate::watchers::{Pool, Watchers};

/// A redb ledger that counts `events_since` calls and the events they return.
#[derive(Debug)]
struct Counting {
    inner: RedbLedger,
    calls: AtomicUsize,
    events: AtomicUsize,
}

impl Counting {
    fn reads(&self) -> (usize, usize) {
        (
            self.calls.load(Ordering::SeqCst),
            self.events.load(Ordering::SeqCst),
        )
    }
}

/// Acknowledgements pass straight through (replays do not touch them).
#[async_trait]
impl AckStore for Counting {
    async fn acknowledge(&self, acks: Vec<Acknowledgement>) -> Result<u64, LedgerError> {
        self.inner.acknowledge(acks).await
    }
    async fn acknowledgements(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<Acknowledgement>, LedgerError> {
        self.inner.acknowledgements(id, limit).await
    }
    async fn forget_acknowledgements(&self, before_ms: i64) -> Result<u64, LedgerError> {
        self.inner.forget_acknowledgements(before_ms).await
    }
}

/// Audit anchors pass straight through (replays do not touch them).
#[async_trait]
impl tessera_ledger::AnchorStore for Counting {
    async fn anchor_audit(&self, anchor: tessera_ledger::AuditAnchor) -> Result<(), LedgerError> {
        self.inner.anchor_audit(anchor).await
    }
    async fn audit_anchor(
        &self,
        log: &str,
    ) -> Result<Option<tessera_ledger::AuditAnchor>, LedgerError> {
        self.inner.audit_anchor(log).await
    }
}

/// Usage passes straight through (replays do not touch it).
#[async_trait]
impl UsageStore for Counting {
    async fn usage(&self, query: UsageQuery) -> Result<Vec<UsageRow>, LedgerError> {
        self.inner.usage(query).await
    }
}

/// Shared Signals state passes straight through (replays do not touch it).
#[async_trait]
impl SignalStore for Counting {
    async fn create_stream(&self, p: NewStream) -> Result<StreamCreated, LedgerError> {
        self.inner.create_stream(p).await
    }
    async fn streams(&self) -> Result<Vec<StoredStream>, LedgerError> {
        self.inner.streams().await
    }
    async fn stream(&self, id: &str) -> Result<Option<StoredStream>, LedgerError> {
        self.inner.stream(id).await
    }
    async fn update_stream(&self, u: StreamUpdate) -> Result<bool, LedgerError> {
        self.inner.update_stream(u).await
    }
    async fn delete_stream(&self, id: &str) -> Result<bool, LedgerError> {
        self.inner.delete_stream(id).await
    }
    async fn enqueue_sets(&self, p: EnqueueParams) -> Result<Enqueued, LedgerError> {
        self.inner.enqueue_sets(p).await
    }
    async fn pending_sets(&self, p: PendingParams) -> Result<Vec<PendingSet>, LedgerError> {
        self.inner.pending_sets(p).await
    }
    async fn ack_sets(&self, p: AckParams) -> Result<u64, LedgerError> {
        self.inner.ack_sets(p).await
    }
    async fn discard_sets(&self, id: &str) -> Result<u64, LedgerError> {
        self.inner.discard_sets(id).await
    }
    async fn signal_cursor(&self) -> Result<u64, LedgerError> {
        self.inner.signal_cursor().await
    }
    async fn lease_stream(&self, p: LeaseParams) -> Result<bool, LedgerError> {
        self.inner.lease_stream(p).await
    }
}

#[async_trait]
impl Ledger for Counting {
    async fn record(&self, p: RecordParams) -> Result<u64, LedgerError> {
        self.inner.record(p).await
    }
    async fn add_rule(&self, rule: NewRule) -> Result<RevocationRule, LedgerError> {
        self.inner.add_rule(rule).await
    }
    async fn rules(&self) -> Result<Vec<RevocationRule>, LedgerError> {
        self.inner.rules().await
    }
    async fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>, LedgerError> {
        let page = self.inner.events_since(since, limit).await?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.events.fetch_add(page.len(), Ordering::SeqCst);
        Ok(page)
    }
    async fn last_sequence(&self) -> Result<u64, LedgerError> {
        self.inner.last_sequence().await
    }
    async fn expire(&self, now: i64, limit: usize) -> Result<u64, LedgerError> {
        self.inner.expire(now, limit).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.subscribe()
    }
    async fn get(&self, id: &str) -> Result<Option<CredentialRecord>, LedgerError> {
        self.inner.get(id).await
    }
    async fn list(&self, p: ListParams) -> Result<CredentialPage, LedgerError> {
        self.inner.list(p).await
    }
    async fn scan(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<CredentialRecord>, LedgerError> {
        self.inner.scan(after, limit).await
    }
    async fn live_counts(&self, now: i64) -> Result<LiveCounts, LedgerError> {
        self.inner.live_counts(now).await
    }
    async fn x509_records(&self, after: i64) -> Result<Vec<CredentialRecord>, LedgerError> {
        self.inner.x509_records(after).await
    }
    async fn sweep(&self, p: SweepParams) -> Result<u64, LedgerError> {
        self.inner.sweep(p).await
    }
    async fn len(&self) -> Result<u64, LedgerError> {
        self.inner.len().await
    }
    async fn newest_issue_ms(&self) -> Result<Option<i64>, LedgerError> {
        self.inner.newest_issue_ms().await
    }
    async fn status_list_records(
        &self,
        scan: tessera_ledger::StatusScan,
    ) -> Result<Vec<CredentialRecord>, LedgerError> {
        self.inner.status_list_records(scan).await
    }
    async fn close(&self) -> Result<(), LedgerError> {
        self.inner.close().await
    }
}

fn record(i: usize) -> RecordParams {
    RecordParams {
        credential: CredentialRecord {
            credential_id: format!("c{i:04}"),
            kind: CredentialKind::Jwt,
            workload: "spiffe://example.org/w".into(),
            owner: "team".into(),
            destination: "https://d".into(),
            purpose: "read".into(),
            grant: "g".into(),
            evidence_kind: EvidenceKind::JwtSvid,
            evidence_hash: "00".repeat(32),
            issued_at: 1_000,
            expires_at: 2_000,
            status: Status::Live,
            ci: None,
            status_list: None,
        },
        replay_guard: None,
    }
}

fn rule(n: usize) -> NewRule {
    NewRule {
        revocation_id: format!("r{n}"),
        selector: Selector::Purpose,
        value: format!("p{n}"),
        effective_at: 1_500,
        reason: "test".into(),
        revoked_by: "spiffe://example.org/admin".into(),
        effective_at_ms: None,
        scope: None,
    }
}

/// A ledger of 3 rules among 300 `issued` events, and a rule log restored from it; returns
/// them with the sequences of the rules.
async fn seeded(dir: &tempfile::TempDir) -> (Arc<Counting>, Arc<RuleLog>, Vec<u64>) {
    let inner = RedbLedger::open(&dir.path().join("l.redb"), RedbOptions::default()).unwrap();
    let ledger = Arc::new(Counting {
        inner,
        calls: AtomicUsize::new(0),
        events: AtomicUsize::new(0),
    });
    let mut sequences = Vec::new();
    for n in 0..3 {
        for i in 0..100 {
            ledger.record(record(n * 100 + i)).await.unwrap();
        }
        sequences.push(ledger.add_rule(rule(n)).await.unwrap().sequence);
    }
    let log = Arc::new(RuleLog::new());
    let through = ledger.last_sequence().await.unwrap();
    log.restore(ledger.rules().await.unwrap(), through);
    (ledger, log, sequences)
}

async fn next(stream: &mut WatchStream<proto::RevocationEvent>) -> proto::RevocationEvent {
    stream.next().await.unwrap().unwrap()
}

fn ids(rules: &[Arc<RevocationRule>]) -> Vec<&str> {
    rules
        .iter()
        .map(|r| r.rule.revocation_id.as_str())
        .collect()
}

#[tokio::test]
async fn a_resume_replays_exactly_the_rules_after_its_sequence_without_reading_events() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, log, sequences) = seeded(&dir).await;
    let watchers = Watchers::default();
    let source = ReplaySource {
        ledger: ledger.as_ref(),
        rules: &log,
        watchers: &watchers,
    };
    let last = ledger.last_sequence().await.unwrap();
    assert_eq!(
        ids(&source.rules(0, last).await.unwrap()),
        ["r0", "r1", "r2"]
    );
    assert_eq!(
        ids(&source.rules(sequences[0], last).await.unwrap()),
        ["r1", "r2"]
    );
    assert!(source.rules(last, last).await.unwrap().is_empty());
    assert_eq!(
        ids(&source.rules(0, sequences[1]).await.unwrap()),
        ["r0", "r1"],
        "nothing after the target"
    );
    assert_eq!(ledger.reads(), (0, 0), "not one event was read");
}

#[tokio::test]
async fn rules_the_log_has_not_seen_yet_are_read_from_the_events_after_it_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, log, _) = seeded(&dir).await;
    let seen = ledger.last_sequence().await.unwrap();
    ledger.record(record(900)).await.unwrap();
    ledger.add_rule(rule(3)).await.unwrap();
    let last = ledger.last_sequence().await.unwrap();
    let watchers = Watchers::default();
    let source = ReplaySource {
        ledger: ledger.as_ref(),
        rules: &log,
        watchers: &watchers,
    };
    assert_eq!(
        ids(&source.rules(0, last).await.unwrap()),
        ["r0", "r1", "r2", "r3"]
    );
    let (_, events) = ledger.reads();
    assert_eq!(
        events as u64,
        last - seen,
        "only the events after what the log saw"
    );
}

#[tokio::test]
async fn a_revocation_stream_sends_the_rules_after_since_then_caught_up_then_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, log, sequences) = seeded(&dir).await;
    let watches = Watches {
        watchers: Watchers::default(),
        ledger: Arc::clone(&ledger) as Arc<dyn Ledger>,
        rules: log,
        stopping: tokio_util::sync::CancellationToken::new(),
        metrics: Arc::new(Metrics::new()),
    };
    let request = WatchRequest {
        pool: Pool::Revocations,
        identity: "spiffe://example.org/rp".into(),
        since: sequences[0],
        convert: Box::new(|e: &Event| e.revocation.as_ref().map(convert::revocation)),
        replay: Replay::Rules {
            rule: convert::revocation,
            caught_up: convert::caught_up,
        },
    };
    let mut stream = watches.open(request).await.unwrap();
    let last = ledger.last_sequence().await.unwrap();
    assert_eq!(next(&mut stream).await.revocation_id, "r1");
    assert_eq!(next(&mut stream).await.revocation_id, "r2");
    let marker = next(&mut stream).await;
    assert_eq!((marker.caught_up, marker.sequence), (true, last));
    let live = ledger.add_rule(rule(4)).await.unwrap();
    let seen = next(&mut stream).await;
    assert_eq!(
        (seen.revocation_id.as_str(), seen.sequence, seen.caught_up),
        ("r4", live.sequence, false)
    );
    assert_eq!(ledger.reads(), (0, 0), "not one event was read");
}

#[tokio::test]
async fn a_since_beyond_the_last_sequence_is_out_of_range_and_names_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, log, _) = seeded(&dir).await;
    let last = ledger.last_sequence().await.unwrap();
    let watches = Watches {
        watchers: Watchers::default(),
        ledger: ledger as Arc<dyn Ledger>,
        rules: log,
        stopping: tokio_util::sync::CancellationToken::new(),
        metrics: Arc::new(Metrics::new()),
    };
    let request = WatchRequest::<proto::Event> {
        pool: Pool::Events,
        identity: "spiffe://example.org/admin".into(),
        since: last + 1,
        convert: Box::new(|_| None),
        replay: Replay::Events,
    };
    let refusal = watches.open(request).await.err().unwrap();
    assert_eq!(refusal.class, crate::refusal::Class::OutOfRange);
    assert!(
        refusal.message.contains(&format!("last sequence, {last}")),
        "{}",
        refusal.message
    );
}
