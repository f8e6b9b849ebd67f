//! What a caller asks for, parsed once at the API edge: one destination, one purpose, a TTL.

use std::time::Duration;

/// Longest destination or purpose accepted, in bytes.
pub const MAX_NAME_LEN: usize = 512;

/// Why a request field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} is longer than {MAX_NAME_LEN} bytes")]
    TooLong { field: &'static str },
    #[error("{field} may not contain spaces or control characters")]
    BadCharacters { field: &'static str },
}

/// Checks a destination or purpose: non-empty, at most [`MAX_NAME_LEN`] bytes, no whitespace or
/// control characters. Returns the reason it is refused, with `field` left as `"value"`.
pub fn check_name(value: &str) -> Result<(), RequestError> {
    check_field("value", value)
}

fn check_field(field: &'static str, value: &str) -> Result<(), RequestError> {
    if value.is_empty() {
        return Err(RequestError::Missing { field });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(RequestError::TooLong { field });
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RequestError::BadCharacters { field });
    }
    Ok(())
}

/// A request for a credential, already checked for shape (not for permission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRequest {
    pub destination: String,
    pub purpose: String,
    /// `None` means the grant's default TTL.
    pub ttl: Option<Duration>,
}

impl CredentialRequest {
    /// Parses the wire fields; fails naming the first field that is missing or malformed.
    pub fn parse(destination: &str, purpose: &str, ttl_seconds: u32) -> Result<Self, RequestError> {
        check_field("destination", destination)?;
        check_field("purpose", purpose)?;
        Ok(CredentialRequest {
            destination: destination.to_owned(),
            purpose: purpose.to_owned(),
            ttl: (ttl_seconds > 0).then(|| Duration::from_secs(u64::from(ttl_seconds))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_empty_oversized_and_spaced_fields() {
        assert_eq!(
            CredentialRequest::parse("", "p", 0),
            Err(RequestError::Missing {
                field: "destination"
            })
        );
        assert_eq!(
            CredentialRequest::parse(&"d".repeat(513), "p", 0),
            Err(RequestError::TooLong {
                field: "destination"
            })
        );
        assert_eq!(
            CredentialRequest::parse("d", "a b", 0),
            Err(RequestError::BadCharacters { field: "purpose" })
        );
        let ok = CredentialRequest::parse("https://x", "read", 60).unwrap();
        assert_eq!(ok.ttl, Some(Duration::from_secs(60)));
        assert_eq!(CredentialRequest::parse("d", "p", 0).unwrap().ttl, None);
    }
}
