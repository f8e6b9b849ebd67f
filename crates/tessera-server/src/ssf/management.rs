//! The stream management API (SSF 1.0 §8): `/ssf/streams` (POST create, GET read one or list,
//! PATCH update, PUT replace, DELETE), `/ssf/status` (GET, POST) and `/ssf/verify` (POST).
//! Receivers authenticate as `/introspect` callers do (an X509-SVID client certificate or a
//! JWT-SVID bearer); a receiver sees and changes its own streams, an admin (`[admin]
//! spiffe_ids`) every stream. A stream another receiver owns is answered 404, as one that does
//! not exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_core::attest::Evidence;
use tessera_core::clock::SharedClock;
use tessera_core::spiffe_id::SpiffeId;
use tessera_ledger::{
    EnqueueParams, Ledger, NewStream, StoredStream, StreamCreated, StreamLimits, StreamUpdate,
};

use super::delivery::Deliveries;
pub use super::error::SsfError;
use super::events::{SetBuilder, VerificationSet};
use super::reply;
use super::stream::{
    Delivery, PushHosts, RenderParams, StreamConfig, StreamError, StreamRequest, StreamStatus,
};
use crate::api::caller::Callers;
use crate::audit::Audit;
use crate::metrics::Metrics;
use crate::refusal::Refusal;
use crate::tls::PeerInfo;

/// Longest `state` of a verification request and `reason` of a status update.
const MAX_TEXT: usize = 1024;

/// What the management endpoints use.
pub struct Management {
    pub callers: Callers,
    pub ledger: Arc<dyn Ledger>,
    pub sets: Arc<SetBuilder>,
    pub deliveries: Arc<Deliveries>,
    /// `iss` of SETs and streams.
    pub issuer: String,
    pub limits: StreamLimits,
    /// `[ssf] max_queue`.
    pub max_queue: usize,
    pub min_verification_interval: Duration,
    /// Hosts receivers that are not admins may have SETs pushed to.
    pub push_hosts: PushHosts,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// When each stream last asked for verification (unix ms), on this replica.
    pub verified: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// An authenticated receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub id: SpiffeId,
    pub admin: bool,
}

/// The management operations, one per method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Read,
    Update,
    Replace,
    Delete,
    ReadStatus,
    UpdateStatus,
    Verify,
}

#[derive(Debug, Deserialize)]
struct StatusRequest {
    stream_id: Option<String>,
    status: Option<String>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VerifyRequest {
    stream_id: Option<String>,
    state: Option<String>,
}

/// Parses a JSON body of type `T`; fails with what is wrong with it.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SsfError> {
    serde_json::from_slice(body).map_err(|e| StreamError::Json(e.to_string()).into())
}

/// Returns `text` when it is at most [`MAX_TEXT`] characters; fails naming `field`.
fn short(field: &'static str, text: Option<String>) -> Result<Option<String>, SsfError> {
    match text {
        Some(t) if t.chars().count() > MAX_TEXT => Err(StreamError::TooLong {
            field,
            max: MAX_TEXT,
        }
        .into()),
        other => Ok(other),
    }
}

/// Returns the `stream_id` query parameter, if any.
pub fn query_stream_id(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "stream_id")
        .map(|(_, v)| v.into_owned())
}

/// A JSON response that is not cached.
pub fn json_reply(status: StatusCode, body: &Value) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (status, headers, body.to_string()).into_response()
}

fn no_content() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "no-store")],
    )
        .into_response()
}

impl Management {
    /// Returns who is calling, or why the request is refused (unauthenticated, or a CI token).
    pub async fn caller(&self, peer: &PeerInfo, headers: &HeaderMap) -> Result<Receiver, Refusal> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let evidence = Evidence {
            authorization,
            peer: peer.x509.as_deref(),
        };
        let id = self.callers.workload(evidence, "shared signals").await?;
        let admin = self.callers.access().is_admin(&id);
        Ok(Receiver { id, admin })
    }

    /// Serves one management request: authenticates, runs `op`, renders the result or refusal.
    pub async fn handle(
        &self,
        op: Op,
        peer: &PeerInfo,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Response {
        let who = match self.caller(peer, headers).await {
            Ok(who) => who,
            Err(refusal) => return reply::render(refusal, &self.metrics),
        };
        let done = match op {
            Op::Create => self.create(&who, body).await,
            Op::Read => self.read(&who, query).await,
            Op::Update | Op::Replace => self.change(&who, body, op == Op::Replace).await,
            Op::Delete => self.delete(&who, query).await,
            Op::ReadStatus => self.read_status(&who, query).await,
            Op::UpdateStatus => self.update_status(&who, body).await,
            Op::Verify => self.verify(&who, body).await,
        };
        done.unwrap_or_else(|e| reply::render(Refusal::from(&e), &self.metrics))
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now().as_millis()).unwrap_or(i64::MAX)
    }

    /// Returns the stream `stream_id` when `who` may see it; fails with `UnknownStream`
    /// otherwise.
    pub async fn visible(
        &self,
        who: &Receiver,
        stream_id: &str,
    ) -> Result<(StoredStream, StreamConfig), SsfError> {
        let unknown = || SsfError::UnknownStream(stream_id.chars().take(100).collect());
        let stored = self.ledger.stream(stream_id).await?.ok_or_else(unknown)?;
        if !who.admin && stored.owner != who.id.as_str() {
            return Err(unknown());
        }
        let config = serde_json::from_str(&stored.config)
            .map_err(|e| SsfError::Corrupt(stored.stream_id.clone(), e.to_string()))?;
        Ok((stored, config))
    }

    /// Returns the SSF JSON of a stream as `who` may see it.
    fn render(&self, who: &Receiver, stored: &StoredStream, config: &StreamConfig) -> Value {
        config.to_json(RenderParams {
            stream_id: &stored.stream_id,
            issuer: &self.issuer,
            min_verification_interval: self.min_verification_interval.as_secs(),
            show_secret: stored.owner == who.id.as_str(),
        })
    }

    fn audit(&self, event: &str, who: &Receiver, stored: &StoredStream, extra: Value) {
        let mut fields = json!({
            "stream_id": stored.stream_id, "owner": stored.owner, "by": who.id.to_string(),
        });
        if let (Some(obj), Value::Object(more)) = (fields.as_object_mut(), extra) {
            obj.extend(more);
        }
        self.audit.record(event, fields);
    }

    /// Checks that `who` may have SETs pushed where `config` says: an admin anywhere, another
    /// receiver only to a host in `[ssf] push_hosts`.
    fn check_push(&self, who: &Receiver, config: &StreamConfig) -> Result<(), SsfError> {
        let Delivery::Push { endpoint_url, .. } = &config.delivery else {
            return Ok(());
        };
        let host = endpoint_url.host().unwrap_or_default();
        if who.admin || self.push_hosts.allows(&host) {
            return Ok(());
        }
        Err(SsfError::PushHost(host))
    }

    async fn create(&self, who: &Receiver, body: &[u8]) -> Result<Response, SsfError> {
        let request = StreamRequest::parse(body)?;
        let config = StreamConfig::create(&request, who.id.as_str())?;
        self.check_push(who, &config)?;
        let stored = StoredStream {
            stream_id: tessera_core::mint::random_hex::<16>()?,
            owner: who.id.to_string(),
            from_sequence: self.ledger.last_sequence().await?,
            config: serde_json::to_string(&config)
                .map_err(|e| SsfError::Corrupt("new".into(), e.to_string()))?,
        };
        let created = self
            .ledger
            .create_stream(NewStream {
                stream: stored.clone(),
                limits: self.limits,
            })
            .await?;
        match created {
            StreamCreated::Created => {}
            StreamCreated::OwnerFull => return Err(SsfError::OwnerFull(self.limits.per_owner)),
            StreamCreated::Full | StreamCreated::Duplicate => {
                return Err(SsfError::Full(self.limits.total));
            }
        }
        self.deliveries.upsert(&stored.stream_id, &config);
        self.metrics.ssf.streams.inc();
        let method = json!({"delivery": config.to_json(RenderParams {
            stream_id: &stored.stream_id, issuer: &self.issuer,
            min_verification_interval: 0, show_secret: false,
        })["delivery"]});
        self.audit("ssf_stream_created", who, &stored, method);
        Ok(json_reply(
            StatusCode::CREATED,
            &self.render(who, &stored, &config),
        ))
    }

    async fn read(&self, who: &Receiver, query: Option<&str>) -> Result<Response, SsfError> {
        if let Some(id) = query_stream_id(query) {
            let (stored, config) = self.visible(who, &id).await?;
            return Ok(json_reply(
                StatusCode::OK,
                &self.render(who, &stored, &config),
            ));
        }
        let mut list = Vec::new();
        for stored in self.ledger.streams().await? {
            if !who.admin && stored.owner != who.id.as_str() {
                continue;
            }
            match serde_json::from_str::<StreamConfig>(&stored.config) {
                Ok(config) => list.push(self.render(who, &stored, &config)),
                Err(e) => {
                    tracing::error!(stream_id = %stored.stream_id, error = %e, "stored stream is unreadable")
                }
            }
        }
        Ok(json_reply(StatusCode::OK, &Value::Array(list)))
    }

    /// Stores `config` as the stream's configuration and tells the delivery registry.
    async fn save(&self, stored: &StoredStream, config: &StreamConfig) -> Result<(), SsfError> {
        let update = StreamUpdate {
            stream_id: stored.stream_id.clone(),
            config: serde_json::to_string(config)
                .map_err(|e| SsfError::Corrupt(stored.stream_id.clone(), e.to_string()))?,
        };
        if !self.ledger.update_stream(update).await? {
            return Err(SsfError::UnknownStream(stored.stream_id.clone()));
        }
        self.deliveries.upsert(&stored.stream_id, config);
        Ok(())
    }

    async fn change(
        &self,
        who: &Receiver,
        body: &[u8],
        replace: bool,
    ) -> Result<Response, SsfError> {
        let request = StreamRequest::parse(body)?;
        let (stored, config) = self.visible(who, request.stream_id()?).await?;
        let next = if replace {
            config.replace(&request, &self.issuer)?
        } else {
            config.patch(&request, &self.issuer)?
        };
        self.check_push(who, &next)?;
        self.save(&stored, &next).await?;
        let op = if replace { "replace" } else { "update" };
        self.audit("ssf_stream_updated", who, &stored, json!({"op": op}));
        Ok(json_reply(
            StatusCode::OK,
            &self.render(who, &stored, &next),
        ))
    }

    async fn delete(&self, who: &Receiver, query: Option<&str>) -> Result<Response, SsfError> {
        let id = query_stream_id(query).ok_or(StreamError::MissingStreamId)?;
        let (stored, _) = self.visible(who, &id).await?;
        if !self.ledger.delete_stream(&stored.stream_id).await? {
            return Err(SsfError::UnknownStream(id));
        }
        self.deliveries.remove(&stored.stream_id);
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&stored.stream_id);
        self.metrics.ssf.streams.dec();
        self.audit("ssf_stream_deleted", who, &stored, json!({}));
        Ok(no_content())
    }

    fn status_json(stream_id: &str, config: &StreamConfig) -> Value {
        let mut out = json!({"stream_id": stream_id, "status": config.status.as_str()});
        if let (Some(reason), Some(obj)) = (&config.reason, out.as_object_mut()) {
            obj.insert("reason".into(), json!(reason));
        }
        out
    }

    async fn read_status(&self, who: &Receiver, query: Option<&str>) -> Result<Response, SsfError> {
        let id = query_stream_id(query).ok_or(StreamError::MissingStreamId)?;
        let (stored, config) = self.visible(who, &id).await?;
        Ok(json_reply(
            StatusCode::OK,
            &Self::status_json(&stored.stream_id, &config),
        ))
    }

    async fn update_status(&self, who: &Receiver, body: &[u8]) -> Result<Response, SsfError> {
        let request: StatusRequest = parse(body)?;
        let id = request.stream_id.ok_or(StreamError::MissingStreamId)?;
        let status: StreamStatus = request.status.as_deref().unwrap_or_default().parse()?;
        let reason = short("reason", request.reason)?;
        let (stored, mut config) = self.visible(who, &id).await?;
        config.status = status;
        config.reason = reason;
        self.save(&stored, &config).await?;
        if status == StreamStatus::Disabled {
            let discarded = self.ledger.discard_sets(&stored.stream_id).await?;
            self.metrics.ssf.dropped.inc_by(discarded);
        }
        let fields = json!({"status": status.as_str(), "reason": config.reason});
        self.audit("ssf_stream_status", who, &stored, fields);
        Ok(json_reply(
            StatusCode::OK,
            &Self::status_json(&stored.stream_id, &config),
        ))
    }

    async fn verify(&self, who: &Receiver, body: &[u8]) -> Result<Response, SsfError> {
        let request: VerifyRequest = parse(body)?;
        let id = request.stream_id.ok_or(StreamError::MissingStreamId)?;
        let state = short("state", request.state)?;
        let (stored, config) = self.visible(who, &id).await?;
        if config.status == StreamStatus::Disabled {
            return Err(SsfError::Disabled);
        }
        self.note_verification(&stored.stream_id)?;
        let set = self.sets.verification(VerificationSet {
            stream_id: &stored.stream_id,
            stream: &config,
            state: state.as_deref(),
            position: self.ledger.last_sequence().await?,
            now_ms: self.now_ms(),
        })?;
        let done = self
            .ledger
            .enqueue_sets(EnqueueParams {
                sets: vec![set],
                max_pending: self.max_queue,
                through_sequence: None,
                durable: true,
            })
            .await?;
        self.metrics.ssf.queued.inc_by(done.queued);
        self.deliveries.wake(&stored.stream_id);
        Ok(no_content())
    }

    /// Records a verification request of `stream_id` now; fails with `TooSoon` when the last
    /// one was less than `min_verification_interval` ago.
    fn note_verification(&self, stream_id: &str) -> Result<(), SsfError> {
        let now = self.now_ms();
        let interval = i64::try_from(self.min_verification_interval.as_millis()).unwrap_or(0);
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = verified.get(stream_id)
            && now.saturating_sub(*last) < interval
        {
            return Err(SsfError::TooSoon(self.min_verification_interval.as_secs()));
        }
        verified.insert(stream_id.to_owned(), now);
        Ok(())
    }
}
