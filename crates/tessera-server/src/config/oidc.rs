//! `[[oidc_issuer]]` sections → [`OidcIssuerConfig`]s.

use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::{Checker, ConfigError, file};
use tessera_core::attest::oidc::{IssuerConfig, Profile};

/// `max_token_lifetime` when not set.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// One checked `[[oidc_issuer]]`.
#[derive(Debug, Clone)]
pub struct OidcIssuerConfig {
    pub verify: IssuerConfig,
    /// Configured JWKS URL; `None` means OIDC discovery.
    pub jwks_uri: Option<String>,
    /// Extra roots for reaching the issuer (`ca_file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

fn https_url(check: &Checker<'_>, key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = url
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !ok || url.contains(['?', '#']) || url.ends_with('/') {
        return Err(check.invalid(
            key,
            format!("`{url}` must be an https URL with no query, fragment or trailing `/`"),
        ));
    }
    Ok(())
}

/// Checks every `[[oidc_issuer]]`; fails naming the first bad key.
pub(super) fn issuers(
    check: &Checker<'_>,
    sections: &[file::OidcIssuerSection],
) -> Result<Vec<OidcIssuerConfig>, ConfigError> {
    let mut out: Vec<OidcIssuerConfig> = Vec::with_capacity(sections.len());
    for (i, s) in sections.iter().enumerate() {
        let key = |k: &str| format!("oidc_issuer[{i}].{k}");
        https_url(check, &key("issuer"), &s.issuer)?;
        if out.iter().any(|o| o.verify.issuer == s.issuer) {
            return Err(check.invalid(key("issuer"), format!("`{}` is listed twice", s.issuer)));
        }
        let profile: Profile = s
            .profile
            .as_deref()
            .unwrap_or("generic")
            .parse()
            .map_err(|e: String| check.invalid(key("profile"), e))?;
        let audience = s
            .audience
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                check.invalid(
                    key("audience"),
                    "is required: tokens must be minted for this broker",
                )
            })?;
        if let Some(uri) = &s.jwks_uri {
            https_url(check, &key("jwks_uri"), uri)?;
        }
        let extra_roots = match &s.ca_file {
            Some(path) => tessera_core::keys::certificates(std::path::Path::new(path))
                .map_err(|m| check.invalid(key("ca_file"), m.to_string()))?,
            None => Vec::new(),
        };
        let max_token_lifetime = check.duration(
            &key("max_token_lifetime"),
            s.max_token_lifetime.as_deref(),
            DEFAULT_MAX_TOKEN_LIFETIME,
        )?;
        out.push(OidcIssuerConfig {
            verify: IssuerConfig {
                issuer: s.issuer.clone(),
                profile,
                audience,
                max_token_lifetime,
            },
            jwks_uri: s.jwks_uri.clone(),
            extra_roots,
        });
    }
    Ok(out)
}
