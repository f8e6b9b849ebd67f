//! SPIFFE IDs, parsed once (`standards.md` §1): a [`SpiffeId`] that exists is valid.

use std::fmt;
use std::str::FromStr;

/// Maximum length of a SPIFFE ID in bytes (SPIFFE-ID §2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Maximum length of a trust domain name in bytes (SPIFFE-ID §2.3).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID must start with `spiffe://`")]
    WrongScheme,
    #[error("SPIFFE ID is longer than {MAX_SPIFFE_ID_LEN} bytes")]
    TooLong,
    #[error("SPIFFE ID has an empty trust domain")]
    EmptyTrustDomain,
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    #[error(
        "trust domain may contain only lowercase letters, digits, `.`, `-` and `_` \
         (no port, user info or percent-encoding)"
    )]
    BadTrustDomainChar,
    #[error("SPIFFE ID may not have a query or fragment")]
    QueryOrFragment,
    #[error("SPIFFE ID path may not have empty, `.` or `..` segments or a trailing `/`")]
    BadSegment,
    #[error("SPIFFE ID path may contain only letters, digits, `.`, `-` and `_` in segments")]
    BadPathChar,
}

/// A trust domain name, e.g. `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Returns the name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    /// Parses a bare trust domain name (a `spiffe://` prefix is accepted and removed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.strip_prefix("spiffe://").unwrap_or(s);
        validate_trust_domain(name)?;
        Ok(TrustDomain(name.to_owned()))
    }
}

fn validate_trust_domain(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    let ok =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_');
    if !name.bytes().all(ok) {
        return Err(SpiffeIdError::BadTrustDomainChar);
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/'; every segment after it must be non-empty and not `.`/`..`.
    for segment in path[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(SpiffeIdError::BadSegment);
        }
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        if !segment.bytes().all(ok) {
            return Err(SpiffeIdError::BadPathChar);
        }
    }
    Ok(())
}

/// A valid SPIFFE ID: `spiffe://<trust domain><path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    /// Byte offset where the path starts (= length of `spiffe://` + trust domain).
    path_start: usize,
}

impl SpiffeId {
    /// Returns the full ID as a string.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// Returns the trust domain name.
    pub fn trust_domain_name(&self) -> &str {
        &self.id["spiffe://".len()..self.path_start]
    }

    /// Returns the trust domain.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_name().to_owned())
    }

    /// Returns the path, empty for the trust domain's root ID.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// Returns true when the ID has a non-root path (required of workload SVIDs).
    pub fn has_path(&self) -> bool {
        !self.path().is_empty()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    /// Parses per SPIFFE-ID §2; fails with the first rule the string breaks.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or(SpiffeIdError::WrongScheme)?;
        if rest.contains(['?', '#']) {
            return Err(SpiffeIdError::QueryOrFragment);
        }
        let td_end = rest.find('/').unwrap_or(rest.len());
        validate_trust_domain(&rest[..td_end])?;
        validate_path(&rest[td_end..])?;
        Ok(SpiffeId {
            id: s.to_owned(),
            path_start: "spiffe://".len() + td_end,
        })
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_workload_ids_and_splits_them() {
        let id: SpiffeId = "spiffe://example.org/ns/payments/sa/api".parse().unwrap();
        assert_eq!(id.trust_domain_name(), "example.org");
        assert_eq!(id.path(), "/ns/payments/sa/api");
        assert!(id.has_path());
        let root: SpiffeId = "spiffe://example.org".parse().unwrap();
        assert!(!root.has_path());
    }

    #[test]
    fn rejects_every_test_vector_of_the_spec() {
        for bad in [
            "spiffe://TD/a",
            "spiffe://td:1/a",
            "spiffe://u@td/a",
            "spiffe://td/a/",
            "spiffe://td//a",
            "spiffe://td/./a",
            "spiffe://td/../a",
            "spiffe://td/a%41",
            "spiffe://td/a?q",
            "spiffe://td/a#f",
            "spiffe:///a",
            "https://td/a",
            "spiffe://[::1]/a",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn rejects_ids_longer_than_2048_bytes() {
        let long = format!("spiffe://td/{}", "a".repeat(2048));
        assert_eq!(long.parse::<SpiffeId>(), Err(SpiffeIdError::TooLong));
    }
}
