//! `[[trust_domain]] bundle_endpoint_url`: a foreign trust domain whose bundle comes from its
//! SPIFFE bundle endpoint (SPIFFE Federation, `https_web` profile) and is fetched again after
//! each `spiffe_refresh_hint`; `bundle_endpoint_ca` adds a root to the Web PKI roots the
//! endpoint's server certificate is verified with; `[server] bundle_endpoint_min_refresh` is the
//! floor under a refresh hint.

use std::fmt;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::{Checker, ConfigError};

/// `[server] bundle_endpoint_min_refresh` when not set: the shortest wait between two fetches.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);

/// A SPIFFE bundle endpoint (`https_web`) the broker fetches one trust domain's bundle from.
/// Two are the same when their URLs and extra roots are.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleEndpoint {
    /// `https://host[:port]/path`, as written.
    pub url: String,
    /// Roots trusted beside the Web PKI ones for the endpoint's server certificate.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl BundleEndpoint {
    /// Returns what two endpoints are told apart by: the URL, then the extra roots' DER.
    fn order_key(&self) -> (&str, Vec<&[u8]>) {
        let roots = self.extra_roots.iter().map(|r| r.as_ref()).collect();
        (&self.url, roots)
    }
}

impl PartialOrd for BundleEndpoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BundleEndpoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl fmt::Display for BundleEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl fmt::Debug for BundleEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BundleEndpoint({}, {} extra roots)",
            self.url,
            self.extra_roots.len()
        )
    }
}

/// Checks `bundle_endpoint_url` (`url`, at key `url_key`) and `bundle_endpoint_ca` (`ca`, at
/// `ca_key`); returns the endpoint. Fails naming the key when the URL is not an https URL with a
/// host, or the CA file holds no certificate.
pub(super) fn bundle_endpoint(
    check: &Checker<'_>,
    url_key: &str,
    url: &str,
    ca_key: &str,
    ca: Option<&str>,
) -> Result<BundleEndpoint, ConfigError> {
    let uri: Result<hyper::Uri, _> = url.parse();
    let https_host = uri.as_ref().is_ok_and(|u| {
        u.scheme_str() == Some("https")
            && u.host().is_some_and(|h| !h.is_empty())
            && !u.authority().is_some_and(|a| a.as_str().contains('@'))
    });
    if !https_host {
        return Err(check.invalid(
            url_key,
            format!(
                "`{url}` is not an https URL with a host (only the `https_web` profile is \
                 supported: `https://host/path`)"
            ),
        ));
    }
    let extra_roots = match ca {
        Some(path) => check.certs(ca_key, path)?,
        None => Vec::new(),
    };
    Ok(BundleEndpoint {
        url: url.to_owned(),
        extra_roots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn checked(url: &str) -> Result<String, String> {
        let check = Checker {
            file: Path::new("t.toml"),
        };
        bundle_endpoint(
            &check,
            "trust_domain[1].bundle_endpoint_url",
            url,
            "ca",
            None,
        )
        .map(|e| e.to_string())
        .map_err(|e| e.to_string())
    }

    #[test]
    fn an_https_url_with_a_host_is_a_bundle_endpoint() {
        assert_eq!(
            checked("https://partner.example:8443/bundle").unwrap(),
            "https://partner.example:8443/bundle"
        );
    }

    #[test]
    fn another_scheme_no_host_or_userinfo_is_refused_naming_the_key_and_the_profile() {
        for url in [
            "http://partner.example/bundle",
            "https:///bundle",
            "partner.example/bundle",
            "https://user@partner.example/bundle",
        ] {
            let refused = checked(url).unwrap_err();
            assert!(
                refused.contains("trust_domain[1].bundle_endpoint_url"),
                "{refused}"
            );
            assert!(refused.contains("https_web"), "{refused}");
        }
    }
}
