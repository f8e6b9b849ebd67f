//! How a credential source proves to the broker what it is, asked afresh before every call so
//! that rotated material is used: an X509-SVID presented as TLS client certificate, or a
//! JWT-SVID / CI / Kubernetes token sent as bearer. [`Attestor`] is the seam: files here, the
//! SPIFFE Workload API or anything else elsewhere.

use std::fmt;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use zeroize::Zeroizing;

use super::error::SourceError;

/// What the broker is shown on one call.
#[derive(Clone)]
pub enum Evidence {
    /// An X509-SVID chain (PEM, leaf first) and its PKCS#8 key (PEM), presented as TLS client
    /// certificate.
    X509Svid {
        cert_pem: Vec<u8>,
        key_pem: Zeroizing<Vec<u8>>,
    },
    /// A JWT-SVID or CI / Kubernetes OIDC token, sent as `authorization: Bearer`.
    Bearer(Zeroizing<String>),
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::X509Svid { cert_pem, .. } => f
                .debug_struct("X509Svid")
                .field("cert_pem_len", &cert_pem.len())
                .field("key_pem", &"<redacted>")
                .finish(),
            Evidence::Bearer(token) => f
                .debug_tuple("Bearer")
                .field(&format_args!("<{} bytes>", token.len()))
                .finish(),
        }
    }
}

/// Produces the evidence for the next call to the broker.
pub trait Attestor: Send + Sync + fmt::Debug + 'static {
    /// Returns the name of this kind of evidence, for logs and errors (`x509-svid-files`).
    fn name(&self) -> &'static str;

    /// Returns the evidence to present now. Fails with [`SourceError::Evidence`] when it is
    /// missing or unusable.
    fn evidence(&self) -> BoxFuture<'_, Result<Evidence, SourceError>>;
}

/// An X509-SVID read from two PEM files at every call (so that a rotation by another process,
/// such as `spiffe-helper`, is picked up).
#[derive(Debug, Clone)]
pub struct X509SvidFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The PKCS#8 private key.
    pub key: PathBuf,
}

impl Attestor for X509SvidFiles {
    fn name(&self) -> &'static str {
        "x509-svid-files"
    }

    fn evidence(&self) -> BoxFuture<'_, Result<Evidence, SourceError>> {
        Box::pin(async move {
            let cert_pem = read(self.name(), &self.cert)?;
            let key_pem = Zeroizing::new(read(self.name(), &self.key)?);
            let holds =
                |text: &[u8], label: &str| text.windows(label.len()).any(|w| w == label.as_bytes());
            if !holds(&cert_pem, "-----BEGIN CERTIFICATE-----") {
                return Err(unusable(
                    self.name(),
                    &self.cert,
                    "holds no PEM CERTIFICATE",
                ));
            }
            if !holds(&key_pem, "PRIVATE KEY-----") {
                return Err(unusable(self.name(), &self.key, "holds no PEM PRIVATE KEY"));
            }
            Ok(Evidence::X509Svid { cert_pem, key_pem })
        })
    }
}

/// A token (JWT-SVID, CI or Kubernetes service account token) read from a file at every call:
/// these are short-lived and rewritten by whoever issues them.
#[derive(Debug, Clone)]
pub struct TokenFile {
    pub path: PathBuf,
}

impl Attestor for TokenFile {
    fn name(&self) -> &'static str {
        "token-file"
    }

    fn evidence(&self) -> BoxFuture<'_, Result<Evidence, SourceError>> {
        Box::pin(async move {
            let bytes = Zeroizing::new(read(self.name(), &self.path)?);
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| unusable(self.name(), &self.path, "is not UTF-8"))?
                .trim();
            if text.is_empty() {
                return Err(unusable(self.name(), &self.path, "is empty"));
            }
            Ok(Evidence::Bearer(Zeroizing::new(text.to_owned())))
        })
    }
}

/// The same evidence at every call: an SVID or token the embedding service already holds.
#[derive(Debug, Clone)]
pub struct FixedEvidence(pub Evidence);

impl Attestor for FixedEvidence {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn evidence(&self) -> BoxFuture<'_, Result<Evidence, SourceError>> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// Returns the bytes of `path`. Fails with [`SourceError::Evidence`] naming the file.
fn read(attestor: &'static str, path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|e| SourceError::Evidence {
        attestor,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

fn unusable(attestor: &'static str, path: &Path, what: &str) -> SourceError {
    SourceError::Evidence {
        attestor,
        reason: format!("{} {what}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_file_is_read_again_at_every_call_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("tessera-evidence-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let source = TokenFile { path: path.clone() };
        std::fs::write(&path, "first\n").unwrap();
        let Evidence::Bearer(first) = source.evidence().await.unwrap() else {
            panic!("not a bearer");
        };
        std::fs::write(&path, "second").unwrap();
        let Evidence::Bearer(second) = source.evidence().await.unwrap() else {
            panic!("not a bearer");
        };
        assert_eq!((first.as_str(), second.as_str()), ("first", "second"));
        std::fs::write(&path, " \n").unwrap();
        let empty = source.evidence().await.unwrap_err();
        assert!(empty.to_string().contains("is empty"), "{empty}");
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = source.evidence().await.unwrap_err();
        assert!(
            !missing.is_transient() && missing.to_string().contains("cannot read"),
            "{missing}"
        );
    }

    #[test]
    fn debug_never_shows_a_token_or_key() {
        let token = Evidence::Bearer(Zeroizing::new("secret-token".into()));
        let svid = Evidence::X509Svid {
            cert_pem: b"cert".to_vec(),
            key_pem: Zeroizing::new(b"secret-key".to_vec()),
        };
        let shown = format!("{token:?} {svid:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
