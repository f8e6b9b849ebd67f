//! Push delivery (RFC 8935): one task per push stream POSTs its queued SETs, oldest first, to
//! the stream's `endpoint_url` as `application/secevent+jwt` over HTTPS (rustls; the Mozilla
//! roots plus `[ssf] ca_file`; no redirects followed), on one kept-alive connection, with the
//! stream's `authorization_header` when it has one.
//!
//! A 2xx acknowledges the SET; a 400 whose `err` is `invalid_request` (or that says nothing
//! usable) rejects it for good; anything else — a connection or TLS failure, a timeout, another
//! status, a 400 naming a key, issuer, audience or authorization problem the receiver can fix —
//! is retried with exponential backoff (250 ms doubling up to `[ssf] max_backoff`), in order.
//! A task waits only on its own receiver, so a slow or dead receiver never delays minting or
//! other streams. With several replicas, only the holder of the stream's lease pushes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::{CertificateDer, ServerName};
use tessera_core::clock::SharedClock;
use tessera_ledger::{AckParams, LeaseParams, Ledger, PendingParams, PendingSet};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::SsfMetrics;
use super::stream::{AuthorizationHeader, Delivery, EndpointUrl, StreamConfig, StreamStatus};

/// Longest one push may take, connecting included.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read (an RFC 8935 error is small).
const MAX_RESPONSE: usize = 64 * 1024;
/// SETs read from the queue at a time.
const BATCH: usize = 64;
/// First wait after a failed push; it doubles up to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How long a push lease lasts, and how long before its end it is renewed.
const LEASE: Duration = Duration::from_secs(30);
const RENEW_BEFORE: Duration = Duration::from_secs(10);

/// Why a push will be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("connecting failed: {0}")]
    Network(String),
    #[error("no answer within {PUSH_TIMEOUT:?}")]
    Timeout,
    #[error("answered a redirect, which is not followed")]
    Redirect,
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("refused the SET with `{0}`")]
    Refused(String),
}

impl PushError {
    /// The `reason` label of `tessera_ssf_failed`.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::Network(_) => "network",
            PushError::Timeout => "timeout",
            PushError::Redirect => "redirect",
            PushError::Status(_) => "status",
            PushError::Refused(_) => "refused",
        }
    }
}

/// What a receiver did with a SET it answered about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// 2xx: acknowledged.
    Accepted,
    /// 400 `invalid_request` (or no usable error): rejected for good, with the receiver's words.
    Rejected(String),
}

/// The HTTPS client of push delivery; cheap to clone.
#[derive(Clone)]
pub struct PushClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for PushClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushClient").finish_non_exhaustive()
    }
}

/// A kept-alive connection to one receiver.
struct Connection {
    authority: String,
    sender: SendRequest<Full<Bytes>>,
}

impl PushClient {
    /// Trusts the Mozilla roots plus `extra_roots`. Fails when a root is unusable.
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in extra_roots {
            roots.add(root.clone())?;
        }
        Ok(PushClient {
            tls: tessera_core::http_client::http1_connector(roots)?,
        })
    }

    /// POSTs `set` to `url`, reusing `conn` when it is open to the same host. Returns what the
    /// receiver did with it; fails (dropping the connection) when it must be retried.
    async fn push(
        &self,
        conn: &mut Option<Connection>,
        url: &EndpointUrl,
        authorization: Option<&AuthorizationHeader>,
        set: &str,
    ) -> Result<Pushed, PushError> {
        let reused = conn.is_some();
        let mut sent = self.send_timed(conn, url, authorization, set).await;
        if reused && matches!(sent, Err(PushError::Network(_))) {
            // The receiver may have closed the kept-alive connection: one retry on a new one.
            sent = self.send_timed(conn, url, authorization, set).await;
        }
        sent
    }

    /// [`PushClient::send`] bounded by [`PUSH_TIMEOUT`]; drops the connection on failure.
    async fn send_timed(
        &self,
        conn: &mut Option<Connection>,
        url: &EndpointUrl,
        authorization: Option<&AuthorizationHeader>,
        set: &str,
    ) -> Result<Pushed, PushError> {
        let sent = tokio::time::timeout(PUSH_TIMEOUT, self.send(conn, url, authorization, set))
            .await
            .unwrap_or(Err(PushError::Timeout));
        if sent.is_err() {
            *conn = None;
        }
        sent
    }

    async fn send(
        &self,
        conn: &mut Option<Connection>,
        url: &EndpointUrl,
        authorization: Option<&AuthorizationHeader>,
        set: &str,
    ) -> Result<Pushed, PushError> {
        let uri: hyper::Uri = url
            .as_str()
            .parse()
            .map_err(|_| PushError::Network("bad URL".into()))?;
        let authority = uri.authority().map_or("", |a| a.as_str()).to_owned();
        let reusable = conn
            .as_ref()
            .is_some_and(|c| c.authority == authority && !c.sender.is_closed());
        if !reusable {
            *conn = Some(self.connect(&uri, authority.clone()).await?);
        }
        let Some(c) = conn.as_mut() else {
            return Err(PushError::Network("no connection".into()));
        };
        c.sender
            .ready()
            .await
            .map_err(|e| PushError::Network(e.to_string()))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/secevent+jwt")
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "tessera");
        if let Some(value) = authorization {
            request = request.header(hyper::header::AUTHORIZATION, value.expose());
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(set.as_bytes())))
            .map_err(|e| PushError::Network(e.to_string()))?;
        let response = c
            .sender
            .send_request(request)
            .await
            .map_err(|e| PushError::Network(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        classify(status.as_u16(), &body)
    }

    /// Opens a TLS connection (HTTP/1.1) to `uri`'s host.
    async fn connect(&self, uri: &hyper::Uri, authority: String) -> Result<Connection, PushError> {
        let host = uri.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| PushError::Network(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name =
            ServerName::try_from(host).map_err(|_| PushError::Network("bad host name".into()))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| PushError::Network(format!("TLS: {e}")))?;
        let (sender, driver) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| PushError::Network(e.to_string()))?;
        tokio::spawn(driver);
        Ok(Connection { authority, sender })
    }
}

/// Returns what a receiver's answer means (RFC 8935 §2.3, §2.4).
fn classify(status: u16, body: &[u8]) -> Result<Pushed, PushError> {
    match status {
        200..=299 => Ok(Pushed::Accepted),
        300..=399 => Err(PushError::Redirect),
        400 => {
            let error: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let err = error["err"].as_str().unwrap_or("invalid_request");
            let description = error["description"].as_str().unwrap_or_default();
            match err {
                "invalid_key"
                | "invalid_issuer"
                | "invalid_audience"
                | "authentication_failed"
                | "access_denied" => Err(PushError::Refused(err.to_owned())),
                other => Ok(Pushed::Rejected(
                    format!("{other}: {description}")
                        .chars()
                        .take(300)
                        .collect(),
                )),
            }
        }
        other => Err(PushError::Status(other)),
    }
}

/// What every push task shares.
#[derive(Clone)]
pub struct PushContext {
    pub client: PushClient,
    pub ledger: Arc<dyn Ledger>,
    pub metrics: SsfMetrics,
    pub clock: SharedClock,
    pub max_backoff: Duration,
    /// This replica's lease holder id.
    pub holder: String,
}

impl std::fmt::Debug for PushContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushContext")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// One stream's push task: its id, its configuration as it changes, the signal that SETs were
/// queued, and when to stop.
#[derive(Debug)]
pub struct PushTask {
    pub stream_id: String,
    pub config: watch::Receiver<StreamConfig>,
    pub wake: watch::Receiver<u64>,
    pub stop: CancellationToken,
}

impl PushContext {
    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now().as_millis()).unwrap_or(i64::MAX)
    }

    /// Pushes the stream's SETs until `task.stop` fires.
    pub async fn run(self: Arc<Self>, mut task: PushTask) {
        let mut conn = None;
        let mut backoff = FIRST_BACKOFF;
        let mut lease_until = 0i64;
        while !task.stop.is_cancelled() {
            let config = task.config.borrow_and_update().clone();
            if !matches!(config.delivery, Delivery::Push { .. }) {
                return; // delivery changed to poll: the registry stops this task
            }
            if config.status != StreamStatus::Enabled {
                self.idle(&mut task, None).await;
                continue;
            }
            if !self.hold_lease(&task.stream_id, &mut lease_until).await {
                self.idle(&mut task, Some(RENEW_BEFORE)).await;
                continue;
            }
            task.wake.borrow_and_update();
            let batch = match self.pending(&task.stream_id).await {
                Some(batch) if batch.is_empty() => {
                    self.idle(&mut task, Some(RENEW_BEFORE)).await;
                    continue;
                }
                Some(batch) => batch,
                None => Vec::new(),
            };
            // Another replica may have changed the stream since the registry last synced:
            // push where (and whether) its configuration says now.
            let Some(config) = self.current(&task.stream_id, config).await else {
                return; // deleted: the registry stops this task
            };
            let Delivery::Push {
                endpoint_url,
                authorization_header,
            } = &config.delivery
            else {
                // Now polled: wait for the registry to stop this task.
                self.idle(&mut task, Some(RENEW_BEFORE)).await;
                continue;
            };
            if config.status != StreamStatus::Enabled {
                self.idle(&mut task, Some(RENEW_BEFORE)).await;
                continue;
            }
            let target = Target {
                url: endpoint_url,
                authorization: authorization_header.as_ref(),
            };
            let delivered =
                !batch.is_empty() && self.deliver(&task, &mut conn, target, &batch).await;
            if delivered {
                backoff = FIRST_BACKOFF;
            } else {
                self.pause(&task, backoff).await;
                backoff = (backoff * 2).min(self.max_backoff);
            }
        }
        if lease_until > 0 {
            self.release_lease(&task.stream_id).await;
        }
    }

    /// Lets another replica take the stream's push lease at once (this one is stopping).
    async fn release_lease(&self, stream_id: &str) {
        let now_ms = self.now_ms();
        let params = LeaseParams {
            stream_id: stream_id.to_owned(),
            holder: self.holder.clone(),
            now_ms,
            until_ms: now_ms.saturating_sub(1),
        };
        if let Err(e) = self.ledger.lease_stream(params).await {
            tracing::debug!(stream_id, error = %e, "releasing the push lease failed");
        }
    }

    /// Waits until SETs are queued, the configuration changes, `limit` passes, or the task
    /// stops.
    async fn idle(&self, task: &mut PushTask, limit: Option<Duration>) {
        let limit = limit.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            () = task.stop.cancelled() => {}
            _ = task.wake.changed() => {}
            _ = task.config.changed() => {}
            () = tokio::time::sleep(limit) => {}
        }
    }

    /// Waits `delay` (after a failure), or until the configuration changes or the task stops.
    async fn pause(&self, task: &PushTask, delay: Duration) {
        let mut config = task.config.clone();
        tokio::select! {
            () = task.stop.cancelled() => {}
            _ = config.changed() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }

    /// Takes or renews the stream's lease when it ends within [`RENEW_BEFORE`]; returns whether
    /// this replica holds it.
    async fn hold_lease(&self, stream_id: &str, until: &mut i64) -> bool {
        let now_ms = self.now_ms();
        let renew_ms = i64::try_from(RENEW_BEFORE.as_millis()).unwrap_or(i64::MAX);
        if *until - now_ms > renew_ms {
            return true;
        }
        let until_ms = now_ms.saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(0));
        let params = LeaseParams {
            stream_id: stream_id.to_owned(),
            holder: self.holder.clone(),
            now_ms,
            until_ms,
        };
        match self.ledger.lease_stream(params).await {
            Ok(true) => {
                *until = until_ms;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(stream_id, error = %e, "taking the push lease failed");
                false
            }
        }
    }

    /// Returns the stream's configuration as the ledger holds it now; `known` when it cannot be
    /// read (or is unreadable), `None` when the stream was deleted.
    async fn current(&self, stream_id: &str, known: StreamConfig) -> Option<StreamConfig> {
        match self.ledger.stream(stream_id).await {
            Ok(Some(stored)) => Some(serde_json::from_str(&stored.config).unwrap_or(known)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(stream_id, error = %e, "re-reading the stream failed");
                Some(known)
            }
        }
    }

    /// Returns the next SETs to push, or `None` when the ledger cannot be read.
    async fn pending(&self, stream_id: &str) -> Option<Vec<PendingSet>> {
        let params = PendingParams {
            stream_id: stream_id.to_owned(),
            limit: BATCH,
        };
        match self.ledger.pending_sets(params).await {
            Ok(batch) => Some(batch),
            Err(e) => {
                tracing::warn!(stream_id, error = %e, "reading queued SETs failed");
                None
            }
        }
    }

    /// Pushes `batch` in order until one must be retried (or the task stops), then
    /// acknowledges what the receiver answered; returns whether every SET was answered.
    async fn deliver(
        &self,
        task: &PushTask,
        conn: &mut Option<Connection>,
        target: Target<'_>,
        batch: &[PendingSet],
    ) -> bool {
        let stream_id = task.stream_id.as_str();
        let mut answered = Vec::with_capacity(batch.len());
        let mut complete = true;
        for set in batch {
            let pushed = tokio::select! {
                pushed = self.client.push(conn, target.url, target.authorization, &set.set) => pushed,
                () = task.stop.cancelled() => {
                    complete = false;
                    break;
                }
            };
            match pushed {
                Ok(Pushed::Accepted) => {
                    let waited = self.now_ms().saturating_sub(set.queued_at_ms).max(0);
                    self.metrics.push_seconds.observe(waited as f64 / 1000.0);
                    self.metrics.delivered("push", 1);
                    answered.push(set.jti.clone());
                }
                Ok(Pushed::Rejected(why)) => {
                    tracing::warn!(stream_id, jti = %set.jti, why = %why, "receiver rejected a SET; it is dropped");
                    self.metrics.failed("rejected");
                    answered.push(set.jti.clone());
                }
                Err(e) => {
                    // The host only: receivers may put a secret in the path or query.
                    let host = target.url.host().unwrap_or_default();
                    tracing::warn!(stream_id, jti = %set.jti, host, error = %e, "push failed; will retry");
                    self.metrics.failed(e.reason());
                    complete = false;
                    break;
                }
            }
        }
        let params = AckParams {
            stream_id: stream_id.to_owned(),
            jtis: answered,
        };
        if let Err(e) = self.ledger.ack_sets(params).await {
            tracing::warn!(stream_id, error = %e, "recording acknowledged SETs failed");
        }
        complete
    }
}

/// Where one stream's SETs go.
#[derive(Clone, Copy)]
struct Target<'a> {
    url: &'a EndpointUrl,
    authorization: Option<&'a AuthorizationHeader>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_accepts_and_an_invalid_request_rejects_for_good() {
        assert_eq!(classify(202, b""), Ok(Pushed::Accepted));
        let body = br#"{"err":"invalid_request","description":"bad jti"}"#;
        assert_eq!(
            classify(400, body),
            Ok(Pushed::Rejected("invalid_request: bad jti".into()))
        );
        assert!(matches!(
            classify(400, b"not json"),
            Ok(Pushed::Rejected(_))
        ));
    }

    #[test]
    fn fixable_refusals_redirects_and_other_statuses_are_retried() {
        let body = br#"{"err":"invalid_audience","description":"who?"}"#;
        assert_eq!(
            classify(400, body),
            Err(PushError::Refused("invalid_audience".into()))
        );
        assert_eq!(classify(302, b""), Err(PushError::Redirect));
        assert_eq!(classify(503, b""), Err(PushError::Status(503)));
        assert_eq!(classify(401, b""), Err(PushError::Status(401)));
    }
}
