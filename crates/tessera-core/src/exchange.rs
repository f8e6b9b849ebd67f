//! The RFC 8693 names that the `/token` endpoint and its clients share.

/// The token-exchange grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token type URI of an OAuth access token.
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Token type URI of a JWT.
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Token type URI of an OIDC ID token (what CI platforms issue).
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
