//! Following `Broker/WatchRevocations`: apply every rule, and count as up to date only once the
//! stream's caught-up marker says the replay of missed rules is complete.

use std::sync::atomic::Ordering;

use futures::{FutureExt, Stream, StreamExt};
use tonic::transport::Channel;

use tessera_proto::broker_client::BrokerClient;
use tessera_proto::{AcknowledgeRevocationsRequest, RevocationEvent, WatchRevocationsRequest};

use super::RelyingParty;

/// Why following revocations stopped; call [`RelyingParty::follow`] again to resume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamEnd {
    /// The broker refused to open the stream.
    #[error("the broker refused the revocation stream ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
    /// The stream failed after it opened (the broker names where to resume, which is
    /// [`RelyingParty::last_sequence`]).
    #[error("the revocation stream failed ({code:?}): {message}")]
    Failed { code: tonic::Code, message: String },
    /// The broker closed the stream.
    #[error("the revocation stream ended")]
    Closed,
}

impl StreamEnd {
    fn refused(status: &tonic::Status) -> Self {
        StreamEnd::Refused {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    fn failed(status: &tonic::Status) -> Self {
        StreamEnd::Failed {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Clears `following` when dropped, so a cancelled [`RelyingParty::follow_stream`] (its future
/// dropped) does not leave the relying party believing it is up to date.
struct NotFollowingOnDrop<'a>(&'a RelyingParty);

impl Drop for NotFollowingOnDrop<'_> {
    fn drop(&mut self) {
        self.0.following.store(false, Ordering::Release);
    }
}

/// Acknowledgements of applied rules, handed in batches to a task that sends them: whenever
/// the stream has nothing more ready, or a batch is full. Applying rules never waits for the
/// broker's answer; when the sender is behind, a batch is dropped (logged: the evidence of one
/// relying party is missing, enforcement is not affected). A failed send is not retried.
struct Acks {
    batches: Option<tokio::sync::mpsc::Sender<Vec<String>>>,
    pending: Vec<String>,
}

/// Rule ids acknowledged per call, at most (the broker's limit).
const ACK_BATCH: usize = 1000;
/// Batches waiting to be sent, at most.
const ACK_QUEUE: usize = 16;

impl Acks {
    /// No acknowledgements (a stream followed without a client).
    fn none() -> Self {
        Acks {
            batches: None,
            pending: Vec::new(),
        }
    }

    /// Starts the task that sends acknowledgements with `client`; it ends with the follow.
    fn sending(mut client: BrokerClient<Channel>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<String>>(ACK_QUEUE);
        tokio::spawn(async move {
            while let Some(revocation_ids) = rx.recv().await {
                let request = AcknowledgeRevocationsRequest { revocation_ids };
                if let Err(status) = client.acknowledge_revocations(request).await {
                    tracing::warn!(code = ?status.code(), message = status.message(), "acknowledging revocations failed");
                }
            }
        });
        Acks {
            batches: Some(tx),
            pending: Vec::new(),
        }
    }

    fn note(&mut self, event: &RevocationEvent) {
        if self.batches.is_some() && !event.caught_up && !event.revocation_id.is_empty() {
            self.pending.push(event.revocation_id.clone());
        }
    }

    /// Hands the pending ids to the sending task, without waiting.
    fn flush(&mut self) {
        let Some(batches) = &self.batches else {
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        if let Err(e) = batches.try_send(batch) {
            tracing::warn!(error = %e, "acknowledgements are behind; a batch was dropped");
        }
    }
}

impl RelyingParty {
    /// Opens `WatchRevocations` from [`Self::last_sequence`] and follows it (see
    /// [`Self::follow_stream`]) until it ends; returns why (the caller reconnects and calls
    /// again). Every rule applied is acknowledged to the broker (`AcknowledgeRevocations`), as
    /// evidence that this relying party enforces it. When the broker answers `OUT_OF_RANGE`
    /// (its ledger is behind the sequence held here), the next call resumes from 0. Call it
    /// from one task at a time.
    pub async fn follow(&self, client: &mut BrokerClient<Channel>) -> StreamEnd {
        let request = WatchRevocationsRequest {
            since_sequence: self.last_sequence(),
        };
        match client.watch_revocations(request).await {
            Ok(response) => {
                let acks = Acks::sending(client.clone());
                self.follow_acknowledging(response.into_inner(), acks).await
            }
            Err(status) => {
                if status.code() == tonic::Code::OutOfRange {
                    // The broker's sequence is behind ours: its ledger was replaced or reset.
                    // Start over from 0 on the next call, so every rule it holds is replayed.
                    tracing::warn!(
                        since = self.last_sequence(),
                        message = status.message(),
                        "the broker does not know our resume sequence; replaying from the start"
                    );
                    self.last_sequence.store(0, Ordering::Release);
                }
                StreamEnd::refused(&status)
            }
        }
    }

    /// Applies every event of an open revocation stream until it ends; returns why. The relying
    /// party counts as up to date (accepts tokens no rule covers) only from the stream's
    /// caught-up marker until the stream ends: before the marker, the replay of rules committed
    /// while it was not following may still be under way. Acknowledges nothing (there is no
    /// client to send with); [`Self::follow`] does.
    pub async fn follow_stream<S>(&self, stream: S) -> StreamEnd
    where
        S: Stream<Item = Result<RevocationEvent, tonic::Status>>,
    {
        self.follow_acknowledging(stream, Acks::none()).await
    }

    async fn follow_acknowledging<S>(&self, stream: S, mut acks: Acks) -> StreamEnd
    where
        S: Stream<Item = Result<RevocationEvent, tonic::Status>>,
    {
        let mut stream = std::pin::pin!(stream);
        let _reset = NotFollowingOnDrop(self);
        self.following.store(false, Ordering::Release);
        loop {
            let next = match stream.next().now_or_never() {
                Some(next) if acks.pending.len() < ACK_BATCH => next,
                ready => {
                    // Nothing more is ready (or a batch is full): tell the broker what is
                    // enforced before waiting.
                    acks.flush();
                    match ready {
                        Some(next) => next,
                        None => stream.next().await,
                    }
                }
            };
            match next {
                Some(Ok(event)) => {
                    self.apply(&event);
                    acks.note(&event);
                    if event.caught_up {
                        self.following.store(true, Ordering::Release);
                    }
                }
                Some(Err(status)) => {
                    acks.flush();
                    return StreamEnd::failed(&status);
                }
                None => {
                    acks.flush();
                    return StreamEnd::Closed;
                }
            }
        }
    }
}
