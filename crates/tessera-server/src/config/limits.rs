//! `[server]` limits on watch streams and on RFC 7009 revocations, checked. `max_watchers`, the
//! one pool of earlier versions, still loads: it sizes each pool whose own key is not set
//! (`max_revocation_watchers`, `max_event_watchers`), with a warning naming the new keys.

use super::{Checker, ConfigError, file};
use crate::rate_limit::{DEFAULT_REVOKE_BURST, DEFAULT_REVOKE_RATE, Rate};
use crate::watchers::{
    DEFAULT_MAX_EVENT_WATCHERS, DEFAULT_MAX_REPLAYS, DEFAULT_MAX_REVOCATION_WATCHERS, WatchLimits,
};

/// Returns the watch limits of `[server]`. Fails when `max_watchers_per_identity` or
/// `max_replays` is 0.
pub(super) fn watch(
    check: &Checker<'_>,
    s: &file::ServerSection,
) -> Result<WatchLimits, ConfigError> {
    let at_least_one = |key: &str, value: Option<usize>| match value {
        Some(0) => Err(check.invalid(format!("server.{key}"), "must be at least 1")),
        other => Ok(other),
    };
    Ok(WatchLimits {
        revocations: s
            .max_revocation_watchers
            .or(s.max_watchers)
            .unwrap_or(DEFAULT_MAX_REVOCATION_WATCHERS),
        events: s
            .max_event_watchers
            .or(s.max_watchers)
            .unwrap_or(DEFAULT_MAX_EVENT_WATCHERS),
        per_identity: at_least_one("max_watchers_per_identity", s.max_watchers_per_identity)?,
        replays: at_least_one("max_replays", s.max_replays)?.unwrap_or(DEFAULT_MAX_REPLAYS),
        ..WatchLimits::default()
    })
}

/// Returns the RFC 7009 rate of `[server]`; the burst defaults to twice the rate when only the
/// rate is set. Fails when either is 0.
pub(super) fn revoke_rate(
    check: &Checker<'_>,
    s: &file::ServerSection,
) -> Result<Rate, ConfigError> {
    let per_second = match s.revoke_rate_per_workload {
        Some(0) => {
            return Err(check.invalid(
                "server.revoke_rate_per_workload",
                "must be at least 1 (revocations a second)",
            ));
        }
        Some(n) => n,
        None => DEFAULT_REVOKE_RATE,
    };
    let burst = match (s.revoke_burst_per_workload, s.revoke_rate_per_workload) {
        (Some(0), _) => {
            return Err(check.invalid(
                "server.revoke_burst_per_workload",
                "must be at least 1 (revocations at once)",
            ));
        }
        (Some(n), _) => n,
        (None, Some(rate)) => rate.saturating_mul(2),
        (None, None) => DEFAULT_REVOKE_BURST,
    };
    Ok(Rate { per_second, burst })
}

/// Returns what deserves the operator's attention in these keys: `max_watchers` is deprecated.
pub(super) fn warnings(s: &file::ServerSection) -> Vec<String> {
    match s.max_watchers {
        Some(n) => vec![format!(
            "[server] max_watchers = {n} is deprecated: it now sizes each watcher pool whose own \
             key is not set; use max_revocation_watchers and max_event_watchers"
        )],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn section(extra: &str) -> file::ServerSection {
        toml::from_str(&format!("tls_cert = \"c\"\ntls_key = \"k\"\n{extra}")).unwrap()
    }

    fn check() -> Checker<'static> {
        Checker {
            file: Path::new("t.toml"),
        }
    }

    #[test]
    fn the_old_max_watchers_sizes_each_pool_without_its_own_key_and_warns() {
        let s = section("max_watchers = 5\nmax_event_watchers = 2");
        let limits = watch(&check(), &s).unwrap();
        assert_eq!((limits.revocations, limits.events), (5, 2));
        assert!(warnings(&s)[0].contains("max_revocation_watchers"));
        let defaults = watch(&check(), &section("")).unwrap();
        assert_eq!(
            (defaults.revocations, defaults.events, defaults.per_identity),
            (10_000, 1_000, None)
        );
        assert!(warnings(&section("")).is_empty());
    }

    #[test]
    fn a_zero_share_replay_count_rate_or_burst_is_refused_naming_the_key() {
        for (text, key) in [
            ("max_watchers_per_identity = 0", "max_watchers_per_identity"),
            ("max_replays = 0", "max_replays"),
        ] {
            let e = watch(&check(), &section(text)).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        for (text, key) in [
            ("revoke_rate_per_workload = 0", "revoke_rate_per_workload"),
            ("revoke_burst_per_workload = 0", "revoke_burst_per_workload"),
        ] {
            let e = revoke_rate(&check(), &section(text))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn the_revoke_burst_defaults_to_twice_the_rate() {
        let rate = revoke_rate(&check(), &section("revoke_rate_per_workload = 3")).unwrap();
        assert_eq!((rate.per_second, rate.burst), (3, 6));
        let rate = revoke_rate(&check(), &section("")).unwrap();
        assert_eq!((rate.per_second, rate.burst), (10, 20));
    }
}
