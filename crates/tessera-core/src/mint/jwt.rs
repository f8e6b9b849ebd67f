//! JWT access tokens (RFC 9068 shape, DESIGN.md "What is minted"): header `typ: at+jwt` with
//! `kid`; claims `iss`, `sub`, `aud` (one string), `scope`, `client_id`, `iat`, `nbf`, `exp`,
//! `jti`, and `cnf.x5t#S256` for callers attested over mTLS.
//!
//! The signing key is parsed once; the header is encoded once.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::json;

use super::{MintError, random_bytes};
use crate::domain::id;
use crate::keys::SecretKey;
use crate::spiffe_id::SpiffeId;

enum Key {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Key {
    /// Parses a PKCS#8 P-256 or Ed25519 key; fails naming what is accepted.
    fn parse(pkcs8: &[u8]) -> Result<Self, MintError> {
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8) {
            return Ok(Key::Es256(k));
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8) {
            return Ok(Key::EdDsa(k));
        }
        Err(MintError::Key(
            "must be a PKCS#8 P-256 (ES256) or Ed25519 (EdDSA) private key".into(),
        ))
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::EdDsa(_) => "EdDSA",
        }
    }

    /// Returns the public JWK members in RFC 7638 order (for the thumbprint) and the full JWK.
    fn public_jwk(&self) -> serde_json::Value {
        match self {
            Key::Es256(k) => {
                let point = k.public_key().as_ref();
                let (x, y) = point
                    .get(1..)
                    .unwrap_or_default()
                    .split_at(32.min(point.len().saturating_sub(1)));
                json!({"crv": "P-256", "kty": "EC", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
            }
            Key::EdDsa(k) => {
                json!({"crv": "Ed25519", "kty": "OKP", "x": URL_SAFE_NO_PAD.encode(k.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, MintError> {
        match self {
            Key::Es256(k) => k
                .sign(rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| MintError::Sign),
            Key::EdDsa(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

#[derive(Serialize)]
struct Cnf<'a> {
    #[serde(rename = "x5t#S256")]
    x5t_s256: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    scope: &'a str,
    client_id: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Cnf<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusMechanisms<'a>>,
}

/// The `status` claim (draft-ietf-oauth-status-list): the only mechanism used is a list.
#[derive(Serialize)]
struct StatusMechanisms<'a> {
    status_list: StatusClaim<'a>,
}

/// Where a minted token's status is published: index `idx` of the list at `uri`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusClaim<'a> {
    pub idx: u32,
    pub uri: &'a str,
}

/// Parameters of [`JwtMinter::mint`].
#[derive(Debug, Clone, Copy)]
pub struct MintJwtParams<'a> {
    pub workload: &'a SpiffeId,
    pub destination: &'a str,
    pub purpose: &'a str,
    pub ttl: Duration,
    /// Issue time in unix milliseconds (see [`crate::revocation::CutOffs::issue_ms`]): the
    /// `jti` starts with it, `iat` and `nbf` are its second.
    pub issued_ms: i64,
    /// `x5t#S256` of the caller's client certificate, when attested over mTLS.
    pub cnf_x5t_s256: Option<&'a str>,
    /// The token's entry in a status list (its `status` claim).
    pub status: Option<StatusClaim<'a>>,
}

/// A signed JWT and its ids. `Debug` does not print the token.
#[derive(Clone)]
pub struct MintedJwt {
    pub token: String,
    pub jti: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl fmt::Debug for MintedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedJwt")
            .field("token", &"...")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Signs JWT access tokens with one cached key.
pub struct JwtMinter {
    issuer: String,
    key: Key,
    /// The public half, for verifying our own tokens (introspection, RFC 7009).
    public: aws_lc_rs::signature::UnparsedPublicKey<Vec<u8>>,
    kid: String,
    header_b64: String,
    jwks: serde_json::Value,
    rng: SystemRandom,
}

impl fmt::Debug for JwtMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtMinter")
            .field("issuer", &self.issuer)
            .field("alg", &self.key.alg())
            .field("kid", &self.kid)
            .field("key", &"...")
            .finish()
    }
}

impl JwtMinter {
    /// Parses the signing key once. The `kid` is the key's RFC 7638 thumbprint. Fails when the key
    /// is not P-256 or Ed25519 PKCS#8.
    pub fn new(issuer: &str, key: &SecretKey) -> Result<Self, MintError> {
        let key = Key::parse(key.pkcs8_der())?;
        let thumbprint_input = key.public_jwk().to_string(); // members already in lexical order
        let kid = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            thumbprint_input.as_bytes(),
        ));
        let mut jwk = key.public_jwk();
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), json!(kid));
            obj.insert("alg".into(), json!(key.alg()));
            obj.insert("use".into(), json!("sig"));
        }
        let header = json!({"alg": key.alg(), "kid": kid, "typ": "at+jwt"});
        let public = match &key {
            Key::Es256(k) => aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                k.public_key().as_ref().to_vec(),
            ),
            Key::EdDsa(k) => aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ED25519,
                k.public_key().as_ref().to_vec(),
            ),
        };
        Ok(JwtMinter {
            public,
            issuer: issuer.to_owned(),
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            jwks: json!({ "keys": [jwk] }),
            kid,
            key,
            rng: SystemRandom::new(),
        })
    }

    /// Verifies a token this minter signed: same header (alg, kid, `at+jwt`), valid signature,
    /// `exp` after `now`. Returns its claims, or `None` for anything else.
    pub fn verify(
        &self,
        token: &str,
        now: i64,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, claims) = signing_input.split_once('.')?;
        if header != self.header_b64 {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.public
            .verify(signing_input.as_bytes(), &signature)
            .ok()?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        let exp = claims.get("exp")?.as_i64()?;
        (exp > now).then_some(claims)
    }

    /// Returns the `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Returns the JWS `alg` of minted tokens (`ES256` or `EdDSA`).
    pub fn alg(&self) -> &'static str {
        self.key.alg()
    }

    /// Returns the `kid` of minted tokens.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Returns the JWKS relying parties verify minted tokens with.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Signs `claims` as a JWT with header `typ` and the `alg` and `kid` of minted tokens (for
    /// other documents the broker publishes, e.g. Status List Tokens). Fails when the claims
    /// do not serialize or the signer fails.
    pub fn sign_claims(&self, typ: &str, claims: &impl Serialize) -> Result<String, MintError> {
        let header = json!({"alg": self.key.alg(), "kid": self.kid, "typ": typ});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let claims_json = serde_json::to_vec(claims).map_err(|_| MintError::Sign)?;
        self.sign(&header_b64, &claims_json)
    }

    /// Returns the compact JWS of `claims_json` under the encoded `header_b64`.
    fn sign(&self, header_b64: &str, claims_json: &[u8]) -> Result<String, MintError> {
        let mut token = String::with_capacity(header_b64.len() + claims_json.len() * 4 / 3 + 100);
        token.push_str(header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut token);
        let signature = self.key.sign(&self.rng, token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// Signs a token for `params`; `nbf` = `iat` = the issue second, `exp` = `iat` + ttl, `jti`
    /// time-ordered ([`crate::domain::id::jwt_id`]). Fails only when the random generator or
    /// signer fails.
    pub fn mint(&self, params: MintJwtParams<'_>) -> Result<MintedJwt, MintError> {
        let jti = id::jwt_id(
            params.issued_ms,
            &random_bytes::<{ id::JTI_RANDOM_BYTES }>()?,
        );
        let now = params.issued_ms.div_euclid(1000);
        let ttl = i64::try_from(params.ttl.as_secs()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(ttl);
        let claims = Claims {
            iss: &self.issuer,
            sub: params.workload.as_str(),
            aud: params.destination,
            scope: params.purpose,
            client_id: params.workload.as_str(),
            iat: now,
            nbf: now,
            exp: expires_at,
            jti: &jti,
            cnf: params.cnf_x5t_s256.map(|x5t_s256| Cnf { x5t_s256 }),
            status: params
                .status
                .map(|status_list| StatusMechanisms { status_list }),
        };
        let claims_json = serde_json::to_vec(&claims).map_err(|_| MintError::Sign)?;
        let token = self.sign(&self.header_b64, &claims_json)?;
        Ok(MintedJwt {
            token,
            jti,
            issued_at: now,
            expires_at,
        })
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
