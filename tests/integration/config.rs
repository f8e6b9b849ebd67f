//! Configuration errors name the file and the key, and stop start-up.

use std::time::Duration;

use tessera_core::clock::SystemClock;
use tessera_server::config::Config;

use crate::common::Fixture;

/// Loads the fixture's config with `edit` applied; returns the error message.
fn error_after(edit: impl FnOnce(String, &Fixture) -> String) -> String {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(&fx.config_path, edit(text, &fx)).unwrap();
    let err = Config::load(&fx.config_path, &SystemClock).expect_err("config should be refused");
    let message = err.to_string();
    assert!(
        message.contains("test.toml"),
        "message names the file: {message}"
    );
    message
}

#[track_caller]
fn assert_has(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            message.contains(needle),
            "{message:?} should contain {needle:?}"
        );
    }
}

#[test]
fn the_generated_config_loads() {
    let fx = Fixture::new();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert_eq!(config.grants.len(), 2);
    assert_eq!(config.trust_domains[0].jwt_keys.len(), 1);
}

#[test]
fn ledger_fsync_is_on_unless_switched_off() {
    let fx = Fixture::new();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert!(config.ledger.fsync);
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(
        &fx.config_path,
        text.replace("[ledger]", "[ledger]\nfsync = false"),
    )
    .unwrap();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert!(!config.ledger.fsync);
    let m = error_after(|t, _| t.replace("[ledger]", "[ledger]\nfsync = \"no\""));
    assert_has(&m, &["fsync"]);
}

#[test]
fn names_a_missing_file() {
    let err = Config::load(
        std::path::Path::new("/nonexistent/tessera.toml"),
        &SystemClock,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/tessera.toml"));
}

#[test]
fn refuses_unknown_keys() {
    let m = error_after(|t, _| t.replace("[server]", "[server]\ncolour = \"blue\""));
    assert_has(&m, &["unknown field `colour`"]);
}

#[test]
fn names_the_key_of_a_bad_pem() {
    let m = error_after(|t, fx| {
        std::fs::write(fx.path("server.pem"), "not pem").unwrap();
        t
    });
    assert_has(&m, &["server.tls_cert", "CERTIFICATE"]);
    let m = error_after(|t, fx| {
        std::fs::write(fx.path("jwt-signing-key.pem"), "garbage").unwrap();
        t
    });
    assert_has(&m, &["signing.jwt_key", "PRIVATE KEY"]);
}

#[test]
fn refuses_a_grant_without_owner_or_expiry() {
    let m = error_after(|t, _| t.replace("owner = \"team-payments\"\n", ""));
    assert_has(&m, &["grant[0].owner", "required"]);
    let m = error_after(|t, _| t.replacen("expires = ", "# expires = ", 1));
    assert_has(&m, &["grant[0].expires", "required"]);
}

#[test]
fn an_expired_grant_loads_with_a_warning_naming_it_and_its_owner() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text.replace("expires = \"2099-01-01\"", "expires = \"2020-01-01\"");
    std::fs::write(&fx.config_path, text).unwrap();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    let warning = config
        .warnings
        .iter()
        .find(|w| w.contains("reports-cron"))
        .expect("a warning about the expired grant");
    assert_has(
        warning,
        &["grant[1]", "expired on 2020-01-01", "owner", "renews"],
    );
}

#[test]
fn refuses_a_grant_name_with_a_slash() {
    let m = error_after(|t, _| t.replace("name = \"reports-cron\"", "name = \"reports/cron\""));
    assert_has(&m, &["grant[1].name", "without `/`"]);
}

#[test]
fn refuses_max_ttl_over_an_hour() {
    let m = error_after(|t, _| t.replace("max_ttl = \"15m\"", "max_ttl = \"2h\""));
    assert_has(&m, &["grant[0].max_ttl", "at most 1h"]);
}

#[test]
fn refuses_an_unknown_trust_domain() {
    let m = error_after(|t, _| {
        t.replace(
            "spiffe_id = \"spiffe://example.org/ns/reports/sa/cron\"",
            "spiffe_id = \"spiffe://elsewhere.org/ns/reports/sa/cron\"",
        )
    });
    assert_has(
        &m,
        &[
            "grant[1].match.spiffe_id",
            "unknown trust domain `elsewhere.org`",
        ],
    );
}

#[test]
fn refuses_a_ledger_url_that_is_not_postgresql_naming_the_key() {
    let m =
        error_after(|t, _| t.replace("[ledger]\npath", "[ledger]\nurl = \"mysql://x/db\"\n#path"));
    assert_has(&m, &["ledger.url", "postgres://"]);
}

#[test]
fn a_postgresql_ledger_url_is_read_with_its_pool_and_never_shown_with_its_password() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let text = text.replace(
        "[ledger]\npath",
        "[ledger]\nurl = \"postgres://tessera:s3cret@db.example:5432/tessera\"\npool_size = 4\nconnect_timeout = \"2s\"\n#path",
    );
    std::fs::write(&fx.config_path, text).unwrap();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    let tessera_server::config::LedgerBackend::Postgres(target) = &config.ledger.backend else {
        panic!("expected a PostgreSQL ledger: {:?}", config.ledger.backend);
    };
    assert_eq!(target.pool_size, 4);
    assert_eq!(target.connect_timeout, std::time::Duration::from_secs(2));
    assert!(target.url.expose().contains("s3cret"));
    let shown = format!("{config:?} {}", target.url);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("postgres://tessera:***@db.example:5432/tessera"),
        "{shown}"
    );
}

#[test]
fn refuses_a_ledger_cache_size_without_a_known_unit_naming_the_key() {
    let m = error_after(|t, _| t.replace("[ledger]\n", "[ledger]\ncache_size = \"64 megs\"\n"));
    assert_has(&m, &["ledger.cache_size", "64 megs"]);
}

#[test]
fn a_ledger_cache_size_is_read_as_bytes_or_with_a_unit() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    for (value, bytes) in [("\"16MiB\"", 16 << 20), ("1000000", 1_000_000)] {
        let edited = text.replace("[ledger]\n", &format!("[ledger]\ncache_size = {value}\n"));
        std::fs::write(&fx.config_path, edited).unwrap();
        let config = Config::load(&fx.config_path, &SystemClock).unwrap();
        assert_eq!(config.ledger.cache_size, bytes, "{value}");
    }
}

#[test]
fn the_ledger_journal_is_on_unless_turned_off() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    assert!(
        Config::load(&fx.config_path, &SystemClock)
            .unwrap()
            .ledger
            .journal
    );
    let edited = text.replace("[ledger]\n", "[ledger]\njournal = false\n");
    std::fs::write(&fx.config_path, edited).unwrap();
    assert!(
        !Config::load(&fx.config_path, &SystemClock)
            .unwrap()
            .ledger
            .journal
    );
}

#[test]
fn the_checkpoint_interval_defaults_to_a_quarter_second_and_is_bounded() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert_eq!(
        config.ledger.checkpoint_interval,
        Duration::from_millis(250)
    );
    let set = |value: &str| {
        let edited = text.replace(
            "[ledger]\n",
            &format!("[ledger]\ncheckpoint_interval = \"{value}\"\n"),
        );
        std::fs::write(&fx.config_path, edited).unwrap();
        Config::load(&fx.config_path, &SystemClock)
    };
    assert_eq!(
        set("2s").unwrap().ledger.checkpoint_interval,
        Duration::from_secs(2)
    );
    for bad in ["5ms", "61s"] {
        let err = set(bad).unwrap_err().to_string();
        assert!(err.contains("ledger.checkpoint_interval"), "{bad}: {err}");
    }
}

#[test]
fn the_commit_linger_defaults_to_a_millisecond_takes_micro_or_milliseconds_and_is_bounded() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert_eq!(config.ledger.commit_linger, Duration::from_millis(1));
    for (value, linger) in [("0ms", 0), ("500us", 500), ("100ms", 100_000)] {
        let edited = text.replace(
            "[ledger]\n",
            &format!("[ledger]\ncommit_linger = \"{value}\"\n"),
        );
        std::fs::write(&fx.config_path, edited).unwrap();
        let config = Config::load(&fx.config_path, &SystemClock).unwrap();
        assert_eq!(
            config.ledger.commit_linger,
            Duration::from_micros(linger),
            "{value}"
        );
    }
    let edited = text.replace("[ledger]\n", "[ledger]\ncommit_linger = \"101ms\"\n");
    std::fs::write(&fx.config_path, edited).unwrap();
    let err = Config::load(&fx.config_path, &SystemClock)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ledger.commit_linger") && err.contains("100ms"),
        "{err}"
    );
}

#[test]
fn the_example_config_documents_a_loadable_configuration() {
    // The example grant expires on 2027-06-30; judge it on a fixed day before that.
    let clock = tessera_core::clock::ManualClock::at(1_767_225_600); // 2026-01-01
    let config = Config::load(std::path::Path::new("tessera.example.toml"), &clock).unwrap();
    assert_eq!(config.grants[0].name, "payments-api");
    assert_eq!(config.server.audience, "tessera");
    assert_eq!(
        config.ledger.cache_size,
        tessera_server::config::DEFAULT_LEDGER_CACHE
    );
}

#[test]
fn the_committed_dev_config_loads() {
    let config =
        Config::load(std::path::Path::new("certs-dev/tessera.toml"), &SystemClock).unwrap();
    assert_eq!(config.server.grpc_addr.port(), 8443);
    assert_eq!(config.admin_ids[0].as_str(), tessera_testkit::dev::ADMIN_ID);
}

const ISSUER: &str = "\n[[oidc_issuer]]\nissuer = \"https://ci.example.org\"\nprofile = \"github\"\naudience = \"tessera\"\n";

fn ci_grant(matcher: &str) -> String {
    format!(
        "{ISSUER}\n[[grant]]\nname = \"ci-x\"\nworkload = \"spiffe://example.org/ci/x\"\nowner = \"o\"\nexpires = \"2099-01-01\"\n\
         destinations = [\"d\"]\npurposes = [\"p\"]\n[grant.match]\nissuer = \"https://ci.example.org\"\n{matcher}\n"
    )
}

#[test]
fn refuses_a_grant_without_a_name_and_a_name_used_twice() {
    let m = error_after(|t, _| t.replacen("name = \"payments-api\"\n", "", 1));
    assert_has(&m, &["grant[0].name", "is required"]);
    let m = error_after(|t, _| t + &ci_grant("subject = \"x\"").replace("ci-x", "payments-api"));
    assert_has(&m, &["grant[2].name", "`payments-api` is used twice"]);
}

#[test]
fn refuses_a_ci_grant_that_matches_only_the_issuer() {
    let m = error_after(|t, _| t + &ci_grant(""));
    assert_has(
        &m,
        &[
            "grant[2].match.issuer",
            "must also match `subject` or `claims`",
        ],
    );
}

#[test]
fn warns_loudly_about_wildcard_ci_trust_and_not_about_pinned_grants() {
    let fx = Fixture::new();
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(
        &fx.config_path,
        text.clone() + &ci_grant("subject = { pattern = \"repo:.*:ref:refs/heads/main\" }"),
    )
    .unwrap();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert_eq!(config.warnings.len(), 1);
    assert_has(&config.warnings[0], &["grant[2]", "wildcard"]);
    let pinned = ci_grant(
        "subject = { pattern = \"repo:.*:ref:refs/heads/main\" }\nclaims = { repository_owner_id = \"1234\" }",
    );
    std::fs::write(&fx.config_path, text + &pinned).unwrap();
    assert!(
        Config::load(&fx.config_path, &SystemClock)
            .unwrap()
            .warnings
            .is_empty()
    );
}

#[test]
fn refuses_a_ci_grant_for_an_unconfigured_issuer_and_a_root_workload() {
    let m = error_after(|t, _| t + &ci_grant("subject = \"x\"").replace(ISSUER, ""));
    assert_has(
        &m,
        &["grant[2].match.issuer", "not a configured [[oidc_issuer]]"],
    );
    let m = error_after(|t, _| {
        t.replace(
            "workload = \"spiffe://example.org/ns/reports/sa/cron\"",
            "workload = \"spiffe://example.org\"",
        )
    });
    assert_has(&m, &["grant[1].workload", "needs a path"]);
}

#[test]
fn status_list_keys_have_defaults_bounds_and_no_unknown_key() {
    let fx = Fixture::new();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    let defaults = config.status_list;
    assert_eq!(
        (defaults.max_lag, defaults.ttl, defaults.window),
        (
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(3600)
        )
    );
    fx.append_config("\n[status_list]\nmax_lag = \"250ms\"\nttl = \"30s\"\nwindow = \"10m\"\n");
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert_eq!(
        config.status_list.max_lag,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(
        config.status_list.window,
        std::time::Duration::from_secs(600)
    );
    for (toml, key) in [
        ("max_lag = \"0s\"", "status_list.max_lag"),
        ("ttl = \"2d\"", "status_list.ttl"),
        ("window = \"30s\"", "status_list.window"),
        ("window = \"soon\"", "status_list.window"),
        ("size = 8", "size"),
    ] {
        let m = error_after(|t, _| format!("{t}\n[status_list]\n{toml}\n"));
        assert_has(&m, &[key]);
    }
}

/// Runs `tessera check --config` on `path`; returns the exit status, stdout and stderr.
fn tessera_check(path: &std::path::Path) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn tessera_check_accepts_a_good_config_without_opening_the_ledger_or_binding() {
    let fx = Fixture::new();
    let (ok, out, err) = tessera_check(&fx.config_path);
    assert!(ok, "{out}{err}");
    assert!(out.contains(": ok ("), "{out}");
    assert!(!fx.ledger_path.exists(), "no ledger was created");
    assert!(
        !fx.path("data/audit.log").exists(),
        "no audit log was opened"
    );
}

#[test]
fn tessera_check_refuses_a_mint_ca_that_does_not_chain_to_the_bundle() {
    let fx = Fixture::new();
    // Another trust domain's CA signs the minted SVIDs: the start-up self-test fails.
    let other = tessera_testkit::dev::DevMaterial::generate(crate::common::offset_now()).unwrap();
    let dir = fx.path("other");
    other.write(&dir).unwrap();
    for name in ["mint-ca.pem", "mint-ca-key.pem"] {
        std::fs::copy(dir.join(name), fx.path(name)).unwrap();
    }
    let (ok, out, err) = tessera_check(&fx.config_path);
    assert!(!ok, "{out}");
    assert!(err.contains("signing.ca_cert"), "names the key: {err}");
}

#[test]
fn max_jwt_svid_lifetime_defaults_to_an_hour_and_is_read_per_trust_domain() {
    let fx = Fixture::new();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(config.trust_domains[0].max_jwt_svid_lifetime, hour);
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let set = |value: &str| {
        text.replace(
            "[[trust_domain]]",
            &format!("[[trust_domain]]\nmax_jwt_svid_lifetime = \"{value}\""),
        )
    };
    std::fs::write(&fx.config_path, set("10m")).unwrap();
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    let ten_minutes = std::time::Duration::from_secs(600);
    assert_eq!(config.trust_domains[0].max_jwt_svid_lifetime, ten_minutes);
    let m = error_after(|_, _| set("0s"));
    assert_has(
        &m,
        &["trust_domain[0].max_jwt_svid_lifetime", "at least 1s"],
    );
    let m = error_after(|_, _| set("soon"));
    assert_has(&m, &["trust_domain[0].max_jwt_svid_lifetime"]);
}

#[test]
fn a_workload_api_trust_domain_takes_no_bundle_file_and_names_its_key_when_wrong() {
    let fx = Fixture::new();
    fx.use_workload_api("unix:/run/spire/agent.sock");
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    let endpoint = &config.workload_api.domains["example.org"];
    assert_eq!(endpoint.address(), "unix:///run/spire/agent.sock");
    assert!(config.trust_domains[0].x509_roots.is_empty());
    assert_eq!(
        config.workload_api.timeout,
        std::time::Duration::from_secs(10)
    );
    let beside_files = error_after(|t, _| {
        t.replace(
            "[[trust_domain]]",
            "[[trust_domain]]\nworkload_api = \"unix:///run/spire/agent.sock\"",
        )
    });
    assert_has(
        &beside_files,
        &["trust_domain[0].workload_api", "remove `x509_bundle`"],
    );
    let not_an_endpoint = error_after(|t, fx| {
        fx.use_workload_api("https://agent.example.org");
        std::fs::read_to_string(&fx.config_path).unwrap_or(t)
    });
    assert_has(
        &not_an_endpoint,
        &["trust_domain[0].workload_api", "unix:///"],
    );
    let misspelt = error_after(|t, _| {
        t.replace(
            "[[trust_domain]]",
            "[[trust_domain]]\nworkload_api_socket = \"x\"",
        )
    });
    assert_has(&misspelt, &["unknown field `workload_api_socket`"]);
    let neither = error_after(|t, _| {
        t.lines()
            .filter(|l| !l.starts_with("x509_bundle") && !l.starts_with("jwt_bundle"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    assert_has(&neither, &["trust_domain[0].name", "workload_api"]);
    let timeout = error_after(|t, _| {
        t.replacen(
            "[server]\n",
            "[server]\nworkload_api_timeout = \"soon\"\n",
            1,
        )
    });
    assert_has(&timeout, &["server.workload_api_timeout"]);
}

#[test]
fn a_bundle_endpoint_trust_domain_takes_no_other_source_and_names_its_key_when_wrong() {
    let fx = Fixture::new();
    fx.append_config(
        "\n[[trust_domain]]\nname = \"partner.org\"\n\
         bundle_endpoint_url = \"https://partner.example/bundle\"\n",
    );
    let config = Config::load(&fx.config_path, &SystemClock).unwrap();
    assert_eq!(
        config.workload_api.bundle_endpoints["partner.org"].url,
        "https://partner.example/bundle"
    );
    assert_eq!(
        config.workload_api.min_refresh,
        std::time::Duration::from_secs(30)
    );
    let with = |extra: &str| {
        let extra = extra.to_owned();
        error_after(move |t, _| format!("{t}\n[[trust_domain]]\nname = \"partner.org\"\n{extra}\n"))
    };
    let beside_files =
        with("bundle_endpoint_url = \"https://partner.example/b\"\nx509_bundle = \"x.pem\"");
    assert_has(
        &beside_files,
        &[
            "trust_domain[1].bundle_endpoint_url",
            "remove `x509_bundle`",
        ],
    );
    let beside_agent = with(
        "bundle_endpoint_url = \"https://partner.example/b\"\nworkload_api = \"unix:///a.sock\"",
    );
    assert_has(
        &beside_agent,
        &["trust_domain[1].bundle_endpoint_url", "`workload_api`"],
    );
    let plain_http = with("bundle_endpoint_url = \"http://partner.example/b\"");
    assert_has(
        &plain_http,
        &["trust_domain[1].bundle_endpoint_url", "https_web"],
    );
    let ca_alone = with("x509_bundle = \"x.pem\"\nbundle_endpoint_ca = \"ca.pem\"");
    assert_has(
        &ca_alone,
        &["trust_domain[1].bundle_endpoint_ca", "bundle_endpoint_url"],
    );
    let no_file = with(
        "bundle_endpoint_url = \"https://partner.example/b\"\nbundle_endpoint_ca = \"/nope.pem\"",
    );
    assert_has(&no_file, &["trust_domain[1].bundle_endpoint_ca"]);
}
