//! `[ssf]`, checked: the Shared Signals transmitter's limits and the roots its push deliveries
//! trust.

use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::{Checker, ConfigError, file};

/// Default of `[ssf] max_streams`.
pub const DEFAULT_MAX_STREAMS: usize = 1000;
/// Default of `[ssf] max_streams_per_identity`.
pub const DEFAULT_MAX_STREAMS_PER_IDENTITY: usize = 10;
/// Default of `[ssf] max_queue`.
pub const DEFAULT_MAX_QUEUE: usize = 10_000;
/// Default of `[ssf] max_backoff`.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Default of `[ssf] min_verification_interval`.
pub const DEFAULT_MIN_VERIFICATION_INTERVAL: Duration = Duration::from_secs(10);

/// `[ssf]`, checked.
#[derive(Debug, Clone)]
pub struct SsfConfig {
    /// Roots a push receiver's TLS certificate may chain to besides the Mozilla roots
    /// (`ca_file`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Streams in all (`max_streams`).
    pub max_streams: usize,
    /// Streams one receiver identity may have (`max_streams_per_identity`).
    pub max_streams_per_identity: usize,
    /// SETs kept per stream until acknowledged; past it the oldest are dropped (`max_queue`).
    pub max_queue: usize,
    /// Longest wait between two push attempts to a failing receiver (`max_backoff`).
    pub max_backoff: Duration,
    /// Least time between two verification requests of a stream (`min_verification_interval`).
    pub min_verification_interval: Duration,
    /// Hosts receivers that are not admins may have SETs pushed to (`push_hosts`): names, or
    /// `*.domain`. Admins may push anywhere.
    pub push_hosts: Vec<String>,
}

impl Default for SsfConfig {
    fn default() -> Self {
        SsfConfig {
            extra_roots: Vec::new(),
            max_streams: DEFAULT_MAX_STREAMS,
            max_streams_per_identity: DEFAULT_MAX_STREAMS_PER_IDENTITY,
            max_queue: DEFAULT_MAX_QUEUE,
            max_backoff: DEFAULT_MAX_BACKOFF,
            min_verification_interval: DEFAULT_MIN_VERIFICATION_INTERVAL,
            push_hosts: Vec::new(),
        }
    }
}

/// Checks `[ssf]`; fails naming the key of a count below 1, a bad duration or unusable roots.
pub(super) fn ssf(check: &Checker<'_>, s: &file::SsfSection) -> Result<SsfConfig, ConfigError> {
    let at_least_one = |key: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(check.invalid(key, "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let max_backoff = check.duration(
        "ssf.max_backoff",
        s.max_backoff.as_deref(),
        DEFAULT_MAX_BACKOFF,
    )?;
    if max_backoff.is_zero() {
        return Err(check.invalid("ssf.max_backoff", "must be at least 1s"));
    }
    Ok(SsfConfig {
        extra_roots: match &s.ca_file {
            Some(path) => check.certs("ssf.ca_file", path)?,
            None => Vec::new(),
        },
        max_streams: at_least_one("ssf.max_streams", s.max_streams, DEFAULT_MAX_STREAMS)?,
        max_streams_per_identity: at_least_one(
            "ssf.max_streams_per_identity",
            s.max_streams_per_identity,
            DEFAULT_MAX_STREAMS_PER_IDENTITY,
        )?,
        max_queue: at_least_one("ssf.max_queue", s.max_queue, DEFAULT_MAX_QUEUE)?,
        max_backoff,
        min_verification_interval: check.duration(
            "ssf.min_verification_interval",
            s.min_verification_interval.as_deref(),
            DEFAULT_MIN_VERIFICATION_INTERVAL,
        )?,
        push_hosts: push_hosts(check, &s.push_hosts)?,
    })
}

/// Checks `[ssf] push_hosts`: each a host name, or `*.` and a domain.
fn push_hosts(check: &Checker<'_>, hosts: &[String]) -> Result<Vec<String>, ConfigError> {
    for host in hosts {
        let name = host.strip_prefix("*.").unwrap_or(host);
        let valid = !name.is_empty()
            && !name.contains('*')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !valid {
            let why = format!("`{host}` is not a host name or `*.domain`");
            return Err(check.invalid("ssf.push_hosts", why));
        }
    }
    Ok(hosts.to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    fn checked(s: &file::SsfSection) -> Result<SsfConfig, ConfigError> {
        ssf(
            &Checker {
                file: Path::new("t.toml"),
            },
            s,
        )
    }

    #[test]
    fn defaults_apply_and_zero_limits_are_refused_naming_the_key() {
        let config = checked(&file::SsfSection::default()).unwrap();
        assert_eq!(config.max_streams, DEFAULT_MAX_STREAMS);
        assert_eq!(config.max_queue, DEFAULT_MAX_QUEUE);
        assert!(config.extra_roots.is_empty());
        let zero = file::SsfSection {
            max_queue: Some(0),
            ..Default::default()
        };
        assert!(
            checked(&zero)
                .unwrap_err()
                .to_string()
                .contains("ssf.max_queue")
        );
        let backoff = file::SsfSection {
            max_backoff: Some("0s".into()),
            ..Default::default()
        };
        assert!(
            checked(&backoff)
                .unwrap_err()
                .to_string()
                .contains("ssf.max_backoff")
        );
        let missing = file::SsfSection {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(
            checked(&missing)
                .unwrap_err()
                .to_string()
                .contains("ssf.ca_file")
        );
    }
}
