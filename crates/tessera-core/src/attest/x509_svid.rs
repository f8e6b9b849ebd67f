//! X509-SVID verification (`standards.md` §2.7): RFC 5280 path validation (rustls-webpki) against
//! the bundle of the SVID's own trust domain, plus the SPIFFE leaf rules: exactly one URI SAN that
//! is a SPIFFE ID with a path, `cA=false`, keyUsage present with digitalSignature and without
//! keyCertSign/cRLSign.
//!
//! The TLS layer accepts any client certificate whose handshake signature verifies and calls
//! [`X509SvidVerifier::verify`] once per connection, so a refused SVID gets a gRPC status that says
//! why instead of a bare handshake failure.

use std::collections::HashMap;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::TrustDomainBundle;
use super::{Attestation, Principal, sha256_hex, x5t_s256};
use crate::domain::EvidenceKind;
use crate::spiffe_id::SpiffeId;

/// Why an X509-SVID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509SvidError {
    #[error("leaf certificate does not parse")]
    Malformed,
    #[error("leaf has {0} URI SANs; an X509-SVID has exactly one")]
    UriSanCount(usize),
    #[error("URI SAN is not a SPIFFE ID: {0}")]
    NotSpiffe(String),
    #[error("SPIFFE ID `{0}` has no path; a workload SVID needs one")]
    NoPath(String),
    #[error("leaf has cA=true; an X509-SVID leaf must not be a CA")]
    LeafIsCa,
    #[error("leaf has no keyUsage extension")]
    NoKeyUsage,
    #[error("leaf keyUsage lacks digitalSignature")]
    NoDigitalSignature,
    #[error("leaf keyUsage has keyCertSign or cRLSign")]
    SigningUsage,
    #[error("trust domain `{0}` is not trusted for X509-SVIDs")]
    UntrustedDomain(String),
    #[error("certificate chain does not verify against the bundle of `{domain}`: {reason}")]
    Chain { domain: String, reason: String },
    #[error("certificate chain does not verify against server.tls_client_ca: {0}")]
    ClientCa(String),
    #[error("certificate expired at {0}")]
    Expired(i64),
    #[error(
        "this certificate was minted by Tessera; present the workload's own SVID, not a minted credential"
    )]
    MintedCredential,
}

/// A client certificate that verified as an X509-SVID when the connection was set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Peer {
    pub identity: SpiffeId,
    /// Unix seconds after which the certificate is no longer valid.
    pub not_after: i64,
    pub x5t_s256: String,
    pub evidence_hash: String,
}

impl X509Peer {
    /// Returns the attestation this certificate gives at unix time `now`; fails once the
    /// certificate has expired (a connection may outlive its certificate).
    pub fn attestation(&self, now: i64) -> Result<Attestation, X509SvidError> {
        if now > self.not_after {
            return Err(X509SvidError::Expired(self.not_after));
        }
        Ok(Attestation {
            principal: Principal::Spiffe(self.identity.clone()),
            evidence_kind: EvidenceKind::X509Svid,
            evidence_hash: self.evidence_hash.clone(),
            cnf_x5t_s256: Some(self.x5t_s256.clone()),
            one_time: None,
        })
    }
}

/// Verifies X509-SVID chains against the trust domains' X.509 bundles.
#[derive(Debug)]
pub struct X509SvidVerifier {
    domains: HashMap<String, Vec<TrustAnchor<'static>>>,
    client_ca: Option<Vec<TrustAnchor<'static>>>,
    /// Refuse certificates Tessera minted (they carry its binding extension): a minted
    /// credential is bound to one destination and purpose and must not attest for more.
    refuse_minted: bool,
    /// Unique in the process: tells whether a connection was verified by this verifier or
    /// by one a reload replaced ([`PeerCert`]).
    id: u64,
}

/// Returns a verifier id never handed out before in this process.
fn next_verifier_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A connection's client certificate chain and the outcome of verifying it at the handshake,
/// with the verifier that did. When the trust bundles have been reloaded since, the chain is
/// verified again against the new ones ([`PeerCert::outcome`]): a CA removed from a bundle stops
/// attesting on connections that were already open.
#[derive(Debug, Clone)]
pub struct PeerCert {
    chain: Vec<CertificateDer<'static>>,
    verified: Result<X509Peer, X509SvidError>,
    verifier_id: u64,
}

impl PeerCert {
    /// Verifies `chain` (leaf first) with `verifier` at unix time `now`.
    pub fn verify(chain: &[CertificateDer<'_>], verifier: &X509SvidVerifier, now: i64) -> Self {
        PeerCert {
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            verified: verifier.verify(chain, now),
            verifier_id: verifier.id,
        }
    }

    /// Returns the outcome of verifying this chain with `verifier`: the handshake's when it was
    /// the same verifier, else a verification done now.
    pub fn outcome(
        &self,
        verifier: &X509SvidVerifier,
        now: i64,
    ) -> std::borrow::Cow<'_, Result<X509Peer, X509SvidError>> {
        if self.verifier_id == verifier.id {
            std::borrow::Cow::Borrowed(&self.verified)
        } else {
            std::borrow::Cow::Owned(verifier.verify(&self.chain, now))
        }
    }

    /// Returns the outcome of the verification at the handshake.
    pub fn at_handshake(&self) -> &Result<X509Peer, X509SvidError> {
        &self.verified
    }
}

/// Why a bundle cannot be used to verify X509-SVIDs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("X.509 bundle of `{domain}`: root #{index} cannot be a trust anchor: {reason}")]
    X509Root {
        domain: String,
        index: usize,
        reason: String,
    },
    #[error("server.tls_client_ca: root #{index} cannot be a trust anchor: {reason}")]
    ClientCa { index: usize, reason: String },
    #[error("JWT bundle of `{domain}`: key `{kid}`: {reason}")]
    JwtKey {
        domain: String,
        kid: String,
        reason: String,
    },
}

/// Returns the trust anchors of `certs`; fails with the position (from 1) and webpki's reason
/// for the first that cannot be one.
fn anchors(
    certs: &[CertificateDer<'static>],
) -> Result<Vec<TrustAnchor<'static>>, (usize, String)> {
    certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.to_owned())
                .map_err(|e| (i + 1, format!("{e:?}")))
        })
        .collect()
}

/// Checks the SPIFFE leaf rules; returns the SPIFFE ID and `notAfter`.
fn check_leaf(der: &[u8], refuse_minted: bool) -> Result<(SpiffeId, i64), X509SvidError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| X509SvidError::Malformed)?;
    if refuse_minted {
        let binding = crate::der::oid(&[2, 25, crate::domain::BINDING_UUID]);
        if cert
            .extensions()
            .iter()
            .any(|e| binding.get(2..) == Some(e.oid.as_bytes()))
        {
            return Err(X509SvidError::MintedCredential);
        }
    }
    let uris: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(_) => return Err(X509SvidError::Malformed),
    };
    let [uri] = uris.as_slice() else {
        return Err(X509SvidError::UriSanCount(uris.len()));
    };
    let id: SpiffeId = uri
        .parse()
        .map_err(|e| X509SvidError::NotSpiffe(format!("`{uri}`: {e}")))?;
    if !id.has_path() {
        return Err(X509SvidError::NoPath(id.to_string()));
    }
    let bc = cert
        .basic_constraints()
        .map_err(|_| X509SvidError::Malformed)?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(X509SvidError::LeafIsCa);
    }
    let ku = cert
        .key_usage()
        .map_err(|_| X509SvidError::Malformed)?
        .ok_or(X509SvidError::NoKeyUsage)?;
    if !ku.value.digital_signature() {
        return Err(X509SvidError::NoDigitalSignature);
    }
    if ku.value.key_cert_sign() || ku.value.crl_sign() {
        return Err(X509SvidError::SigningUsage);
    }
    Ok((id, cert.validity().not_after.timestamp()))
}

/// Which end of a TLS connection the SVID authenticates (checked against its EKU, if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    ClientAuth,
    ServerAuth,
}

fn verify_chain(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[TrustAnchor<'_>],
    now: i64,
    usage: Usage,
) -> Result<(), webpki::Error> {
    let ee = webpki::EndEntityCert::try_from(leaf)?;
    let time =
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or_default()));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        roots,
        intermediates,
        time,
        match usage {
            Usage::ClientAuth => webpki::KeyUsage::client_auth(),
            Usage::ServerAuth => webpki::KeyUsage::server_auth(),
        },
        None,
        None,
    )
    .map(|_| ())
}

impl X509SvidVerifier {
    /// Builds the verifier; fails when a bundle certificate cannot serve as a trust anchor.
    pub fn new(
        domains: &[TrustDomainBundle],
        client_ca: Option<&[CertificateDer<'static>]>,
    ) -> Result<Self, BundleError> {
        let mut out = HashMap::new();
        for domain in domains.iter().filter(|d| !d.x509_roots.is_empty()) {
            let roots =
                anchors(&domain.x509_roots).map_err(|(index, reason)| BundleError::X509Root {
                    domain: domain.name.to_string(),
                    index,
                    reason,
                })?;
            out.insert(domain.name.as_str().to_owned(), roots);
        }
        let client_ca = client_ca
            .map(anchors)
            .transpose()
            .map_err(|(index, reason)| BundleError::ClientCa { index, reason })?;
        Ok(X509SvidVerifier {
            domains: out,
            client_ca,
            refuse_minted: true,
            id: next_verifier_id(),
        })
    }

    /// Builds a verifier for one trust domain's X.509 bundle, as a relying party uses it: SVIDs
    /// minted by Tessera are accepted. Fails when a root cannot serve as a trust anchor.
    pub fn for_bundle(
        domain: &str,
        roots: &[CertificateDer<'static>],
    ) -> Result<Self, BundleError> {
        let anchors = anchors(roots).map_err(|(index, reason)| BundleError::X509Root {
            domain: domain.to_owned(),
            index,
            reason,
        })?;
        let mut domains = HashMap::new();
        domains.insert(domain.to_owned(), anchors);
        Ok(X509SvidVerifier {
            domains,
            client_ca: None,
            refuse_minted: false,
            id: next_verifier_id(),
        })
    }

    /// Returns every root subject (DER contents of the Name, without its SEQUENCE header), for
    /// the certificate authorities hint of the TLS handshake.
    pub fn root_subjects(&self) -> Vec<Vec<u8>> {
        let all = self
            .client_ca
            .iter()
            .flatten()
            .chain(self.domains.values().flatten());
        all.map(|a| a.subject.as_ref().to_vec()).collect()
    }

    /// Verifies a presented chain (leaf first) at unix time `now`; returns the peer. Fails with
    /// the first SPIFFE rule or path validation step that does not hold.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<X509Peer, X509SvidError> {
        self.verify_for(chain, now, Usage::ClientAuth)
    }

    /// Like [`X509SvidVerifier::verify`], for the given usage (a server's SVID is checked with
    /// `Usage::ServerAuth`).
    pub fn verify_for(
        &self,
        chain: &[CertificateDer<'_>],
        now: i64,
        usage: Usage,
    ) -> Result<X509Peer, X509SvidError> {
        let (leaf, intermediates) = chain.split_first().ok_or(X509SvidError::Malformed)?;
        let (identity, not_after) = check_leaf(leaf, self.refuse_minted)?;
        let domain = identity.trust_domain_name();
        let roots = self
            .domains
            .get(domain)
            .ok_or_else(|| X509SvidError::UntrustedDomain(domain.to_owned()))?;
        verify_chain(leaf, intermediates, roots, now, usage).map_err(|reason| {
            X509SvidError::Chain {
                domain: domain.to_owned(),
                reason: format!("{reason:?}"),
            }
        })?;
        if let Some(ca) = &self.client_ca {
            verify_chain(leaf, intermediates, ca, now, usage)
                .map_err(|e| X509SvidError::ClientCa(format!("{e:?}")))?;
        }
        Ok(X509Peer {
            identity,
            not_after,
            x5t_s256: x5t_s256(leaf),
            evidence_hash: sha256_hex(leaf),
        })
    }
}

#[cfg(test)]
#[path = "x509_svid_tests.rs"]
mod tests;
