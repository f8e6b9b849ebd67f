//! rustls verifiers for workloads and relying parties that speak mTLS with X.509-SVIDs: the
//! peer's chain must validate against a trust domain bundle (RFC 5280, rustls-webpki), obey the
//! X509-SVID leaf rules, and — for a server — carry the SPIFFE ID the client expects. SPIFFE
//! authenticates by URI SAN, not by DNS name, so the server name in the handshake is ignored.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use tessera_core::attest::{BundleError, Usage, X509SvidVerifier};
use tessera_core::spiffe_id::SpiffeId;

/// Verifies a server's X509-SVID against one trust domain bundle and an expected SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    svids: X509SvidVerifier,
    expected: SpiffeId,
    algs: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// Trusts `roots` (DER) of `expected`'s trust domain and accepts only `expected`. Fails when
    /// a root cannot serve as a trust anchor.
    pub fn new(
        expected: SpiffeId,
        roots: &[CertificateDer<'static>],
    ) -> Result<Arc<Self>, BundleError> {
        let svids = X509SvidVerifier::for_bundle(expected.trust_domain_name(), roots)?;
        let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        Ok(Arc::new(SpiffeServerVerifier {
            svids,
            expected,
            algs,
        }))
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let peer = self
            .svids
            .verify_for(&chain, now, Usage::ServerAuth)
            .map_err(|e| rustls::Error::General(format!("server X509-SVID refused: {e}")))?;
        if peer.identity != self.expected {
            return Err(rustls::Error::General(format!(
                "server is {}, expected {}",
                peer.identity, self.expected
            )));
        }
        Ok(ServerCertVerified::assertion())
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
