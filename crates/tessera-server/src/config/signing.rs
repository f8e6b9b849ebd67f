//! `[signing]`: the keys that sign minted JWTs and the CAs that sign X.509-SVIDs, each either in
//! its one-key form (`jwt_key`; `ca_cert` + `ca_key`) or as a list with one `active` entry
//! (`jwt_keys`; `mint_cas`) for rotation without downtime (DESIGN.md "Signing keys rotate
//! without downtime"), and `publish_before`: how long a new JWT key is published before it
//! signs.

use std::time::Duration;

use serde::Deserialize;

use super::{Checker, ConfigError};
pub use crate::signing::{JwtKeyConfig, MintCaConfig, SigningConfig, Trust};

/// Default of `[signing] publish_before`.
pub const DEFAULT_PUBLISH_BEFORE: Duration = Duration::from_secs(600);
/// How long relying parties may cache the JWKS (`Cache-Control: max-age` of
/// `/.well-known/jwks.json`). A `publish_before` shorter than this warns.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// `[signing]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSection {
    pub jwt_key: Option<String>,
    pub jwt_keys: Option<Vec<JwtKeySection>>,
    pub publish_before: Option<String>,
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub mint_cas: Option<Vec<MintCaSection>>,
}

/// One entry of `jwt_keys`: `{ key = "a.pem", active = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeySection {
    pub key: String,
    #[serde(default)]
    pub active: bool,
}

/// One entry of `mint_cas`: `{ cert = "ca.pem", key = "ca-key.pem", active = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintCaSection {
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub active: bool,
}

impl super::Config {
    /// Returns what the mint CAs of this configuration are checked against: every trust
    /// domain's X.509 bundle and the trust domains grants mint X.509-SVIDs in.
    pub fn x509_trust(&self) -> Trust {
        Trust::new(&self.trust_domains, &self.grants)
    }
}

/// Checks `[signing]`; returns it and the warnings it deserves. Fails naming the key when a
/// file cannot be read, both forms of a key are set, a list is empty, does not have exactly
/// one `active` entry, or lists the same key twice.
pub(super) fn signing(
    check: &Checker<'_>,
    s: &SigningSection,
) -> Result<(SigningConfig, Vec<String>), ConfigError> {
    let publish_before = check.duration(
        "signing.publish_before",
        s.publish_before.as_deref(),
        DEFAULT_PUBLISH_BEFORE,
    )?;
    let mut warnings = Vec::new();
    if publish_before < JWKS_MAX_AGE {
        warnings.push(format!(
            "[signing] publish_before = {publish_before:?} is shorter than the {JWKS_MAX_AGE:?} \
             relying parties may cache the JWKS: after a rotation some may see an unknown kid"
        ));
    }
    let config = SigningConfig {
        jwt_keys: jwt_keys(check, s)?,
        publish_before,
        mint_cas: mint_cas(check, s)?,
    };
    Ok((config, warnings))
}

/// Returns the JWT keys of `jwt_key` or `jwt_keys`.
fn jwt_keys(check: &Checker<'_>, s: &SigningSection) -> Result<Vec<JwtKeyConfig>, ConfigError> {
    let keys = match (&s.jwt_key, &s.jwt_keys) {
        (Some(_), Some(_)) => {
            return Err(check.invalid(
                "signing.jwt_keys",
                "set either `jwt_key` (one key) or `jwt_keys` (a list with one active key), \
                 not both",
            ));
        }
        (None, None) => {
            return Err(check.invalid(
                "signing.jwt_key",
                "required: the key that signs minted JWTs (or `jwt_keys`, a list)",
            ));
        }
        (Some(path), None) => vec![JwtKeyConfig {
            key: check.key("signing.jwt_key", path)?,
            source: "signing.jwt_key".into(),
            active: true,
        }],
        (None, Some(list)) => {
            let mut keys = Vec::with_capacity(list.len());
            for (i, entry) in list.iter().enumerate() {
                let source = format!("signing.jwt_keys[{i}]");
                keys.push(JwtKeyConfig {
                    key: check.key(&format!("{source}.key"), &entry.key)?,
                    source,
                    active: entry.active,
                });
            }
            keys
        }
    };
    let actives: Vec<bool> = keys.iter().map(|k| k.active).collect();
    one_active(check, "signing.jwt_keys", "key", &actives)?;
    let ders: Vec<&[u8]> = keys.iter().map(|k| k.key.pkcs8_der()).collect();
    distinct(check, "signing.jwt_keys", &ders)?;
    Ok(keys)
}

/// Returns the mint CAs of `ca_cert` + `ca_key` or `mint_cas` (none when neither is set).
fn mint_cas(check: &Checker<'_>, s: &SigningSection) -> Result<Vec<MintCaConfig>, ConfigError> {
    let one = s.ca_cert.is_some() || s.ca_key.is_some();
    let cas = match (&s.ca_cert, &s.ca_key, &s.mint_cas) {
        (_, _, Some(_)) if one => {
            return Err(check.invalid(
                "signing.mint_cas",
                "set either `ca_cert` + `ca_key` (one CA) or `mint_cas` (a list with one active \
                 CA), not both",
            ));
        }
        (None, None, None) => return Ok(Vec::new()),
        (Some(cert), Some(key), None) => vec![MintCaConfig {
            chain: check.certs("signing.ca_cert", cert)?,
            key: check.key("signing.ca_key", key)?,
            source: "signing.ca_cert".into(),
            active: true,
        }],
        (_, _, None) => {
            return Err(check.invalid("signing", "set both `ca_cert` and `ca_key`, or neither"));
        }
        (_, _, Some(list)) => {
            let mut cas = Vec::with_capacity(list.len());
            for (i, entry) in list.iter().enumerate() {
                let source = format!("signing.mint_cas[{i}]");
                cas.push(MintCaConfig {
                    chain: check.certs(&format!("{source}.cert"), &entry.cert)?,
                    key: check.key(&format!("{source}.key"), &entry.key)?,
                    source,
                    active: entry.active,
                });
            }
            cas
        }
    };
    let actives: Vec<bool> = cas.iter().map(|c| c.active).collect();
    one_active(check, "signing.mint_cas", "CA", &actives)?;
    let ders: Vec<&[u8]> = cas
        .iter()
        .map(|c| c.chain.first().map_or(&[][..], |d| d.as_ref()))
        .collect();
    distinct(check, "signing.mint_cas", &ders)?;
    Ok(cas)
}

/// Fails unless exactly one of `actives` is true (a list must not be empty).
fn one_active(
    check: &Checker<'_>,
    key: &str,
    what: &str,
    actives: &[bool],
) -> Result<(), ConfigError> {
    if actives.is_empty() {
        return Err(check.invalid(key, format!("list at least one {what}")));
    }
    match actives.iter().filter(|a| **a).count() {
        1 => Ok(()),
        0 => Err(check.invalid(
            key,
            format!("mark the {what} that signs with `active = true` (none is)"),
        )),
        n => Err(check.invalid(
            key,
            format!("exactly one {what} may be `active = true`, not {n}"),
        )),
    }
}

/// Fails when two entries hold the same key or certificate, naming both positions.
fn distinct(check: &Checker<'_>, key: &str, ders: &[&[u8]]) -> Result<(), ConfigError> {
    for (i, a) in ders.iter().enumerate() {
        if let Some(j) = ders.iter().take(i).position(|b| b == a) {
            return Err(check.invalid(
                format!("{key}[{i}]"),
                format!("is the same as {key}[{j}]: list each one once"),
            ));
        }
    }
    Ok(())
}
