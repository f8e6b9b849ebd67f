//! TLS for both listeners: our own rustls `ServerConfig` (aws-lc-rs provider) that requests,
//! but does not require, a client certificate. The handshake only proves the client holds the
//! key of the certificate it sent; the certificate is then verified as an X509-SVID once per
//! connection ([`tessera_core::attest::X509SvidVerifier`]) and the outcome travels with the connection,
//! so a refused SVID gets an error message that says why.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use tessera_core::attest::{PeerCert, X509SvidVerifier};
use tessera_core::clock::SharedClock;
use tessera_core::keys::SecretKey;

use crate::coalesce::CoalescedWriter;
use crate::conns::{Admitted, Gate, Shed};

/// TLS handshakes in progress at once, per listener.
pub const MAX_HANDSHAKES: usize = 1024;
/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long after its handshake a connection may take to send its first bytes (a request, or
/// the HTTP/2 preface) before it is closed.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What the transport knows about the caller, attached to every request on the connection.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The client certificate, if one was presented, and the outcome of verifying it.
    pub x509: Option<Arc<PeerCert>>,
}

/// Requests client certificates, accepts any whose handshake signature verifies, and leaves
/// path validation and SPIFFE rules to the per-connection check.
#[derive(Debug)]
struct RequestClientCert {
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Parameters of [`server_config`].
#[derive(Debug)]
pub struct ServerConfigParams<'a> {
    pub cert_chain: &'a [CertificateDer<'static>],
    pub key: &'a SecretKey,
    pub verifier: &'a X509SvidVerifier,
    pub alpn: &'a [&'a [u8]],
}

/// Builds a rustls server config with the aws-lc-rs provider. Fails when the certificate and key
/// do not match or the key type is unsupported.
pub fn server_config(p: ServerConfigParams<'_>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = RequestClientCert {
        hints: p
            .verifier
            .root_subjects()
            .iter()
            .map(|s| DistinguishedName::in_sequence(s))
            .collect(),
        algs: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(p.cert_chain.to_vec(), p.key.to_rustls())?;
    config.alpn_protocols = p.alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A server-side TLS connection with what was learned about its peer.
#[derive(Debug)]
pub struct TlsConn {
    /// Writes are held until flushed (`coalesce`): one TLS record per flush.
    inner: CoalescedWriter<TlsStream<TcpStream>>,
    info: PeerInfo,
    /// Until the first bytes arrive: when the connection is closed if none have.
    first_read: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's place in its listener, given back when it closes.
    _place: Admitted,
}

impl TlsConn {
    /// Returns what is known about the peer.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(self.inner.get_mut()).poll_read(cx, buf);
        if let Some(deadline) = self.first_read.as_mut() {
            if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                self.first_read = None;
            } else if read.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the first-request deadline",
                )));
            }
        }
        read
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// Parameters of [`accept`].
#[derive(Clone)]
pub struct AcceptParams {
    pub acceptor: TlsAcceptor,
    /// Verifies each connection's client certificate as an X509-SVID, once, with the
    /// verifier in force at its handshake (trust bundles reload).
    pub verifier: Arc<dyn Fn() -> Arc<X509SvidVerifier> + Send + Sync>,
    pub clock: SharedClock,
    pub shutdown: CancellationToken,
    /// The connections this listener may hold.
    pub gate: Arc<Gate>,
}

impl std::fmt::Debug for AcceptParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptParams").finish_non_exhaustive()
    }
}

/// Accepts connections on `listener` until `shutdown` fires, completing TLS handshakes
/// concurrently; returns a receiver of ready connections. Failed handshakes are logged at debug
/// level and dropped; they never stop the loop.
pub fn accept(
    listener: TcpListener,
    p: AcceptParams,
) -> mpsc::Receiver<Result<TlsConn, io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                () = p.shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Past a limit the connection is closed at once: the loop never waits, so
            // connections that send nothing cannot keep others from being accepted.
            let place = match p.gate.admit(remote.ip()) {
                Ok(place) => place,
                Err(reason) => {
                    tracing::debug!(%remote, reason = reason.as_str(), "connection shed");
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                p.gate.count(Shed::Handshakes);
                tracing::debug!(%remote, "connection shed: too many TLS handshakes under way");
                continue;
            };
            let tx = tx.clone();
            let p = p.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, p.acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let info = peer_info(&stream, remote, &p);
                        let conn = TlsConn {
                            inner: CoalescedWriter::new(stream),
                            info,
                            first_read: Some(Box::pin(tokio::time::sleep(FIRST_REQUEST_TIMEOUT))),
                            _place: place,
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

fn peer_info(stream: &TlsStream<TcpStream>, remote: SocketAddr, p: &AcceptParams) -> PeerInfo {
    let x509 = stream
        .get_ref()
        .1
        .peer_certificates()
        .filter(|c| !c.is_empty())
        .map(|chain| {
            let cert = PeerCert::verify(chain, &(p.verifier)(), p.clock.unix_seconds());
            if let Err(e) = cert.at_handshake() {
                tracing::debug!(%remote, error = %e, "client certificate is not a valid X509-SVID");
            }
            Arc::new(cert)
        });
    PeerInfo {
        remote_addr: Some(remote),
        x509,
    }
}
