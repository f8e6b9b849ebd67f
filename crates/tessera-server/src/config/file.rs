//! The configuration file as written (TOML, `deny_unknown_fields`). Nothing here is validated;
//! [`super::Config::from_file`] turns a [`FileConfig`] into a checked [`super::Config`] once.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerSection,
    #[serde(default)]
    pub ledger: LedgerSection,
    pub signing: super::signing::SigningSection,
    #[serde(default)]
    pub trust_domain: Vec<TrustDomainSection>,
    #[serde(default)]
    pub oidc_issuer: Vec<OidcIssuerSection>,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub grant: Vec<GrantSection>,
    #[serde(default)]
    pub status_list: super::status_list::StatusListSection,
    #[serde(default)]
    pub ssf: SsfSection,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub grpc_addr: Option<String>,
    pub http_addr: Option<String>,
    pub tls_cert: String,
    pub tls_key: String,
    pub tls_client_ca: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_in_flight: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub http_idle_timeout: Option<String>,
    /// Deprecated: the size of each watcher pool unless its own key is set.
    pub max_watchers: Option<usize>,
    pub max_revocation_watchers: Option<usize>,
    pub max_event_watchers: Option<usize>,
    pub max_watchers_per_identity: Option<usize>,
    pub max_replays: Option<usize>,
    pub revoke_rate_per_workload: Option<u32>,
    pub revoke_burst_per_workload: Option<u32>,
    pub workload_api_timeout: Option<String>,
    pub bundle_endpoint_min_refresh: Option<String>,
}

/// `[ledger]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    pub path: Option<String>,
    pub url: Option<String>,
    pub pool_size: Option<u32>,
    pub connect_timeout: Option<String>,
    pub ca_file: Option<String>,
    pub retain_expired: Option<String>,
    pub sweep_interval: Option<String>,
    pub fsync: Option<bool>,
    pub journal: Option<bool>,
    pub checkpoint_interval: Option<String>,
    pub cache_size: Option<ByteSize>,
    pub commit_linger: Option<String>,
}

/// A size in bytes: an integer, or a string like `"64MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

/// One `[[trust_domain]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustDomainSection {
    pub name: String,
    pub x509_bundle: Option<String>,
    pub jwt_bundle: Option<String>,
    /// `unix:///…`, `tcp://…` or `env`: both bundles come from this SPIFFE Workload API.
    pub workload_api: Option<String>,
    /// `https://…`: the bundle comes from this SPIFFE bundle endpoint (`https_web`).
    pub bundle_endpoint_url: Option<String>,
    /// A PEM file of roots trusted beside the Web PKI for `bundle_endpoint_url`.
    pub bundle_endpoint_ca: Option<String>,
    pub max_jwt_svid_lifetime: Option<String>,
}

/// One `[[oidc_issuer]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerSection {
    pub issuer: String,
    pub profile: Option<String>,
    pub audience: Option<String>,
    pub jwks_uri: Option<String>,
    pub ca_file: Option<String>,
    pub max_token_lifetime: Option<String>,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    pub path: Option<String>,
}

/// `[ssf]`: the Shared Signals transmitter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfSection {
    pub ca_file: Option<String>,
    pub max_streams: Option<usize>,
    pub max_streams_per_identity: Option<usize>,
    pub max_queue: Option<usize>,
    pub max_backoff: Option<String>,
    pub min_verification_interval: Option<String>,
    #[serde(default)]
    pub push_hosts: Vec<String>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
}

/// One `[[grant]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSection {
    pub name: Option<String>,
    pub workload: Option<String>,
    pub owner: Option<String>,
    pub expires: Option<DateValue>,
    #[serde(default)]
    pub destinations: Vec<String>,
    #[serde(default)]
    pub purposes: Vec<String>,
    pub credentials: Option<Vec<String>>,
    pub default_ttl: Option<String>,
    pub max_ttl: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<MatchSection>,
}

/// `[grant.match]`: who may act as the grant's workload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    pub spiffe_id: Option<String>,
    pub issuer: Option<String>,
    pub subject: Option<MatchText>,
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, MatchText>,
}

/// A value to match: an exact string, or `{ pattern = "..." }` (an anchored regular expression).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MatchText {
    Exact(String),
    Pattern { pattern: String },
}

/// A date written either as a TOML date (`2027-06-30`) or a string (`"2027-06-30"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DateValue {
    Text(String),
    Toml(toml::value::Datetime),
}

impl DateValue {
    /// Returns the date as `YYYY-MM-DD` text for parsing.
    pub fn to_text(&self) -> String {
        match self {
            DateValue::Text(text) => text.clone(),
            DateValue::Toml(datetime) => datetime.to_string(),
        }
    }
}
