//! A real RFC 8935 push receiver for the tests: HTTPS (rustls) with the fixture's `localhost`
//! server certificate (the broker trusts it through `[ssf] ca_file`), answering each POSTed SET
//! as its mode says: 202 (accept), 503 (fail), or never (hang).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tessera_testkit::harness::Fixture;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    Fail,
    Hang,
}

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// SETs answered 202, in order.
    pub accepted: Vec<String>,
    /// Requests received in any mode.
    pub requests: usize,
    /// The `authorization` and `content-type` headers of the last request.
    pub authorization: Option<String>,
    pub content_type: Option<String>,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    pub mode: Arc<Mutex<Mode>>,
    pub seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    stop: CancellationToken,
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub async fn start(fx: &Fixture, mode: Mode) -> Receiver {
        Self::start_on(fx, "127.0.0.1:0".parse().unwrap(), mode).await
    }

    /// Starts a receiver on `addr` (the port of a stopped one, to come back after an outage).
    pub async fn start_on(fx: &Fixture, addr: SocketAddr, mode: Mode) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            seen: Arc::new(Mutex::new(Seen::default())),
            changed: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(fx));
        let serve = Serve {
            mode: Arc::clone(&receiver.mode),
            seen: Arc::clone(&receiver.seen),
            changed: Arc::clone(&receiver.changed),
        };
        let stop = receiver.stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(_) => continue,
                    },
                };
                let (acceptor, serve, stop) = (acceptor.clone(), serve.clone(), stop.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request| {
                        let serve = serve.clone();
                        async move { serve.answer(request).await }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(tls), service);
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = connection => {}
                    }
                });
            }
        });
        receiver
    }

    /// The push endpoint URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/events", self.addr.port())
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Returns how many SETs were accepted.
    pub fn accepted(&self) -> usize {
        self.seen.lock().unwrap().accepted.len()
    }

    /// Waits until `count` SETs were accepted (at most 60 s, so a broken test ends) and
    /// returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<String> {
        self.wait_until(|seen| seen.accepted.len() >= count).await;
        self.seen.lock().unwrap().accepted.clone()
    }

    /// Waits until `done` holds for what was seen (at most 60 s).
    pub async fn wait_until(&self, done: impl Fn(&Seen) -> bool) {
        let waiting = async {
            loop {
                let notified = self.changed.notified();
                if done(&self.seen.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("the receiver did not see what was expected within 60 s");
    }

    /// Stops listening and drops every connection (the broker sees a dead receiver).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Clone)]
struct Serve {
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
}

impl Serve {
    async fn answer(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (authorization, content_type) = (header("authorization"), header("content-type"));
        let body = request.into_body().collect().await?.to_bytes();
        let mode = *self.mode.lock().unwrap();
        {
            let mut seen = self.seen.lock().unwrap();
            seen.requests += 1;
            seen.authorization = authorization;
            seen.content_type = content_type;
            if mode == Mode::Accept {
                seen.accepted
                    .push(String::from_utf8(body.to_vec()).unwrap());
            }
        }
        self.changed.notify_waiters();
        let status = match mode {
            Mode::Accept => 202,
            Mode::Fail => 503,
            Mode::Hang => {
                std::future::pending::<()>().await;
                500
            }
        };
        Ok(hyper::Response::builder()
            .status(status)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap())
    }
}

/// The fixture's `localhost` server certificate and key, as a rustls server config.
fn tls_config(fx: &Fixture) -> Arc<rustls::ServerConfig> {
    let cert = rustls::pki_types::CertificateDer::from(fx.material.server.cert_der.clone());
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(fx.material.server.key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
