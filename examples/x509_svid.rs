//! A workload that keeps its own key: it makes a key and CSR, gets an X.509-SVID from a running
//! dev broker (`cargo run -- serve --dev`), then serves mTLS with it to a client that verifies the
//! server's chain with the returned trust bundle and checks its SPIFFE ID (and the reverse: the
//! server verifies the client's SVID against the same bundle).
//!
//! ```text
//! cargo run --example x509_svid              # or: -- OUT_DIR to also write the SVID as PEM
//! ```

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tessera_client::spiffe_tls::SpiffeServerVerifier;
use tessera_proto::MintX509Request;
use tessera_proto::broker_client::BrokerClient;
use tessera_testkit::dev::WORKLOAD_ID;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// An SVID with its private key.
struct Svid {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    bundle: Vec<CertificateDer<'static>>,
}

/// Makes a fresh P-256 key and CSR and has the broker certify it.
async fn fetch_svid(client: &mut BrokerClient<tonic::transport::Channel>) -> Result<Svid, Error> {
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
    let reply = client
        .mint_x509(MintX509Request {
            csr: csr.der().to_vec(),
            destination: "https://ledger.example.org".into(),
            purpose: "ledger:write".into(),
            ttl_seconds: 300,
        })
        .await?
        .into_inner();
    println!(
        "minted X.509-SVID serial {} expiring at {}",
        reply.credential_id, reply.expires_at
    );
    Ok(Svid {
        chain: reply
            .cert_chain
            .into_iter()
            .map(CertificateDer::from)
            .collect(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        bundle: reply
            .trust_bundle
            .into_iter()
            .map(CertificateDer::from)
            .collect(),
    })
}

/// Writes `svid.pem` (chain), `svid-key.pem` and `bundle.pem` into `dir`, for other TLS stacks
/// (`openssl verify -CAfile bundle.pem -untrusted svid.pem svid.pem`).
fn write_pem(dir: &std::path::Path, svid: &Svid) -> Result<(), Error> {
    use tessera_testkit::pki::pem;
    std::fs::create_dir_all(dir)?;
    let chain: String = svid.chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
    let bundle: String = svid.bundle.iter().map(|c| pem("CERTIFICATE", c)).collect();
    std::fs::write(dir.join("svid.pem"), chain)?;
    std::fs::write(
        dir.join("svid-key.pem"),
        pem("PRIVATE KEY", svid.key.secret_der()),
    )?;
    std::fs::write(dir.join("bundle.pem"), bundle)?;
    println!("wrote {}/svid.pem, svid-key.pem, bundle.pem", dir.display());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(
            "certs-dev/tls-ca.pem",
        )?))
        .identity(Identity::from_pem(
            std::fs::read("certs-dev/workload.pem")?,
            std::fs::read("certs-dev/workload-key.pem")?,
        ))
        .domain_name("localhost");
    let channel = Endpoint::from_static("https://127.0.0.1:8443")
        .tls_config(tls)?
        .connect()
        .await?;
    let mut broker = BrokerClient::new(channel);
    let server_svid = fetch_svid(&mut broker).await?;
    if let Some(dir) = std::env::args().nth(1) {
        write_pem(std::path::Path::new(&dir), &server_svid)?;
    }
    let client_svid = fetch_svid(&mut broker).await?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

    // Server: its minted SVID; clients must present an SVID chaining to the bundle.
    let mut roots = rustls::RootCertStore::empty();
    for root in &server_svid.bundle {
        roots.add(root.clone())?;
    }
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()?;
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(server_svid.chain, server_svid.key)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut request = [0u8; 5];
        tls.read_exact(&mut request).await?;
        tls.write_all(b"hello from the SVID server").await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });

    // Client: verifies the server's chain against the bundle and its SPIFFE ID, not a DNS name.
    let verifier = SpiffeServerVerifier::new(WORKLOAD_ID.parse()?, &client_svid.bundle)?;
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(client_svid.chain, client_svid.key)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let mut tls = connector
        .connect(ServerName::try_from("workload.invalid")?, tcp)
        .await?;
    tls.write_all(b"hello").await?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await?;
    server.await??;
    println!("mTLS with minted SVIDs on both ends: server said {reply:?}");
    Ok(())
}
