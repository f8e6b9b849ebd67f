//! Turning each new credential of a source into files: the JWT alone, or the X.509-SVID's chain,
//! key and bundle in PEM; then the after-renewal action. Runs until the source stops.

use std::path::PathBuf;
use std::sync::Arc;

use tessera_client::source::{CredentialSource, JwtCredential, Mintable, X509SvidCredential};
use zeroize::Zeroizing;

use super::config::{CredentialSpec, Output};
use super::files::write_atomic;
use super::hooks;
use super::status::Status;

/// A credential that can be written to its output's files.
pub trait Writable: Mintable {
    /// Returns the files and their contents, the key last among them.
    fn contents(&self, output: &Output) -> Vec<(PathBuf, Zeroizing<Vec<u8>>)>;
}

impl Writable for JwtCredential {
    fn contents(&self, output: &Output) -> Vec<(PathBuf, Zeroizing<Vec<u8>>)> {
        match output {
            Output::Jwt { file } => vec![(file.clone(), Zeroizing::new(self.token().into()))],
            Output::X509 { .. } => Vec::new(),
        }
    }
}

impl Writable for X509SvidCredential {
    fn contents(&self, output: &Output) -> Vec<(PathBuf, Zeroizing<Vec<u8>>)> {
        let Output::X509 { cert, key, bundle } = output else {
            return Vec::new();
        };
        let mut files = vec![(
            cert.clone(),
            Zeroizing::new(self.cert_chain_pem().into_bytes()),
        )];
        if let Some(bundle) = bundle {
            files.push((
                bundle.clone(),
                Zeroizing::new(self.trust_bundle_pem().into_bytes()),
            ));
        }
        let key_pem = self.key_pem();
        files.push((key.clone(), Zeroizing::new(key_pem.as_bytes().to_vec())));
        files
    }
}

/// Writes every credential `source` holds to `spec`'s files and runs its action, recording
/// each outcome in `status` under `index`. Returns when the source stops.
pub async fn follow<C: Writable>(
    source: CredentialSource<C>,
    spec: CredentialSpec,
    index: usize,
    status: Status,
) {
    let mut changes = source.subscribe();
    drop(source); // the agent holds the source; this task only follows it
    loop {
        let held: Option<Arc<C>> = changes.borrow_and_update().clone();
        if let Some(credential) = held {
            write_one(credential.as_ref(), &spec, index, &status).await;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

async fn write_one<C: Writable>(
    credential: &C,
    spec: &CredentialSpec,
    index: usize,
    status: &Status,
) {
    let issued = credential.issued();
    for (path, contents) in credential.contents(&spec.output) {
        if let Err(e) = write_atomic(&path, &contents) {
            tracing::error!(credential = %spec.name, error = %e, "credential not written");
            status.write_failed(index, &e.to_string());
            return;
        }
    }
    status.written(index, &issued.credential_id, issued.expires_at);
    tracing::info!(
        credential = %spec.name,
        id = %issued.credential_id,
        expires_at = issued.expires_at,
        "credential written"
    );
    if let Err(e) = hooks::run(&spec.after_renewal).await {
        tracing::warn!(credential = %spec.name, error = %e, "after-renewal action failed");
        status.write_failed(index, &e.to_string());
    }
}
