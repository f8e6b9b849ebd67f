//! JWS compact tokens: splitting, decoding and signature verification against a key set. Used
//! for JWT-SVIDs and CI OIDC tokens alike; each caller adds its own header and claim rules.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::de::DeserializeOwned;

/// The three parts of a JWS compact token.
#[derive(Debug, Clone, Copy)]
pub struct JwsParts<'a> {
    pub header: &'a str,
    pub claims: &'a str,
    pub signature: &'a str,
    /// `header.claims`, the signed bytes.
    pub signing_input: &'a str,
}

/// An `aud` claim: one string or an array of strings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// Returns true when `wanted` is the audience or one of them.
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// Splits a compact JWS; `None` unless it has exactly three dot-separated parts.
pub fn split(token: &str) -> Option<JwsParts<'_>> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let signing_input = token.get(..header.len() + 1 + claims.len())?;
    Some(JwsParts {
        header,
        claims,
        signature,
        signing_input,
    })
}

/// Decodes a base64url JSON part; `None` if it is not base64url or not the expected JSON.
pub fn decode_json<T: DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Parses an `alg` value if it is asymmetric and allowed: RS/ES/PS 256–512, and EdDSA when
/// `allow_eddsa`. `none`, HS* and anything else give `None`.
pub fn parse_alg(alg: &str, allow_eddsa: bool) -> Option<Algorithm> {
    match alg {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "RS512" => Some(Algorithm::RS512),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "PS256" => Some(Algorithm::PS256),
        "PS384" => Some(Algorithm::PS384),
        "PS512" => Some(Algorithm::PS512),
        "EdDSA" if allow_eddsa => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// A public key that verifies token signatures, with the algorithms it may be used with.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    decoding: DecodingKey,
    algs: Vec<Algorithm>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish()
    }
}

impl VerifyingKey {
    /// Builds a key from a public JWK. Its algorithms are its `alg` if set, else every allowed
    /// algorithm of its type. Fails when the JWK is not a usable public key.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, jsonwebtoken::errors::Error> {
        let decoding = DecodingKey::from_jwk(jwk)?;
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => Vec::new(),
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            _ => Vec::new(),
        };
        let pinned = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        let algs = match pinned {
            Some(alg) => family.into_iter().filter(|a| *a == alg).collect(),
            None => family,
        };
        Ok(VerifyingKey {
            kid: jwk.common.key_id.clone(),
            decoding,
            algs,
        })
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    UnknownKid(String),
    AlgKeyMismatch { kid: String, alg: Algorithm },
    BadSignature,
}

/// Verifies the signature of `parts` with `alg` against the key named `kid`, or, without a
/// `kid`, against every key that may use `alg`. Fails naming what did not match.
pub fn verify(
    keys: &[VerifyingKey],
    kid: Option<&str>,
    alg: Algorithm,
    parts: &JwsParts<'_>,
) -> Result<(), SignatureError> {
    let candidates: Vec<&VerifyingKey> = match kid {
        Some(kid) => {
            let key = keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| SignatureError::UnknownKid(kid.to_owned()))?;
            if !key.algs.contains(&alg) {
                return Err(SignatureError::AlgKeyMismatch {
                    kid: kid.to_owned(),
                    alg,
                });
            }
            vec![key]
        }
        None => keys.iter().filter(|k| k.algs.contains(&alg)).collect(),
    };
    let message = parts.signing_input.as_bytes();
    let ok = candidates.iter().any(|key| {
        jsonwebtoken::crypto::verify(parts.signature, message, &key.decoding, alg).unwrap_or(false)
    });
    if ok {
        Ok(())
    } else {
        Err(SignatureError::BadSignature)
    }
}
