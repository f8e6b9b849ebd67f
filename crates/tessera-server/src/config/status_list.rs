//! `[status_list]`: how fast revocations show in the Token Status Lists, how long relying
//! parties may cache a list, and how often lists roll over.

use std::time::Duration;

use serde::Deserialize;

use super::{Checker, ConfigError};
use crate::status_list::{DEFAULT_MAX_LAG, DEFAULT_TTL, DEFAULT_WINDOW, StatusListConfig};

/// `[status_list]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusListSection {
    pub max_lag: Option<String>,
    pub ttl: Option<String>,
    pub window: Option<String>,
}

/// Checks `[status_list]`: `max_lag` 10ms..=60s, `ttl` 1s..=1d, `window` 1m..=7d (an issue
/// time is kept as milliseconds into its window in 32 bits). Fails naming the key.
pub(super) fn status_list(
    check: &Checker<'_>,
    s: &StatusListSection,
) -> Result<StatusListConfig, ConfigError> {
    let within = |key: &str, value: Option<&str>, default, min, max| {
        let d = check.duration(key, value, default)?;
        if d < min || d > max {
            return Err(check.invalid(
                key,
                format!("must be between {min:?} and {max:?}, not {d:?}"),
            ));
        }
        Ok(d)
    };
    Ok(StatusListConfig {
        max_lag: within(
            "status_list.max_lag",
            s.max_lag.as_deref(),
            DEFAULT_MAX_LAG,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?,
        ttl: within(
            "status_list.ttl",
            s.ttl.as_deref(),
            DEFAULT_TTL,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        )?,
        window: within(
            "status_list.window",
            s.window.as_deref(),
            DEFAULT_WINDOW,
            Duration::from_secs(60),
            Duration::from_secs(7 * 86_400),
        )?,
    })
}
