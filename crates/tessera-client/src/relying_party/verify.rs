//! Offline checks of a presented token: signature against the broker's JWKS, `typ`, `iss`,
//! `aud`, `exp`/`nbf` against the injected clock, then what the presentation must match: the
//! certificate a `cnf`-bound token is bound to, and the endpoint's purpose.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{JwksError, Presentation, Refusal};

/// Seconds of clock skew tolerated on `exp` and `nbf`. Rules are kept this much longer than
/// the longest token lifetime, so no token a dropped rule covered can still be accepted.
pub(super) const LEEWAY_SECS: i64 = 60;

/// Verification keys by `kid`, with the algorithm each is for.
pub(super) type Keys = HashMap<String, (DecodingKey, Algorithm)>;

/// Returns the keys of `jwks` that carry a `kid` and an `alg`. Fails when a key has an
/// unsupported `alg` or cannot be read, or none is usable.
pub(super) fn keys(jwks: &JwkSet) -> Result<Keys, JwksError> {
    let mut keys = HashMap::new();
    for jwk in &jwks.keys {
        let (Some(kid), Some(alg)) = (&jwk.common.key_id, jwk.common.key_algorithm) else {
            continue;
        };
        let alg: Algorithm = alg
            .to_string()
            .parse()
            .map_err(|_| JwksError::UnsupportedAlg { kid: kid.clone() })?;
        let key = DecodingKey::from_jwk(jwk).map_err(|source| JwksError::BadKey {
            kid: kid.clone(),
            source,
        })?;
        keys.insert(kid.clone(), (key, alg));
    }
    if keys.is_empty() {
        return Err(JwksError::NoKey);
    }
    Ok(keys)
}

/// The keys and claims a token must match.
pub(super) struct Verifier {
    keys: Keys,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Returns a verifier for tokens from `issuer` for `destination` signed by a key of `jwks`.
    /// Fails when a key has an unsupported `alg` or cannot be read, or none is usable.
    pub(super) fn new(issuer: &str, destination: &str, jwks: &JwkSet) -> Result<Self, JwksError> {
        let keys = keys(jwks)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[destination]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        // Time is checked against the injected clock, in `lifetime`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(Verifier { keys, validation })
    }

    /// Returns the claims and `iat` of `token` if its header, signature, `iss`, `aud`, `iat`,
    /// `exp` and `nbf` (at `now`, unix seconds) are valid; the refusal otherwise.
    pub(super) fn verify(&self, token: &str, now: i64) -> Result<(Value, i64), Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refusal::NotAJwt(e.to_string()))?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err(Refusal::NotAnAccessToken);
        }
        let Some((key, alg)) = header.kid.as_deref().and_then(|kid| self.keys.get(kid)) else {
            return Err(Refusal::UnknownKey);
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![*alg];
        let claims = jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|e| Refusal::Invalid(e.to_string()))?
            .claims;
        let iat = lifetime(&claims, now)?;
        Ok((claims, iat))
    }
}

/// Returns the token's `iat` if it has one and `exp`/`nbf` allow it at `now`.
fn lifetime(claims: &Value, now: i64) -> Result<i64, Refusal> {
    let Some(iat) = claims["iat"].as_i64() else {
        return Err(Refusal::Invalid("no iat".into()));
    };
    let Some(exp) = claims["exp"].as_i64() else {
        return Err(Refusal::Invalid("no exp".into()));
    };
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(Refusal::Expired);
    }
    if claims["nbf"]
        .as_i64()
        .is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf)
    {
        return Err(Refusal::NotYetValid);
    }
    Ok(iat)
}

/// Checks the token against how it was presented: a `cnf`-bound token (RFC 8705 `x5t#S256`)
/// only with the certificate it is bound to, any token only at an endpoint of its `scope`.
/// Returns the refusal when either does not match.
pub(super) fn presented(claims: &Value, presented: &Presentation<'_>) -> Result<(), Refusal> {
    if let Some(cnf) = claims.get("cnf") {
        // A confirmation method we cannot check is refused rather than ignored.
        let Some(thumbprint) = cnf.get("x5t#S256").and_then(Value::as_str) else {
            return Err(Refusal::UnsupportedConfirmation);
        };
        let Some(certificate) = presented.peer_certificate else {
            return Err(Refusal::CertificateMissing);
        };
        if tessera_core::attest::x5t_s256(certificate) != thumbprint {
            return Err(Refusal::CertificateMismatch);
        }
    }
    if claims["scope"].as_str() != Some(presented.purpose) {
        return Err(Refusal::WrongScope);
    }
    Ok(())
}
