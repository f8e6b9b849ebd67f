//! The crate-level error of `tessera bench`: what a module fails on, wrapped, and what
//! [`crate::run`] and [`crate::measure`] themselves fail on. Every `Display` names the file,
//! URL or address concerned.

use std::path::PathBuf;

use crate::ceiling::CeilingError;
use crate::drive::DriveError;
use crate::http1::Http1Error;
use crate::issuer::IssuerError;
use crate::revoker::RevokerError;
use crate::target::TargetError;

/// Why `tessera bench` could not run. Refused requests are results, not errors.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The crypto ceiling could not be measured.
    #[error(transparent)]
    Ceiling(#[from] CeilingError),
    /// A step could not be run.
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// The HTTP pool of the `exchange` or `peer` scenario could not be built.
    #[error(transparent)]
    Http1(#[from] Http1Error),
    /// The CI issuer of the `exchange` scenario could not start.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// A dev file could not be read or the broker could not be reached.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The `revoke` scenario could not connect or run.
    #[error(transparent)]
    Revoker(#[from] RevokerError),
    /// The revoker's task panicked or was cancelled.
    #[error("the revoker task: {0}")]
    RevokerTask(#[from] tokio::task::JoinError),
    /// A certificate or key file could not be loaded (`KeyError` names the file).
    #[error(transparent)]
    Key(#[from] tessera_core::keys::KeyError),
    /// The JWT-SVID bearer token could not be signed.
    #[error("signing the JWT-SVID bearer token: {0}")]
    Svid(#[source] tessera_testkit::pki::PkiError),
    /// The JWT-SVID is not a gRPC header value.
    #[error("JWT-SVID is not a header value")]
    BearerHeader(#[source] tonic::metadata::errors::InvalidMetadataValue),
    /// The `MintX509` CSR could not be generated.
    #[error("generating the MintX509 CSR: {0}")]
    Csr(#[from] rcgen::Error),
    /// A path could not be made absolute.
    #[error("{}: {source}", path.display())]
    AbsolutePath {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The async runtime could not be started.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The report could not be serialised as JSON.
    #[error("serialising the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}
