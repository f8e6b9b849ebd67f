//! Test fixtures for JWS tokens: fresh keys (P-256, Ed25519, RSA), their public JWKs, and
//! compact tokens signed with any header and claims — including ones a verifier must refuse.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::PublicKeyData;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A private signing key of a test issuer or trust domain.
pub(crate) enum TestKey {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, Value),
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestKey(...)")
    }
}

impl TestKey {
    pub fn es256() -> TestKey {
        let pkcs8 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("key")
            .serialize_der();
        TestKey::Es256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).expect("p256"),
        )
    }

    pub fn ed25519() -> TestKey {
        TestKey::Ed25519(Ed25519KeyPair::generate().expect("ed25519"))
    }

    pub fn rsa() -> TestKey {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("rsa");
        let spki = key.subject_public_key_info();
        let (_, spki) =
            <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
                &spki,
            )
            .expect("spki");
        let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
            panic!("not RSA");
        };
        let strip = |b: &[u8]| {
            b.iter()
                .skip_while(|x| **x == 0)
                .copied()
                .collect::<Vec<u8>>()
        };
        let jwk =
            json!({"kty": "RSA", "n": b64(&strip(rsa.modulus)), "e": b64(&strip(rsa.exponent))});
        TestKey::Rsa(
            RsaKeyPair::from_pkcs8(&key.serialize_der()).expect("rsa pkcs8"),
            jwk,
        )
    }

    /// The public JWK members (no `kid`, `use` or `alg`).
    pub fn public_jwk(&self) -> Value {
        match self {
            TestKey::Es256(k) => {
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            TestKey::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
            TestKey::Rsa(_, jwk) => jwk.clone(),
        }
    }

    /// The public JWK with `kid` and, when given, `use`.
    pub fn jwk(&self, kid: &str, use_: Option<&str>) -> jsonwebtoken::jwk::Jwk {
        let mut jwk = self.public_jwk();
        jwk["kid"] = json!(kid);
        if let Some(u) = use_ {
            jwk["use"] = json!(u);
        }
        serde_json::from_value(jwk).expect("jwk")
    }

    /// Signs `header.claims` with the algorithm `alg` names (ES256, EdDSA, RS256 or PS256);
    /// any other `alg` value gets this key's natural signature, for tests of refused algs.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature = match self {
            TestKey::Es256(k) => k
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            TestKey::Ed25519(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            TestKey::Rsa(k, _) => {
                let padding: &dyn aws_lc_rs::signature::RsaEncoding = if header["alg"] == "PS256" {
                    &aws_lc_rs::signature::RSA_PSS_SHA256
                } else {
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256
                };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, input.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
        };
        format!("{input}.{}", b64(&signature))
    }
}

/// Encodes a token with an empty signature (`alg: none` style).
pub(crate) fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// What a table case does to a valid token before it is verified.
pub(crate) enum Change {
    None,
    Header(fn(&mut Value)),
    Claims(fn(&mut Value)),
    /// The token from the header and claims, the signing key and a second key.
    Token(fn(&Value, &Value, &TestKey, &TestKey) -> String),
}

impl Change {
    /// Returns the token of the case: header `h` and claims `c`, changed, signed by `key`
    /// (or whatever a [`Change::Token`] makes of them, with `other` as the second key).
    pub(crate) fn token(
        &self,
        mut h: Value,
        mut c: Value,
        key: &TestKey,
        other: &TestKey,
    ) -> String {
        match self {
            Change::None => key.sign(&h, &c),
            Change::Header(f) => {
                f(&mut h);
                key.sign(&h, &c)
            }
            Change::Claims(f) => {
                f(&mut c);
                key.sign(&h, &c)
            }
            Change::Token(f) => f(&h, &c, key, other),
        }
    }
}

/// One case of a token table: its name, what it changes, and the refusal it must get
/// (`None`: accepted).
pub(crate) struct Case<E> {
    pub name: &'static str,
    pub change: Change,
    pub refused: Option<E>,
}

/// Returns a [`Case`].
pub(crate) fn case<E>(name: &'static str, change: Change, refused: Option<E>) -> Case<E> {
    Case {
        name,
        change,
        refused,
    }
}
