//! The SPIFFE bundle document a bundle endpoint serves (`SPIFFE_Trust_Domain_and_Bundle.md` §4):
//! a JWKS whose `use: x509-svid` keys carry a CA certificate in `x5c[0]` and whose
//! `use: jwt-svid` keys verify JWT-SVIDs, with optional `spiffe_sequence` and
//! `spiffe_refresh_hint` (seconds). Keys without `use`, with another `use`, or (JWT-SVID keys)
//! of a `kty` not known, are ignored (§4.2); an empty `keys` array is a bundle that trusts nothing.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;

use super::JwtKey;

/// Why a bundle document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleDocError {
    #[error("the SPIFFE bundle is not JSON: {0}")]
    NotJson(String),
    #[error("the SPIFFE bundle has no `keys` array")]
    NoKeys,
    #[error("the SPIFFE bundle's `{0}` is not a non-negative integer")]
    BadNumber(&'static str),
    #[error("key {index} of the SPIFFE bundle ({usage}): {reason}")]
    BadKey {
        index: usize,
        usage: &'static str,
        reason: String,
    },
}

/// A parsed SPIFFE bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleDoc {
    /// The DER X.509 roots (`x509-svid` keys' `x5c[0]`), in document order.
    pub x509_roots: Vec<Vec<u8>>,
    /// The JWT-SVID keys, sorted by `kid`.
    pub jwt_keys: Vec<JwtKey>,
    pub sequence: Option<u64>,
    pub refresh_hint: Option<Duration>,
}

/// Parses `body`; returns the bundle. Fails when it is not a JSON object with a `keys` array,
/// `spiffe_sequence` or `spiffe_refresh_hint` is not a non-negative integer, an `x509-svid` key
/// has `x5c` whose first entry is not base64, a `jwt-svid` key is not a JWK or has no `kid`, or
/// a `kid` repeats.
pub fn parse(body: &[u8]) -> Result<BundleDoc, BundleDocError> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| BundleDocError::NotJson(e.to_string()))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(BundleDocError::NoKeys)?;
    let sequence = number(&doc, "spiffe_sequence")?;
    let refresh_hint = number(&doc, "spiffe_refresh_hint")?.map(Duration::from_secs);
    let mut x509_roots = Vec::new();
    let mut jwt_keys: Vec<JwtKey> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match key.get("use").and_then(Value::as_str) {
            Some("x509-svid") => x509_roots.extend(x509_root(i + 1, key)?),
            Some("jwt-svid") if known_kty(key) => {
                let jwt = jwt_key(i + 1, key)?;
                if jwt_keys.iter().any(|k| k.kid == jwt.kid) {
                    return Err(BundleDocError::BadKey {
                        index: i + 1,
                        usage: "jwt-svid",
                        reason: format!("`kid` `{}` repeats", jwt.kid),
                    });
                }
                jwt_keys.push(jwt);
            }
            _ => {}
        }
    }
    jwt_keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    Ok(BundleDoc {
        x509_roots,
        jwt_keys,
        sequence,
        refresh_hint,
    })
}

/// Returns true when the key's `kty` is one JWT-SVIDs are verified with (EC, RSA, OKP); keys
/// of another type are ignored (§4.2).
fn known_kty(key: &Value) -> bool {
    matches!(
        key.get("kty").and_then(Value::as_str),
        Some("EC" | "RSA" | "OKP")
    )
}

/// Returns the member `name` of `doc` when present. Fails when it is not a non-negative
/// integer.
fn number(doc: &Value, name: &'static str) -> Result<Option<u64>, BundleDocError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(BundleDocError::BadNumber(name)),
    }
}

/// Returns the DER CA certificate of `x509-svid` key number `index` (`None` without `x5c`:
/// such an entry is ignored, X509-SVID §6). Fails when `x5c[0]` is not standard base64.
fn x509_root(index: usize, key: &Value) -> Result<Option<Vec<u8>>, BundleDocError> {
    let bad = |reason: String| BundleDocError::BadKey {
        index,
        usage: "x509-svid",
        reason,
    };
    let Some(x5c) = key.get("x5c") else {
        return Ok(None);
    };
    let first = x5c
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`x5c` is not an array of base64 certificates".to_owned()))?;
    let der = STANDARD
        .decode(first)
        .map_err(|e| bad(format!("`x5c[0]` is not base64: {e}")))?;
    x509_parser::parse_x509_certificate(&der)
        .map_err(|e| bad(format!("`x5c[0]` is not an X.509 certificate: {e}")))?;
    Ok(Some(der))
}

/// Returns `jwt-svid` key number `index`. Fails when it is not a JWK of a public key or has no
/// `kid`.
fn jwt_key(index: usize, key: &Value) -> Result<JwtKey, BundleDocError> {
    let bad = |reason: String| BundleDocError::BadKey {
        index,
        usage: "jwt-svid",
        reason,
    };
    let jwk: Jwk =
        serde_json::from_value(key.clone()).map_err(|e| bad(format!("not a JWK: {e}")))?;
    jsonwebtoken::DecodingKey::from_jwk(&jwk)
        .map_err(|e| bad(format!("not a JWK of a public key: {e}")))?;
    let kid = jwk
        .common
        .key_id
        .ok_or_else(|| bad("no `kid`".to_owned()))?;
    Ok(JwtKey {
        kid,
        jwk_json: key.to_string().into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Returns a self-signed CA certificate (DER).
    fn ca_der() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn jwt_svid_key(kid: &str) -> Value {
        json!({
            "kty": "EC", "crv": "P-256", "use": "jwt-svid", "kid": kid,
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        })
    }

    fn parsed(doc: &Value) -> Result<BundleDoc, BundleDocError> {
        parse(doc.to_string().as_bytes())
    }

    #[test]
    fn x509_svid_keys_give_their_x5c_root_and_jwt_svid_keys_their_kid() {
        let der = ca_der();
        let doc = json!({
            "spiffe_sequence": 7,
            "spiffe_refresh_hint": 60,
            "keys": [
                {"kty": "EC", "use": "x509-svid", "x5c": [STANDARD.encode(&der)]},
                jwt_svid_key("k2"),
                jwt_svid_key("k1"),
            ],
        });
        let bundle = parsed(&doc).unwrap();
        assert_eq!(bundle.x509_roots, vec![der]);
        let kids: Vec<&str> = bundle.jwt_keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["k1", "k2"]);
        assert_eq!(bundle.sequence, Some(7));
        assert_eq!(bundle.refresh_hint, Some(Duration::from_secs(60)));
        let jwk: Value = serde_json::from_slice(&bundle.jwt_keys[0].jwk_json).unwrap();
        assert_eq!(jwk["use"], "jwt-svid");
    }

    #[test]
    fn keys_without_use_or_x5c_or_of_another_use_are_ignored_and_the_hint_may_be_absent() {
        let doc = json!({
            "keys": [
                {"kty": "EC", "use": "x509-svid"},
                {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"},
                {"kty": "OKP", "use": "wit-svid", "kid": "w"},
                {"kty": "PQC", "use": "jwt-svid", "kid": "future"},
            ],
        });
        let bundle = parsed(&doc).unwrap();
        assert!(bundle.x509_roots.is_empty() && bundle.jwt_keys.is_empty());
        assert_eq!((bundle.sequence, bundle.refresh_hint), (None, None));
    }

    #[test]
    fn a_document_without_keys_or_not_json_is_refused() {
        assert_eq!(
            parsed(&json!({"spiffe_sequence": 1})),
            Err(BundleDocError::NoKeys)
        );
        assert_eq!(parsed(&json!({"keys": {}})), Err(BundleDocError::NoKeys));
        let not_json = parse(b"<html>").unwrap_err().to_string();
        assert!(not_json.contains("not JSON"), "{not_json}");
    }

    #[test]
    fn a_negative_or_fractional_refresh_hint_or_sequence_is_refused_naming_it() {
        let hint = parsed(&json!({"keys": [], "spiffe_refresh_hint": -5})).unwrap_err();
        assert_eq!(hint, BundleDocError::BadNumber("spiffe_refresh_hint"));
        let sequence = parsed(&json!({"keys": [], "spiffe_sequence": 1.5})).unwrap_err();
        assert_eq!(sequence, BundleDocError::BadNumber("spiffe_sequence"));
    }

    #[test]
    fn a_bad_x5c_or_a_jwt_svid_key_without_kid_or_a_repeated_kid_is_refused_naming_the_key() {
        let cases = [
            (
                json!({"kty": "EC", "use": "x509-svid", "x5c": ["%%%"]}),
                "not base64",
            ),
            (
                json!({"kty": "EC", "use": "x509-svid", "x5c": [STANDARD.encode(b"junk")]}),
                "not an X.509 certificate",
            ),
            (
                json!({"kty": "EC", "use": "x509-svid", "x5c": "MII"}),
                "not an array",
            ),
            (
                json!({"kty": "EC", "use": "jwt-svid", "kid": "k", "crv": "P-256", "x": 5}),
                "not a JWK",
            ),
        ];
        for (key, expected) in cases {
            let refused = parsed(&json!({"keys": [jwt_svid_key("k0"), key]}))
                .unwrap_err()
                .to_string();
            assert!(refused.contains("key 2"), "{refused}");
            assert!(refused.contains(expected), "{refused}");
        }
        let mut no_kid = jwt_svid_key("k");
        no_kid.as_object_mut().unwrap().remove("kid");
        let refused = parsed(&json!({"keys": [no_kid]})).unwrap_err().to_string();
        assert!(
            refused.contains("key 1 of the SPIFFE bundle (jwt-svid): no `kid`"),
            "{refused}"
        );
        let repeated = json!({"keys": [jwt_svid_key("k"), jwt_svid_key("k")]});
        let refused = parsed(&repeated).unwrap_err().to_string();
        assert!(refused.contains("`kid` `k` repeats"), "{refused}");
    }
}
