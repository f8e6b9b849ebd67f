//! Poll delivery (RFC 8936): `POST /ssf/poll/<stream_id>` with `{ack, setErrs, maxEvents,
//! returnImmediately}` (all optional) answers `{sets: {jti: SET}, moreAvailable}`. Acknowledged
//! SETs (`ack`, and those the receiver reports in `setErrs`) are forgotten before the answer is
//! built; the others are returned again until acknowledged. Without `returnImmediately`, an
//! empty queue is held open up to [`LONG_POLL`] for SETs to arrive. Only the receiver that owns
//! the stream may poll it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tessera_ledger::{AckParams, PendingParams};
use tokio_util::sync::CancellationToken;

use super::management::{Management, Receiver, SsfError, json_reply};
use super::reply;
use super::stream::{Delivery, StreamError, StreamStatus};
use crate::refusal::Refusal;
use crate::tls::PeerInfo;

/// Longest a poll waits for SETs when the receiver allows it to.
pub const LONG_POLL: Duration = Duration::from_secs(25);
/// SETs returned when `maxEvents` is missing, and at most.
const DEFAULT_MAX_EVENTS: usize = 100;
const MOST_EVENTS: usize = 1000;
/// Most jtis acknowledged in one request.
const MOST_ACKS: usize = 10_000;

/// An error a receiver reports for one SET.
#[derive(Debug, Deserialize)]
struct SetErr {
    err: Option<String>,
    description: Option<String>,
}

/// The body of a poll request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollRequest {
    max_events: Option<usize>,
    return_immediately: Option<bool>,
    #[serde(default)]
    ack: Vec<String>,
    #[serde(default)]
    set_errs: HashMap<String, SetErr>,
}

/// What polls use.
#[derive(Debug, Clone)]
pub struct Polls {
    pub management: Arc<Management>,
    /// Ends long polls at shutdown.
    pub stopping: CancellationToken,
}

impl Polls {
    /// Serves one poll of `stream_id`.
    pub async fn handle(
        &self,
        stream_id: &str,
        peer: &PeerInfo,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let m = &self.management;
        let who = match m.caller(peer, headers).await {
            Ok(who) => who,
            Err(refusal) => return reply::render(refusal, &m.metrics),
        };
        match self.poll(&who, stream_id, body).await {
            Ok(answer) => json_reply(StatusCode::OK, &answer),
            Err(e) => reply::render(Refusal::from(&e), &m.metrics),
        }
    }

    async fn poll(&self, who: &Receiver, stream_id: &str, body: &[u8]) -> Result<Value, SsfError> {
        let m = &self.management;
        let request: PollRequest = if body.iter().all(u8::is_ascii_whitespace) {
            PollRequest::default()
        } else {
            serde_json::from_slice(body).map_err(|e| StreamError::Json(e.to_string()))?
        };
        if request.ack.len() + request.set_errs.len() > MOST_ACKS {
            return Err(StreamError::TooLong {
                field: "ack",
                max: MOST_ACKS,
            }
            .into());
        }
        // Only the owner polls: an admin acknowledging would take SETs from the receiver.
        let owner = Receiver {
            admin: false,
            ..who.clone()
        };
        let (stored, config) = m.visible(&owner, stream_id).await?;
        if !matches!(config.delivery, Delivery::Poll) {
            return Err(SsfError::NotPolled);
        }
        self.acknowledge(&stored.stream_id, request.ack, request.set_errs)
            .await?;
        let max = request
            .max_events
            .unwrap_or(DEFAULT_MAX_EVENTS)
            .min(MOST_EVENTS);
        if max == 0 || config.status != StreamStatus::Enabled {
            return Ok(json!({"sets": {}, "moreAvailable": false}));
        }
        let mut wake = m.deliveries.waiter(&stored.stream_id);
        if let Some(w) = wake.as_mut() {
            w.borrow_and_update();
        }
        let mut pending = self.pending(&stored.stream_id, max).await?;
        if pending.is_empty() && request.return_immediately != Some(true) {
            self.wait(wake).await;
            pending = self.pending(&stored.stream_id, max).await?;
        }
        let more = pending.len() > max;
        let sets: Map<String, Value> = pending
            .into_iter()
            .take(max)
            .map(|p| (p.jti, Value::String(p.set)))
            .collect();
        Ok(json!({"sets": sets, "moreAvailable": more}))
    }

    /// Forgets the acknowledged and refused SETs, counting and logging them.
    async fn acknowledge(
        &self,
        stream_id: &str,
        ack: Vec<String>,
        errs: HashMap<String, SetErr>,
    ) -> Result<(), SsfError> {
        let m = &self.management;
        for (jti, e) in &errs {
            tracing::warn!(
                stream_id,
                jti = %jti.chars().take(64).collect::<String>(),
                err = e.err.as_deref().unwrap_or_default(),
                description = e.description.as_deref().unwrap_or_default(),
                "receiver reported a SET error"
            );
            m.metrics.ssf.failed("rejected");
        }
        let acked = ack.len() as u64;
        let mut jtis = ack;
        jtis.extend(errs.into_keys());
        if jtis.is_empty() {
            return Ok(());
        }
        m.ledger
            .ack_sets(AckParams {
                stream_id: stream_id.to_owned(),
                jtis,
            })
            .await?;
        m.metrics.ssf.delivered("poll", acked);
        Ok(())
    }

    /// Returns up to `max + 1` queued SETs (one more tells whether more are available).
    async fn pending(
        &self,
        stream_id: &str,
        max: usize,
    ) -> Result<Vec<tessera_ledger::PendingSet>, SsfError> {
        let params = PendingParams {
            stream_id: stream_id.to_owned(),
            limit: max + 1,
        };
        Ok(self.management.ledger.pending_sets(params).await?)
    }

    /// Waits until SETs are queued for the stream, [`LONG_POLL`] passes, or shutdown. Without
    /// a waiter (a stream this replica has not seen yet) it waits a short while only.
    async fn wait(&self, wake: Option<tokio::sync::watch::Receiver<u64>>) {
        let Some(mut wake) = wake else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        };
        tokio::select! {
            () = self.stopping.cancelled() => {}
            _ = wake.changed() => {}
            () = tokio::time::sleep(LONG_POLL) => {}
        }
    }
}
