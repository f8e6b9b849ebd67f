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

/// Why a pool could not be built or a request got no reply. `Display` names the URL or the
/// `host:port`.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    #[error("{url}: {source}")]
    InvalidUrl {
        url: String,
        source: hyper::http::uri::InvalidUri,
    },
    #[error("{url}: no host")]
    NoHost { url: String },
    #[error("{url}: no port")]
    NoPort { url: String },
    #[error("{url}: scheme must be http or https")]
    Scheme { url: String },
    #[error("{url}: TLS client configuration: {source}")]
    TlsConfig { url: String, source: rustls::Error },
    #[error("{host}: {source}")]
    ServerName {
        host: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("{authority}: {source}")]
    PoolClosed {
        authority: String,
        source: tokio::sync::AcquireError,
    },
    #[error("building the request to {authority}: {source}")]
    Request {
        authority: String,
        source: hyper::http::Error,
    },
    #[error("connecting to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("{authority}: setting TCP_NODELAY: {source}")]
    NoDelay {
        authority: String,
        source: std::io::Error,
    },
    #[error("TLS to {authority}: {source}")]
    Tls {
        authority: String,
        source: std::io::Error,
    },
    #[error("HTTP/1.1 handshake with {authority}: {source}")]
    Handshake {
        authority: String,
        source: hyper::Error,
    },
    #[error("{authority}: {source}")]
    Send {
        authority: String,
        source: hyper::Error,
    },
    #[error("reading the reply from {authority}: {source}")]
    Body {
        authority: String,
        source: hyper::Error,
    },
}

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
    /// `https://` URL is verified against `roots`).
    ///
    /// Fails, naming `url`, on a URL that does not parse or has no host or port
    /// ([`Http1Error::InvalidUrl`], [`Http1Error::NoHost`], [`Http1Error::NoPort`]), a scheme
    /// other than `http` or `https` ([`Http1Error::Scheme`]), a root the TLS client refuses
    /// ([`Http1Error::TlsConfig`]) or a host that is not a TLS server name
    /// ([`Http1Error::ServerName`]).
    pub fn new(
        url: &str,
        connections: usize,
        roots: &[CertificateDer<'static>],
    ) -> Result<Self, Http1Error> {
        let uri: Uri = url.parse().map_err(|source| Http1Error::InvalidUrl {
            url: url.to_owned(),
            source,
        })?;
        let host = uri.host().ok_or_else(|| Http1Error::NoHost {
            url: url.to_owned(),
        })?;
        let port = uri.port_u16().ok_or_else(|| Http1Error::NoPort {
            url: url.to_owned(),
        })?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let connector = connector(roots).map_err(|source| Http1Error::TlsConfig {
                    url: url.to_owned(),
                    source,
                })?;
                Some((connector, server_name(host)?))
            }
            _ => {
                return Err(Http1Error::Scheme {
                    url: url.to_owned(),
                });
            }
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
    /// Any status is a reply.
    ///
    /// Fails, naming the target's `host:port`, on a connection error ([`Http1Error::Connect`],
    /// [`Http1Error::NoDelay`], [`Http1Error::Tls`], [`Http1Error::Handshake`]) or a protocol
    /// error ([`Http1Error::Send`], [`Http1Error::Body`]); [`Http1Error::Request`] and
    /// [`Http1Error::PoolClosed`] do not happen in practice.
    pub async fn post_form(&self, form: String) -> Result<Reply, Http1Error> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|source| Http1Error::PoolClosed {
                authority: self.target.authority.clone(),
                source,
            })?;
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
            .map_err(|source| Http1Error::Request {
                authority: self.target.authority.clone(),
                source,
            })?;
        let response = match Self::send(&mut sender, request).await {
            Ok(response) => response,
            // The target closed an idle connection before the request left: it was not sent,
            // so sending it once on a new connection cannot duplicate it.
            Err((_, Some(request))) if reused => {
                sender = self.connect().await?;
                Self::send(&mut sender, request)
                    .await
                    .map_err(|(error, _)| self.send_error(error))?
            }
            Err((error, _)) => return Err(self.send_error(error)),
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| Http1Error::Body {
                authority: self.target.authority.clone(),
                source,
            })?
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
    ) -> Result<hyper::Response<hyper::body::Incoming>, (hyper::Error, Option<Request<Full<Bytes>>>)>
    {
        if let Err(e) = sender.ready().await {
            return Err((e, Some(request))); // closed while idle: nothing was sent
        }
        sender.try_send_request(request).await.map_err(|mut e| {
            let message = e.take_message();
            (e.into_error(), message)
        })
    }

    /// Returns `source` as a send error naming the target.
    fn send_error(&self, source: hyper::Error) -> Http1Error {
        Http1Error::Send {
            authority: self.target.authority.clone(),
            source,
        }
    }

    /// Opens one connection and returns its sender.
    ///
    /// Fails, naming the target, with [`Http1Error::Connect`], [`Http1Error::NoDelay`],
    /// [`Http1Error::Tls`] or [`Http1Error::Handshake`].
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Http1Error> {
        let authority = &self.target.authority;
        let tcp = TcpStream::connect(authority)
            .await
            .map_err(|source| Http1Error::Connect {
                authority: authority.clone(),
                source,
            })?;
        tcp.set_nodelay(true)
            .map_err(|source| Http1Error::NoDelay {
                authority: authority.clone(),
                source,
            })?;
        let sender = match &self.target.tls {
            None => handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| Http1Error::Tls {
                        authority: authority.clone(),
                        source,
                    })?;
                handshake(TokioIo::new(tls)).await
            }
        };
        sender.map_err(|source| Http1Error::Handshake {
            authority: authority.clone(),
            source,
        })
    }
}

/// Runs the HTTP/1.1 client handshake on `io` and spawns the connection. Fails with hyper's
/// error if the handshake fails.
async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A TLS client trusting only `roots`. Fails if a root is not a usable trust anchor or the
/// client cannot be configured.
fn connector(
    roots: &[CertificateDer<'static>],
) -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    tessera_core::http_client::http1_connector(store)
}

/// `host` (a bracketed IPv6 literal too) as a TLS server name. Fails with
/// [`Http1Error::ServerName`] naming `host` if it is neither a DNS name nor an IP address.
fn server_name(host: &str) -> Result<ServerName<'static>, Http1Error> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|source| Http1Error::ServerName {
        host: host.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_fails_naming_it() {
        for (url, error) in [
            ("ftp://127.0.0.1:1/token", "scheme must be http or https"),
            ("http://127.0.0.1/token", "no port"),
        ] {
            let message = Http1Pool::new(url, 1, &[]).unwrap_err().to_string();
            assert_eq!(message, format!("{url}: {error}"));
        }
    }

    #[tokio::test]
    async fn a_refused_connection_fails_naming_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let pool = Http1Pool::new(&format!("http://{addr}/token"), 1, &[]).unwrap();
        let error = pool.post_form(String::new()).await.unwrap_err();
        assert!(matches!(error, Http1Error::Connect { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("connecting to {addr}: ")),
            "{error}"
        );
    }
}
