//! The Shared Signals transmitter (OpenID SSF 1.0, CAEP 1.0; DESIGN.md "Revocation that
//! relying parties can enforce"): receivers create streams ([`management`]); every committed
//! revocation becomes a signed SET ([`events`]) queued in the ledger for each stream that wants
//! it ([`follower`]), and reaches the receiver by push ([`push`], RFC 8935) or poll ([`poll`],
//! RFC 8936) until it is acknowledged. [`discovery`] publishes the transmitter metadata,
//! [`delivery`] runs one push task per stream, [`reply`] renders refusals.
//!
//! The revoke path never waits on any of it: a Revoke returns once its rule is durable, and
//! the follower picks the rule up from the ledger's events.

pub mod delivery;
pub mod discovery;
pub mod error;
pub mod events;
pub mod follower;
pub mod management;
pub mod metrics;
pub mod poll;
pub mod push;
pub mod reply;
pub mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, post};
use bytes::Bytes;
use tessera_core::clock::SharedClock;
use tessera_core::mint::MintError;
use tessera_ledger::{Ledger, StreamLimits};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::delivery::Deliveries;
use self::events::SetBuilder;
use self::follower::Follower;
use self::management::{Management, Op};
use self::poll::Polls;
use self::push::{PushClient, PushContext};
use crate::api::caller::Callers;
use crate::audit::Audit;
use crate::config::SsfConfig;
use crate::metrics::Metrics;
use crate::signing::{JwtKeys, MintCas};
use crate::tls::PeerInfo;

/// Largest request body of the Shared Signals endpoints.
const MAX_BODY: usize = 256 * 1024;

/// Why the transmitter cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TransmitterError {
    #[error("[ssf] ca_file: {0}")]
    Roots(#[from] rustls::Error),
    #[error(transparent)]
    Random(#[from] MintError),
}

/// What the transmitter is made of.
pub struct TransmitterParts<'a> {
    pub config: &'a SsfConfig,
    /// `iss` of SETs and streams.
    pub issuer: String,
    /// Signs SETs (with the key that signs at the time).
    pub jwt: Arc<JwtKeys>,
    /// The mint CAs, for the `x509_issuer` of X.509 credential changes.
    pub cas: Arc<MintCas>,
    pub ledger: Arc<dyn Ledger>,
    pub callers: Callers,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// Stops the follower, push tasks and long polls.
    pub stopping: CancellationToken,
}

impl fmt::Debug for TransmitterParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransmitterParts")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A running transmitter: what its HTTP endpoints use.
#[derive(Debug, Clone)]
pub struct Transmitter {
    management: Arc<Management>,
    polls: Polls,
    discovery: Bytes,
    /// The follower and the push tasks.
    tasks: TaskTracker,
}

impl Transmitter {
    /// Builds the transmitter and starts following the ledger (push tasks start as the
    /// follower finds streams). Fails when `[ssf] ca_file` holds an unusable root or the random
    /// generator fails.
    pub fn start(p: TransmitterParts<'_>) -> Result<Transmitter, TransmitterError> {
        let sets = Arc::new(SetBuilder::new(
            Arc::clone(&p.jwt),
            p.issuer.clone(),
            Arc::clone(&p.cas),
        ));
        let push = PushContext {
            client: PushClient::new(&p.config.extra_roots)?,
            ledger: Arc::clone(&p.ledger),
            metrics: p.metrics.ssf.clone(),
            clock: Arc::clone(&p.clock),
            max_backoff: p.config.max_backoff,
            holder: tessera_core::mint::random_hex::<8>()?,
        };
        let tasks = TaskTracker::new();
        let deliveries = Arc::new(Deliveries::new(push, p.stopping.clone(), tasks.clone()));
        let follower = Follower {
            ledger: Arc::clone(&p.ledger),
            sets: Arc::clone(&sets),
            deliveries: Arc::clone(&deliveries),
            metrics: p.metrics.ssf.clone(),
            clock: Arc::clone(&p.clock),
            max_queue: p.config.max_queue,
        };
        tasks.spawn(follower.run(p.stopping.clone()));
        let management = Arc::new(Management {
            callers: p.callers,
            ledger: p.ledger,
            sets,
            deliveries,
            issuer: p.issuer.clone(),
            limits: StreamLimits {
                per_owner: p.config.max_streams_per_identity,
                total: p.config.max_streams,
            },
            max_queue: p.config.max_queue,
            min_verification_interval: p.config.min_verification_interval,
            push_hosts: stream::PushHosts::new(&p.config.push_hosts),
            audit: p.audit,
            metrics: p.metrics,
            clock: p.clock,
            verified: Mutex::new(HashMap::new()),
        });
        Ok(Transmitter {
            polls: Polls {
                management: Arc::clone(&management),
                stopping: p.stopping,
            },
            management,
            discovery: discovery::document(&p.issuer),
            tasks,
        })
    }

    /// Returns the tracker of the background tasks (they end once `stopping` fires), so a
    /// shutdown can wait for them before it closes the ledger.
    pub fn tasks(&self) -> TaskTracker {
        self.tasks.clone()
    }

    /// Returns the routes of the Shared Signals endpoints.
    pub fn routes(&self) -> Router {
        let discovery = self.discovery.clone();
        let polls = self.polls.clone();
        let poll = post(
            move |Extension(peer): Extension<PeerInfo>,
                  Path(stream_id): Path<String>,
                  headers: HeaderMap,
                  body: Bytes| async move {
                polls.handle(&stream_id, &peer, &headers, &body).await
            },
        );
        Router::new()
            .route(
                "/.well-known/ssf-configuration",
                get(move || async move { discovery_response(&discovery) }),
            )
            .route(
                "/ssf/streams",
                self.op(Op::Create, MethodFilter::POST)
                    .merge(self.op(Op::Read, MethodFilter::GET))
                    .merge(self.op(Op::Update, MethodFilter::PATCH))
                    .merge(self.op(Op::Replace, MethodFilter::PUT))
                    .merge(self.op(Op::Delete, MethodFilter::DELETE)),
            )
            .route(
                "/ssf/status",
                self.op(Op::ReadStatus, MethodFilter::GET)
                    .merge(self.op(Op::UpdateStatus, MethodFilter::POST)),
            )
            .route("/ssf/verify", self.op(Op::Verify, MethodFilter::POST))
            .route("/ssf/poll/{stream_id}", poll)
            .layer(DefaultBodyLimit::max(MAX_BODY))
    }

    /// Returns a route serving management operation `op` for the methods of `filter`.
    fn op(&self, op: Op, filter: MethodFilter) -> MethodRouter<()> {
        let m = Arc::clone(&self.management);
        let handler = move |Extension(peer): Extension<PeerInfo>,
                            RawQuery(query): RawQuery,
                            headers: HeaderMap,
                            body: Bytes| {
            let m = Arc::clone(&m);
            async move { m.handle(op, &peer, &headers, query.as_deref(), &body).await }
        };
        axum::routing::on(filter, handler)
    }
}

/// `GET /.well-known/ssf-configuration`.
fn discovery_response(body: &Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body.clone(),
    )
        .into_response()
}
