//! Configuration: the TOML file ([`file::FileConfig`]) is read and checked once into a
//! [`Config`]; every later stage trusts what it holds. Errors name the file and the key.

mod file;
mod ledger;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use tessera_core::clock::Clock;
use tessera_core::domain::CredentialKind;
use tessera_core::keys::{self, SecretKey};
use tessera_core::policy::{Grant, SpiffePattern};
use tessera_core::spiffe_id::{SpiffeId, TrustDomain};

pub use self::bundle_endpoint::BundleEndpoint;
pub use self::file::FileConfig;
pub use self::grant::GrantWarning;
pub use self::ledger::{
    DEFAULT_LEDGER_CACHE, DEFAULT_POOL_SIZE, DatabaseUrl, LedgerBackend, LedgerConfig,
    PostgresTarget,
};
pub use self::oidc::OidcIssuerConfig;
pub use self::signing::{JWKS_MAX_AGE, JwtKeyConfig, MintCaConfig, SigningConfig, Trust};
pub use self::ssf::SsfConfig;
pub use self::workload_api::{WorkloadApiConfig, WorkloadApiEndpoint};
pub use tessera_core::attest::TrustDomainBundle as TrustDomainConfig;

pub use tessera_core::policy::MAX_GRANT_TTL;
/// `default_ttl` is at most this when not set.
pub const DEFAULT_TTL_CAP: Duration = Duration::from_secs(300);
/// `max_ttl` when not set.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(900);

/// A configuration error. `Display` names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read configuration: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub server: ServerConfig,
    pub ledger: LedgerConfig,
    pub signing: SigningConfig,
    /// Every trust domain; those of `workload_api` have no roots or keys here (they come from
    /// the Workload API when the broker starts: see `crate::workload_api`).
    pub trust_domains: Vec<TrustDomainConfig>,
    /// The trust domains whose bundles come from a SPIFFE Workload API.
    pub workload_api: WorkloadApiConfig,
    pub oidc_issuers: Vec<OidcIssuerConfig>,
    pub admin_ids: Vec<SpiffeId>,
    /// The audit log file (`[audit] path`, default `audit.log` beside the ledger).
    pub audit_path: PathBuf,
    pub grants: Vec<Grant>,
    /// `[status_list]`.
    pub status_list: crate::status_list::StatusListConfig,
    /// `[ssf]`: the Shared Signals transmitter.
    pub ssf: SsfConfig,
    /// Things that load but deserve an operator's attention (wildcard CI trust).
    pub warnings: Vec<String>,
    /// The file as it was read (what a reload compares against to tell what changed).
    pub text: SourceText,
    /// The warnings about grants, by grant (also in `warnings`).
    pub grant_warnings: Vec<GrantWarning>,
}

/// A configuration file's text. `Debug` prints only its length: the file may hold a database
/// password (`[ledger] url`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SourceText(pub String);

impl std::fmt::Debug for SourceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceText({} bytes)", self.0.len())
    }
}

/// `[server]`, checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub tls_cert_chain: Vec<CertificateDer<'static>>,
    pub tls_key: SecretKey,
    pub tls_client_ca: Option<Vec<CertificateDer<'static>>>,
    pub issuer: String,
    pub audience: String,
    pub shutdown_grace: Duration,
    /// Credential requests handled at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Connections each listener holds, in all and per peer address.
    pub connections: crate::conns::ConnLimits,
    /// Watch stream pools, per-identity share and replay concurrency.
    pub watch: crate::watchers::WatchLimits,
    /// RFC 7009 revocations each workload may make.
    pub revoke_rate: crate::rate_limit::Rate,
    /// How long an HTTPS connection may stay open with no request in flight.
    pub http_idle_timeout: Duration,
}

/// A value that is not of the form its key takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    #[error("`{0}` is not a duration like 500ms, 90s, 5m, 1h")]
    Duration(String),
    #[error("`{0}` is not a size like 67108864, \"512KiB\" or \"64MiB\"")]
    Size(String),
}

/// Parses durations written as `250ms`, `90s`, `5m`, `1h` or `2d` (a whole number and one
/// unit).
///
/// Fails with a message saying the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, BadValue> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| BadValue::Duration(text.to_owned()))?;
    let secs = match unit {
        "us" | "µs" => return Ok(Duration::from_micros(n)),
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(BadValue::Duration(text.to_owned())),
    };
    Ok(Duration::from_secs(secs))
}

/// Parses a size: an integer number of bytes, optionally followed by `B`, `KiB`, `MiB` or
/// `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000). Fails with a message naming the
/// text when it is not one, or does not fit in `usize`.
pub fn parse_size(text: &str) -> Result<usize, BadValue> {
    let bad = || BadValue::Size(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(bad)
}

/// Collects errors with the file name attached.
struct Checker<'a> {
    file: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn addr(
        &self,
        key: &str,
        value: Option<&str>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let text = value.unwrap_or(default);
        text.parse()
            .map_err(|e| self.invalid(key, format!("`{text}` is not host:port: {e}")))
    }

    fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        value.map_or(Ok(default), |v| {
            parse_duration(v).map_err(|m| self.invalid(key, m.to_string()))
        })
    }

    fn size(
        &self,
        key: &str,
        value: Option<&file::ByteSize>,
        default: usize,
    ) -> Result<usize, ConfigError> {
        match value {
            None => Ok(default),
            Some(file::ByteSize::Bytes(n)) => usize::try_from(*n)
                .map_err(|_| self.invalid(key, format!("{n} bytes do not fit in memory"))),
            Some(file::ByteSize::Text(text)) => {
                parse_size(text).map_err(|m| self.invalid(key, m.to_string()))
            }
        }
    }

    fn certs(&self, key: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        keys::certificates(Path::new(path)).map_err(|m| self.invalid(key, m.to_string()))
    }

    fn key(&self, key: &str, path: &str) -> Result<SecretKey, ConfigError> {
        keys::private_key(Path::new(path)).map_err(|m| self.invalid(key, m.to_string()))
    }
}

impl Config {
    /// Reads and validates the configuration file at `path`. `clock` decides which grants have
    /// expired. Fails with the first problem found, naming the file and key.
    pub fn load(path: &Path, clock: &dyn Clock) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text, clock)
    }

    /// Parses and validates `text`, the configuration file at `path` (read by the caller).
    /// Fails as [`Config::load`].
    pub fn parse(path: &Path, text: &str, clock: &dyn Clock) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut config = Config::from_file(path, file, clock)?;
        config.text = SourceText(text.to_owned());
        Ok(config)
    }

    /// Validates an already parsed file; `path` is only used in error messages.
    pub fn from_file(
        path: &Path,
        file: FileConfig,
        clock: &dyn Clock,
    ) -> Result<Config, ConfigError> {
        let check = Checker { file: path };
        let server = server(&check, &file.server)?;
        let ledger = ledger::ledger(&check, &file.ledger)?;
        let (signing, signing_warnings) = signing::signing(&check, &file.signing)?;
        let (trust_domains, sources) = trust_domains(&check, &file.trust_domain)?;
        let workload_api = WorkloadApiConfig {
            domains: sources.workload_api,
            bundle_endpoints: sources.bundle_endpoints,
            timeout: check.duration(
                "server.workload_api_timeout",
                file.server.workload_api_timeout.as_deref(),
                workload_api::DEFAULT_TIMEOUT,
            )?,
            min_refresh: check.duration(
                "server.bundle_endpoint_min_refresh",
                file.server.bundle_endpoint_min_refresh.as_deref(),
                bundle_endpoint::DEFAULT_MIN_REFRESH,
            )?,
        };
        if workload_api.min_refresh.is_zero() {
            return Err(check.invalid("server.bundle_endpoint_min_refresh", "must be above 0"));
        }
        let known = |td: &str| trust_domains.iter().any(|t| t.name.as_str() == td);
        let mut admin_ids = Vec::new();
        for (i, id) in file.admin.spiffe_ids.iter().enumerate() {
            let key = format!("admin.spiffe_ids[{i}]");
            let id: SpiffeId = id
                .parse()
                .map_err(|e| check.invalid(&key, format!("`{id}`: {e}")))?;
            if !known(id.trust_domain_name()) {
                return Err(check.invalid(
                    key,
                    format!("unknown trust domain `{}`", id.trust_domain_name()),
                ));
            }
            admin_ids.push(id);
        }
        let oidc_issuers = oidc::issuers(&check, &file.oidc_issuer)?;
        let status_list = status_list::status_list(&check, &file.status_list)?;
        let ssf = ssf::ssf(&check, &file.ssf)?;
        let audit_path = match (&file.audit.path, &ledger.backend) {
            (Some(path), _) => PathBuf::from(path),
            (None, LedgerBackend::Redb(ledger)) => ledger.with_file_name("audit.log"),
            (None, LedgerBackend::Postgres(_)) => PathBuf::from("tessera-data/audit.log"),
        };
        let mut warnings = limits::warnings(&file.server);
        warnings.extend(signing_warnings);
        let mut grant_warnings = Vec::new();
        let mut cx = grant::GrantContext {
            today: today(clock),
            known: &known,
            issuers: &oidc_issuers,
            warnings: &mut warnings,
            lint: &mut grant_warnings,
        };
        let mut grants: Vec<Grant> = Vec::with_capacity(file.grant.len());
        for (i, section) in file.grant.iter().enumerate() {
            let grant = grant::build(&check, i, section, &mut cx)?;
            if grants.iter().any(|g| g.name == grant.name) {
                return Err(check.invalid(
                    format!("grant[{i}].name"),
                    format!("`{}` is used twice", grant.name),
                ));
            }
            if grant.credentials.contains(&CredentialKind::X509) && signing.mint_cas.is_empty() {
                return Err(check.invalid(
                    format!("grant[{i}].credentials"),
                    "allows x509 but no mint CA is set ([signing] ca_cert and ca_key, or mint_cas)",
                ));
            }
            grants.push(grant);
        }
        Ok(Config {
            source: path.to_path_buf(),
            server,
            ledger,
            signing,
            trust_domains,
            workload_api,
            oidc_issuers,
            admin_ids,
            audit_path,
            grants,
            status_list,
            ssf,
            warnings,
            grant_warnings,
            text: SourceText::default(),
        })
    }
}

fn today(clock: &dyn Clock) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(clock.unix_seconds())
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN)
}

fn server(check: &Checker<'_>, s: &file::ServerSection) -> Result<ServerConfig, ConfigError> {
    let grpc_addr = check.addr("server.grpc_addr", s.grpc_addr.as_deref(), "127.0.0.1:8443")?;
    let http_addr = check.addr("server.http_addr", s.http_addr.as_deref(), "127.0.0.1:8444")?;
    let issuer = s
        .issuer
        .clone()
        .unwrap_or_else(|| format!("https://{http_addr}"));
    if !issuer.starts_with("https://") || issuer.contains(['?', '#']) || issuer.ends_with('/') {
        return Err(check.invalid(
            "server.issuer",
            format!("`{issuer}` must be an https URL with no query, fragment or trailing `/`"),
        ));
    }
    let audience = s.audience.clone().unwrap_or_else(|| "tessera".to_owned());
    if audience.is_empty() {
        return Err(check.invalid("server.audience", "must not be empty"));
    }
    let tls_client_ca = match &s.tls_client_ca {
        Some(path) => Some(check.certs("server.tls_client_ca", path)?),
        None => None,
    };
    Ok(ServerConfig {
        grpc_addr,
        http_addr,
        tls_cert_chain: check.certs("server.tls_cert", &s.tls_cert)?,
        tls_key: check.key("server.tls_key", &s.tls_key)?,
        tls_client_ca,
        issuer,
        audience,
        max_in_flight: s
            .max_in_flight
            .unwrap_or(crate::limits::DEFAULT_MAX_IN_FLIGHT)
            .max(1),
        connections: crate::conns::ConnLimits {
            total: s
                .max_connections
                .unwrap_or(crate::conns::DEFAULT_MAX_CONNECTIONS)
                .max(1),
            per_ip: s
                .max_connections_per_ip
                .unwrap_or(crate::conns::DEFAULT_MAX_CONNECTIONS_PER_IP)
                .max(1),
        },
        watch: limits::watch(check, s)?,
        revoke_rate: limits::revoke_rate(check, s)?,
        http_idle_timeout: check.duration(
            "server.http_idle_timeout",
            s.http_idle_timeout.as_deref(),
            crate::https_conns::DEFAULT_IDLE_TIMEOUT,
        )?,
        shutdown_grace: check.duration(
            "server.shutdown_grace",
            s.shutdown_grace.as_deref(),
            Duration::from_secs(10),
        )?,
    })
}

/// Where the bundles of the trust domains that rotate come from, by trust domain name.
#[derive(Debug, Default)]
struct RotatingSources {
    workload_api: BTreeMap<String, WorkloadApiEndpoint>,
    bundle_endpoints: BTreeMap<String, BundleEndpoint>,
}

/// Checks every `[[trust_domain]]`; returns them, and where the bundles of those whose bundles
/// rotate come from. Fails naming the key of the first problem.
fn trust_domains(
    check: &Checker<'_>,
    sections: &[file::TrustDomainSection],
) -> Result<(Vec<TrustDomainConfig>, RotatingSources), ConfigError> {
    let mut out: Vec<TrustDomainConfig> = Vec::new();
    let mut sources = RotatingSources::default();
    for (i, s) in sections.iter().enumerate() {
        let key = |k: &str| format!("trust_domain[{i}].{k}");
        let name: TrustDomain = s
            .name
            .parse()
            .map_err(|e| check.invalid(key("name"), format!("`{}`: {e}", s.name)))?;
        if out.iter().any(|t| t.name == name) {
            return Err(check.invalid(
                key("name"),
                format!("trust domain `{name}` is listed twice"),
            ));
        }
        bundle_source(check, i, name.as_str(), s, &mut sources)?;
        let x509_roots = match &s.x509_bundle {
            Some(path) => check.certs(&key("x509_bundle"), path)?,
            None => Vec::new(),
        };
        let jwt_keys = match &s.jwt_bundle {
            Some(path) => keys::jwt_bundle(&PathBuf::from(path))
                .map_err(|m| check.invalid(key("jwt_bundle"), m.to_string()))?,
            None => Vec::new(),
        };
        let max_jwt_svid_lifetime = check.duration(
            &key("max_jwt_svid_lifetime"),
            s.max_jwt_svid_lifetime.as_deref(),
            tessera_core::attest::jwt_svid::DEFAULT_MAX_LIFETIME,
        )?;
        if max_jwt_svid_lifetime.as_secs() == 0 {
            return Err(check.invalid(key("max_jwt_svid_lifetime"), "must be at least 1s"));
        }
        out.push(TrustDomainConfig {
            name,
            x509_roots,
            jwt_keys,
            max_jwt_svid_lifetime,
        });
    }
    Ok((out, sources))
}

/// Checks that `[[trust_domain]]` number `i` (`s`, trust domain `name`) names exactly one source of bundles (files,
/// `workload_api` or `bundle_endpoint_url`), and records it in `sources` when it rotates.
/// Fails naming the key of the problem.
fn bundle_source(
    check: &Checker<'_>,
    i: usize,
    name: &str,
    s: &file::TrustDomainSection,
    sources: &mut RotatingSources,
) -> Result<(), ConfigError> {
    let key = |k: &str| format!("trust_domain[{i}].{k}");
    let files = s.x509_bundle.is_some() || s.jwt_bundle.is_some();
    if s.bundle_endpoint_ca.is_some() && s.bundle_endpoint_url.is_none() {
        return Err(check.invalid(
            key("bundle_endpoint_ca"),
            "set only beside `bundle_endpoint_url`",
        ));
    }
    let env = |name: &str| std::env::var(name).ok();
    match (&s.workload_api, &s.bundle_endpoint_url, files) {
        (Some(_), Some(_), _) | (None, Some(_), true) => Err(check.invalid(
            key("bundle_endpoint_url"),
            "both bundles come from the bundle endpoint: remove `x509_bundle`, `jwt_bundle` \
             and `workload_api`, or `bundle_endpoint_url`",
        )),
        (Some(_), None, true) => Err(check.invalid(
            key("workload_api"),
            "both bundles come from the Workload API: remove `x509_bundle` and `jwt_bundle`, \
             or `workload_api`",
        )),
        (Some(value), None, false) => {
            let endpoint = workload_api::endpoint(check, &key("workload_api"), value, &env)?;
            sources.workload_api.insert(name.to_owned(), endpoint);
            Ok(())
        }
        (None, Some(url), false) => {
            let endpoint = bundle_endpoint::bundle_endpoint(
                check,
                &key("bundle_endpoint_url"),
                url,
                &key("bundle_endpoint_ca"),
                s.bundle_endpoint_ca.as_deref(),
            )?;
            sources.bundle_endpoints.insert(name.to_owned(), endpoint);
            Ok(())
        }
        (None, None, false) => Err(check.invalid(
            key("name"),
            "set `x509_bundle`, `jwt_bundle` or both, `workload_api`, or `bundle_endpoint_url`",
        )),
        (None, None, true) => Ok(()),
    }
}

mod bundle_endpoint;
mod grant;
mod limits;
mod oidc;
mod signing;
mod ssf;
mod status_list;
mod workload_api;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_in_each_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5 minutes").is_err());
    }

    #[test]
    fn parses_sizes_as_bytes_or_with_a_unit() {
        assert_eq!(parse_size("67108864"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("64 megabytes").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
    }
}
