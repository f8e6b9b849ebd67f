//! Following `Broker/WatchRevocations`: apply every rule, and count as up to date only once the
//! stream's caught-up marker says the replay of missed rules is complete.

use std::sync::atomic::Ordering;

use futures::{Stream, StreamExt};
use tonic::transport::Channel;

use tessera_proto::broker_client::BrokerClient;
use tessera_proto::{RevocationEvent, WatchRevocationsRequest};

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

impl RelyingParty {
    /// Opens `WatchRevocations` from [`Self::last_sequence`] and follows it (see
    /// [`Self::follow_stream`]) until it ends; returns why (the caller reconnects and calls
    /// again). Call it from one task at a time.
    pub async fn follow(&self, client: &mut BrokerClient<Channel>) -> StreamEnd {
        let request = WatchRevocationsRequest {
            since_sequence: self.last_sequence(),
        };
        match client.watch_revocations(request).await {
            Ok(response) => self.follow_stream(response.into_inner()).await,
            Err(status) => StreamEnd::refused(&status),
        }
    }

    /// Applies every event of an open revocation stream until it ends; returns why. The relying
    /// party counts as up to date (accepts tokens no rule covers) only from the stream's
    /// caught-up marker until the stream ends: before the marker, the replay of rules committed
    /// while it was not following may still be under way.
    pub async fn follow_stream<S>(&self, stream: S) -> StreamEnd
    where
        S: Stream<Item = Result<RevocationEvent, tonic::Status>>,
    {
        let mut stream = std::pin::pin!(stream);
        let _reset = NotFollowingOnDrop(self);
        self.following.store(false, Ordering::Release);
        loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    self.apply(&event);
                    if event.caught_up {
                        self.following.store(true, Ordering::Release);
                    }
                }
                Some(Err(status)) => return StreamEnd::failed(&status),
                None => return StreamEnd::Closed,
            }
        }
    }
}
