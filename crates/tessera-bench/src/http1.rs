//! A fixed pool of HTTP/1.1 keep-alive connections for the generator's HTTP scenarios (the
//! broker's `/token` over TLS, the peer server over plain HTTP). Each connection carries one
//! request at a time; a connection the target closed is reopened on next use.

use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Where requests go.
struct Target {
    /// `host:port` to connect to and to send as `Host`.
    authority: String,
    /// Request path, e.g. `/token`.
    path: String,
    /// TLS connector and the name to verify, or `None` for plain HTTP.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// A pool of keep-alive connections to one URL.
pub struct Http1Pool {
    target: Target,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    slots: Semaphore,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("authority", &self.target.authority)
            .finish_non_exhaustive()
    }
}

/// A response: status and whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Http1Pool {
    /// A pool of at most `connections` connections to `url` (`http://` or `https://`; an
    /// `https://` URL is verified against `roots`). Fails on a URL without host or port.
    pub fn new(
        url: &str,
        connections: usize,
        roots: &[CertificateDer<'static>],
    ) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
        let port = uri.port_u16().ok_or_else(|| format!("{url}: no port"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => Some((connector(roots)?, server_name(host)?)),
            _ => return Err(format!("{url}: scheme must be http or https")),
        };
        Ok(Http1Pool {
            target: Target {
                authority: format!("{host}:{port}"),
                path: uri.path().to_owned(),
                tls,
            },
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(connections.max(1)),
        })
    }

    /// POSTs `form` (already `application/x-www-form-urlencoded`) and returns the reply.
    /// Fails on a connection or protocol error; any status is a reply.
    pub async fn post_form(&self, form: String) -> Result<Reply, String> {
        let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let reused = idle.is_some();
        let mut sender = match idle {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let request = Request::post(self.target.path.as_str())
            .header(hyper::header::HOST, self.target.authority.as_str())
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| e.to_string())?;
        let response = match Self::send(&mut sender, request).await {
            Ok(response) => response,
            // The target closed an idle connection before the request left: it was not sent,
            // so sending it once on a new connection cannot duplicate it.
            Err((_, Some(request))) if reused => {
                sender = self.connect().await?;
                Self::send(&mut sender, request)
                    .await
                    .map_err(|(error, _)| error)?
            }
            Err((error, _)) => return Err(error),
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !sender.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(sender);
        }
        Ok(Reply { status, body })
    }

    /// Sends `request` on `sender`. On failure returns the error and, if it never left, the
    /// request.
    async fn send(
        sender: &mut SendRequest<Full<Bytes>>,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, (String, Option<Request<Full<Bytes>>>)>
    {
        if let Err(e) = sender.ready().await {
            return Err((e.to_string(), Some(request))); // closed while idle: nothing was sent
        }
        sender
            .try_send_request(request)
            .await
            .map_err(|mut e| (e.error().to_string(), e.take_message()))
    }

    /// Opens one connection and returns its sender.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect(&self.target.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.target.authority))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        match &self.target.tls {
            None => handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS to {}: {e}", self.target.authority))?;
                handshake(TokioIo::new(tls)).await
            }
        }
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A TLS client trusting only `roots`.
fn connector(roots: &[CertificateDer<'static>]) -> Result<tokio_rustls::TlsConnector, String> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(|e| e.to_string())?;
    }
    tessera_core::http_client::http1_connector(store).map_err(|e| e.to_string())
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| format!("{host}: {e}"))
}
