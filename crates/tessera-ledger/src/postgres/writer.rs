//! The writer task: takes the first queued write, drains what else is queued (lingering while
//! writes arrive concurrently, up to `max_batch`), applies the whole batch in one transaction
//! ([`super::batch`]), commits it, and only then answers every waiter and hands the batch's
//! events to the publisher. A batch that fails answers `Storage` to each of its writes; the
//! task keeps running, so the ledger recovers when the database does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

pub(super) use super::batch::Work;
use super::batch::{self, Done, Outcome};
use crate::{Event, LedgerError, LedgerMetrics, RevocationRule};

pub(super) type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// Where a write's answer goes.
#[derive(Debug)]
pub(super) enum Answer {
    Sequence(Reply<u64>),
    Rule(Reply<RevocationRule>),
    Count(Reply<u64>),
    Closed(Reply<()>),
}

/// One write queued for the writer task.
#[derive(Debug)]
pub(super) struct WriterMsg {
    pub work: Work,
    pub answer: Answer,
}

/// Events of one committed batch, in sequence order, and when it committed.
#[derive(Debug)]
pub(super) struct Committed {
    pub events: Vec<Event>,
    pub at: std::time::Instant,
}

/// Times a batch is tried when PostgreSQL aborts it for a deadlock or a serialization failure.
const ATTEMPTS: usize = 3;

/// The writer task's state.
pub(super) struct Writer {
    pub pool: Pool,
    pub rx: mpsc::UnboundedReceiver<WriterMsg>,
    pub linger: Duration,
    /// This replica's id in the notifications its commits send.
    pub origin: String,
    pub max_batch: usize,
    pub query_timeout: Duration,
    pub metrics: LedgerMetrics,
    pub commits: Arc<AtomicU64>,
    /// Committed events, for the publisher.
    pub published: mpsc::UnboundedSender<Committed>,
    /// Size of the last batch: more than one says writes arrive concurrently, so the next
    /// batch lingers for more.
    pub last_batch: usize,
}

impl Writer {
    /// Commits batches until a `Close` is committed or every sender is dropped.
    pub async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let (msgs, closing) = self.drain(first).await;
            self.commit_batch(msgs).await;
            if closing {
                break;
            }
        }
        tracing::debug!("postgres ledger writer stopped");
    }

    /// Returns `first` and what else is queued (waiting up to the linger while the previous
    /// batch held more than one write), and whether the batch ends with a `Close`.
    async fn drain(&mut self, first: WriterMsg) -> (Vec<WriterMsg>, bool) {
        let linger_until = (self.last_batch > 1 && !self.linger.is_zero())
            .then(|| tokio::time::Instant::now() + self.linger);
        let mut closing = matches!(first.work, Work::Close);
        let mut msgs = vec![first];
        while !closing && msgs.len() < self.max_batch.max(1) {
            let msg = match self.rx.try_recv() {
                Ok(msg) => msg,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let Some(until) = linger_until else { break };
                    match tokio::time::timeout_at(until, self.rx.recv()).await {
                        Ok(Some(msg)) => msg,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            closing = matches!(msg.work, Work::Close);
            msgs.push(msg);
        }
        (msgs, closing)
    }

    /// Applies and commits `msgs` in one transaction (retrying a batch PostgreSQL aborted for
    /// a deadlock), then answers each and hands the events to the publisher; on failure
    /// answers `Storage` to each.
    async fn commit_batch(&mut self, msgs: Vec<WriterMsg>) {
        let started = std::time::Instant::now();
        let size = msgs.len();
        self.last_batch = size;
        let (works, answers): (Vec<Work>, Vec<Answer>) =
            msgs.into_iter().map(|m| (m.work, m.answer)).unzip();
        match self.commit_with_retries(&works).await {
            Ok(done) => {
                let committed = std::time::Instant::now();
                self.metrics
                    .commit_seconds
                    .observe(committed.duration_since(started).as_secs_f64());
                self.metrics.batch_size.observe(size as f64);
                if let Some(last) = done.events.last() {
                    let last = i64::try_from(last.sequence).unwrap_or(i64::MAX);
                    self.metrics.event_sequence.set(last);
                }
                self.commits.fetch_add(1, Ordering::Relaxed);
                answer_all(answers, done.outcomes, &done.events);
                let _ = self.published.send(Committed {
                    events: done.events,
                    at: committed,
                }); // the publisher stops only with the ledger
            }
            Err(err) => {
                tracing::error!(error = %err, size, "postgres ledger batch failed");
                let message = match err {
                    LedgerError::Storage(message) => message,
                    other => other.to_string(),
                };
                for answer in answers {
                    fail(answer, &message);
                }
            }
        }
    }

    /// Returns the committed batch, trying it up to [`ATTEMPTS`] times while PostgreSQL
    /// aborts it for a deadlock. Fails with `Storage` when it cannot be committed (or its
    /// outcome is unknown: the database did not answer in time).
    async fn commit_with_retries(&self, works: &[Work]) -> Result<Done, LedgerError> {
        let mut attempt = 1;
        loop {
            let tried = tokio::time::timeout(
                self.query_timeout,
                batch::commit(&self.pool, works, &self.origin),
            )
            .await;
            match tried {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(err)) if err.retry && attempt < ATTEMPTS => {
                    tracing::warn!(error = %err.error, attempt, "retrying a ledger batch");
                    attempt += 1;
                }
                Ok(Err(err)) => return Err(err.error),
                Err(_) => {
                    return Err(LedgerError::Storage(format!(
                        "committing a ledger batch: the database did not answer within {:?}",
                        self.query_timeout
                    )));
                }
            }
        }
    }
}

/// Sends each write its outcome; `events` are the batch's, with their sequences.
fn answer_all(answers: Vec<Answer>, outcomes: Vec<Outcome>, events: &[Event]) {
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        // A waiter that gave up is not an error: its write is committed all the same.
        match (answer, outcome) {
            (Answer::Sequence(reply), Outcome::Event(i)) => {
                let _ = reply.send(event_at(events, i).map(|e| e.sequence));
            }
            (Answer::Sequence(reply), Outcome::Refused(err)) => {
                let _ = reply.send(Err(err));
            }
            (Answer::Rule(reply), Outcome::Event(i)) => {
                let rule = event_at(events, i).and_then(|e| {
                    e.revocation
                        .clone()
                        .ok_or_else(|| LedgerError::Storage("a rule event without its rule".into()))
                });
                let _ = reply.send(rule);
            }
            (Answer::Count(reply), Outcome::Count(n)) => {
                let _ = reply.send(Ok(n));
            }
            (Answer::Closed(reply), _) => {
                let _ = reply.send(Ok(()));
            }
            (answer, _) => fail(answer, "a ledger write got the outcome of another kind"),
        }
    }
}

/// Returns the batch's event `i`. Fails with `Storage` when the batch has no such event.
fn event_at(events: &[Event], i: usize) -> Result<&Event, LedgerError> {
    events
        .get(i)
        .ok_or_else(|| LedgerError::Storage(format!("ledger batch lost its event {i}")))
}

/// Answers `Storage(message)`.
fn fail(answer: Answer, message: &str) {
    let err = || LedgerError::Storage(message.to_owned());
    match answer {
        Answer::Sequence(reply) | Answer::Count(reply) => {
            let _ = reply.send(Err(err()));
        }
        Answer::Rule(reply) => {
            let _ = reply.send(Err(err()));
        }
        Answer::Closed(reply) => {
            let _ = reply.send(Err(err()));
        }
    }
}
