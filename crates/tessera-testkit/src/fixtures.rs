//! Fixtures as code: the `[[oidc_issuer]]` and CI `[[grant]]` sections of a broker config, and
//! the claims of the GitHub-shaped CI token they accept. One definition serves the integration
//! tests, the criterion benchmarks and `tessera bench --print-broker-config`.

use std::path::Path;

use serde_json::{Value, json};

use crate::dev::toml_str;

/// The audience every CI token is issued for, and the broker's configured audience.
pub const CI_AUDIENCE: &str = "tessera";
/// Destination and purpose the CI grant allows.
pub const CI_DESTINATION: &str = "https://registry.example.org";
pub const CI_PURPOSE: &str = "image:push";
/// The `sub` of the CI token the grant matches: a GitHub Actions run of `acme/app` on `main`.
pub const CI_SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";
/// The workload the CI grant mints for (the minted token's `sub`).
pub const CI_WORKLOAD: &str = "spiffe://example.org/ci/github/acme/app";

/// A `[[grant]]` section; [`GrantToml::render`] writes it, expiring 2099-01-01.
#[derive(Debug, Clone, Copy)]
pub struct GrantToml<'a> {
    pub name: &'a str,
    pub workload: &'a str,
    pub owner: &'a str,
    pub destinations: &'a [&'a str],
    pub purposes: &'a [&'a str],
    /// Credential kinds; empty leaves the broker's default.
    pub credentials: &'a [&'a str],
    /// The body of `[grant.match]`, as TOML lines.
    pub matches: &'a str,
}

impl GrantToml<'_> {
    /// Returns the section as TOML, starting with a blank line.
    pub fn render(&self) -> String {
        let credentials = if self.credentials.is_empty() {
            String::new()
        } else {
            format!("credentials = {}\n", toml_list(self.credentials))
        };
        format!(
            "\n[[grant]]\nname = {name}\nworkload = {workload}\nowner = {owner}\n\
             expires = \"2099-01-01\"\ndestinations = {destinations}\npurposes = {purposes}\n\
             {credentials}[grant.match]\n{matches}\n",
            name = toml_str(self.name),
            workload = toml_str(self.workload),
            owner = toml_str(self.owner),
            destinations = toml_list(self.destinations),
            purposes = toml_list(self.purposes),
            matches = self.matches.trim(),
        )
    }
}

/// Returns an `[[oidc_issuer]]` section for `issuer` with `profile`, audience
/// [`CI_AUDIENCE`], trusting the TLS CA in `ca_file` for its discovery and JWKS.
pub fn oidc_issuer_toml(issuer: &str, profile: &str, ca_file: &Path) -> String {
    format!(
        "\n[[oidc_issuer]]\nissuer = {issuer}\nprofile = {profile}\naudience = {audience}\n\
         ca_file = {ca}\n",
        issuer = toml_str(issuer),
        profile = toml_str(profile),
        audience = toml_str(CI_AUDIENCE),
        ca = toml_str(&ca_file.to_string_lossy()),
    )
}

/// Returns the CI grant `github-acme-app`: tokens of `issuer` whose `sub` is [`CI_SUBJECT`],
/// owner id 1234 on a GitHub-hosted runner, get JWTs or X.509-SVIDs of [`CI_WORKLOAD`] for
/// [`CI_DESTINATION`] and [`CI_PURPOSE`].
pub fn ci_grant_toml(issuer: &str) -> String {
    GrantToml {
        name: "github-acme-app",
        workload: CI_WORKLOAD,
        owner: "team-app",
        destinations: &[CI_DESTINATION],
        purposes: &[CI_PURPOSE],
        credentials: &["jwt", "x509"],
        matches: &format!(
            "issuer = {}\nsubject = {}\n\
             claims = {{ repository_owner_id = \"1234\", runner_environment = \"github-hosted\" }}",
            toml_str(issuer),
            toml_str(CI_SUBJECT),
        ),
    }
    .render()
}

/// Returns the broker config a CI exchange needs: the GitHub-profile issuer `issuer`, whose
/// TLS certificate chains to `ca_file`, and [`ci_grant_toml`] for its tokens.
pub fn ci_broker_config(issuer: &str, ca_file: &Path) -> String {
    oidc_issuer_toml(issuer, "github", ca_file) + &ci_grant_toml(issuer)
}

/// Returns the claims of a GitHub Actions token from `issuer` that [`ci_grant_toml`] accepts:
/// `acme/app` on `main`, issued at `now`, valid five minutes, with `jti`.
pub fn github_claims(issuer: &str, now: i64, jti: &str) -> Value {
    json!({
        "iss": issuer, "aud": CI_AUDIENCE, "iat": now, "nbf": now, "exp": now + 300,
        "jti": jti, "sub": CI_SUBJECT,
        "repository": "acme/app", "repository_id": "5678", "repository_owner": "acme",
        "repository_owner_id": "1234", "run_id": "9001", "run_attempt": "1", "ref": "refs/heads/main",
        "ref_protected": "true", "runner_environment": "github-hosted", "event_name": "push",
    })
}

/// Returns `items` as a TOML array of strings.
fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", quoted.join(", "))
}
