//! An X509-SVID from the SPIFFE Workload API (a SPIRE agent's socket), through the `spiffe`
//! crate's `X509Source`: each call presents the SVID in force then, so rotation is followed.
//! Built with the `workload-api` feature.

use std::fmt;

use futures::future::BoxFuture;
use zeroize::Zeroizing;

use super::credential::pem;
use super::error::SourceError;
use super::evidence::{Attestor, Evidence};

const NAME: &str = "workload-api";

/// The default X509-SVID of a Workload API endpoint, kept current in the background.
pub struct WorkloadApiSvid {
    source: spiffe::X509Source,
    endpoint: String,
}

impl fmt::Debug for WorkloadApiSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiSvid")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl WorkloadApiSvid {
    /// Connects to `endpoint` (`unix:///path`) and waits for its first SVID. Fails when the
    /// endpoint cannot be reached or serves no usable SVID (bound the wait with a timeout: the
    /// crate retries a socket that is not there yet).
    pub async fn connect(endpoint: &str) -> Result<Self, SourceError> {
        let source = spiffe::X509Source::builder()
            .endpoint(endpoint)
            .build()
            .await
            .map_err(|e| SourceError::Evidence {
                attestor: NAME,
                reason: format!("{endpoint}: {e}"),
            })?;
        Ok(WorkloadApiSvid {
            source,
            endpoint: endpoint.to_owned(),
        })
    }
}

impl Attestor for WorkloadApiSvid {
    fn name(&self) -> &'static str {
        NAME
    }

    fn evidence(&self) -> BoxFuture<'_, Result<Evidence, SourceError>> {
        Box::pin(async move {
            let svid = self.source.svid().map_err(|e| SourceError::Evidence {
                attestor: NAME,
                reason: format!("{}: {e}", self.endpoint),
            })?;
            let cert_pem: String = svid
                .cert_chain()
                .iter()
                .map(|c| pem("CERTIFICATE", c.as_bytes()))
                .collect();
            let key_pem = Zeroizing::new(pem("PRIVATE KEY", svid.private_key().as_bytes()));
            Ok(Evidence::X509Svid {
                cert_pem: cert_pem.into_bytes(),
                key_pem: Zeroizing::new(key_pem.as_bytes().to_vec()),
            })
        })
    }
}
