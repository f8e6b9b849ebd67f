//! Serving the HTTPS listener's connections (HTTP/1.1 and HTTP/2 on one port): the header-read
//! timeout, HTTP/2 keep-alive pings, and an idle timeout — a connection with no request in flight
//! for `idle_timeout` is closed gracefully (HTTP/2 GOAWAY, HTTP/1.1 close), as Vault's
//! `http_idle_timeout` does; pings alone do not keep it open. Shutdown closes every connection
//! gracefully and waits for their requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::TlsConn;

/// The default `[server] http_idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` at which the last request ended (or the connection opened).
    last_ms: AtomicU64,
}

/// Marks one request in flight until dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// Returns once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let since = Duration::from_millis(self.last_ms.load(Ordering::SeqCst));
            let wait = if self.in_flight.load(Ordering::SeqCst) == 0 {
                let deadline = self.start + since + timeout;
                if Instant::now() >= deadline {
                    return;
                }
                deadline - Instant::now()
            } else {
                timeout
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on each connection from `conns` until `shutdown`, then closes them
/// gracefully and returns once their requests are answered.
pub async fn serve(
    router: axum::Router,
    mut conns: tokio::sync::mpsc::Receiver<std::io::Result<TlsConn>>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A timer enables hyper's header-read timeout (slow clients cannot hold connections).
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    // Dead peers are found by pings (the first request has its own deadline:
    // tls::FIRST_REQUEST_TIMEOUT).
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let tracker = TaskTracker::new();
    loop {
        let conn = tokio::select! {
            () = shutdown.cancelled() => break,
            conn = conns.recv() => match conn {
                Some(Ok(conn)) => conn,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let activity = Activity::new();
        let counted = Arc::clone(&activity);
        let service = router
            .clone()
            .layer(axum::Extension(conn.info().clone()))
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let busy = counted.busy();
                    async move {
                        let response = next.run(request).await;
                        drop(busy);
                        response
                    }
                },
            ));
        let connection = builder
            .serve_connection(TokioIo::new(conn), TowerToHyperService::new(service))
            .into_owned();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = activity.idle_for(idle_timeout) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}
