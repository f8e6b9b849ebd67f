//! Transmitter configuration metadata (SSF 1.0 §7.1), served at
//! `/.well-known/ssf-configuration`.

use bytes::Bytes;
use serde_json::json;

use super::events::SUBJECT_MEMBERS;
use super::stream::{POLL, PUSH};

/// Returns the metadata document of the transmitter `issuer` (built once at start).
pub fn document(issuer: &str) -> Bytes {
    let doc = json!({
        "spec_version": "1_0",
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": format!("{issuer}/ssf/streams"),
        "status_endpoint": format!("{issuer}/ssf/status"),
        "verification_endpoint": format!("{issuer}/ssf/verify"),
        "critical_subject_members": SUBJECT_MEMBERS,
        // Receivers authenticate with an X509-SVID client certificate (RFC 8705 mTLS) or a
        // JWT-SVID bearer token (RFC 6750).
        "authorization_schemes": [
            {"spec_urn": "urn:ietf:rfc:8705"},
            {"spec_urn": "urn:ietf:rfc:6750"},
        ],
        // Every stream gets every event it asked for; there are no subject endpoints.
        "default_subjects": "ALL",
    });
    Bytes::from(doc.to_string())
}
