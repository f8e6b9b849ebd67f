//! The JWT minter (DESIGN.md "What is minted", RFC 9068 shape, `standards.md` §6.3 and §7.8):
//! header `typ: at+jwt` with the RFC 7638 thumbprint as `kid`, exactly the designed claims,
//! `cnf` only when given, `jti` of the issue millisecond and 128 random bits, and `verify` round trips.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::test_pki::{NOW, WORKLOAD};

const ISSUER: &str = "https://tessera.example.org";
const TTL: u64 = 300;

fn key(alg: &'static rcgen::SignatureAlgorithm) -> SecretKey {
    SecretKey::from_pkcs8_der(rcgen::KeyPair::generate_for(alg).unwrap().serialize_der())
}

fn minters() -> [JwtMinter; 2] {
    [
        JwtMinter::new(ISSUER, &key(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap(),
        JwtMinter::new(ISSUER, &key(&rcgen::PKCS_ED25519)).unwrap(),
    ]
}

fn mint(minter: &JwtMinter, cnf: Option<&str>) -> MintedJwt {
    minter
        .mint(MintJwtParams {
            workload: &WORKLOAD.parse().unwrap(),
            destination: "https://db.example.org",
            purpose: "read:orders",
            ttl: Duration::from_secs(TTL),
            issued_ms: NOW * 1000,
            cnf_x5t_s256: cnf,
            status: None,
        })
        .unwrap()
}

/// The decoded JSON of a token's part `index` (0 header, 1 claims).
fn part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn published_jwk(minter: &JwtMinter) -> jsonwebtoken::jwk::Jwk {
    serde_json::from_value(minter.jwks()["keys"][0].clone()).unwrap()
}

#[test]
fn the_header_is_at_jwt_with_the_rfc7638_thumbprint_as_kid() {
    for (minter, alg) in minters().iter().zip(["ES256", "EdDSA"]) {
        let token = mint(minter, None).token;
        assert_eq!(
            part(&token, 0),
            json!({"alg": alg, "kid": minter.kid(), "typ": "at+jwt"})
        );
        assert_eq!(minter.alg(), alg);
        let jwk = published_jwk(minter);
        let thumbprint = jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap();
        assert_eq!(minter.kid(), thumbprint, "{alg}");
        let published = &minter.jwks()["keys"][0];
        assert_eq!(published["kid"], json!(minter.kid()));
        assert_eq!(published["alg"], json!(alg));
        assert_eq!(published["use"], json!("sig"));
        assert!(
            published.get("d").is_none(),
            "the JWKS must hold no private part"
        );
    }
}

#[test]
fn the_claims_are_exactly_iss_sub_aud_scope_client_id_iat_nbf_exp_jti() {
    for minter in minters() {
        let minted = mint(&minter, None);
        let claims = part(&minted.token, 1);
        let names: BTreeSet<&str> = claims
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "iss",
                "sub",
                "aud",
                "scope",
                "client_id",
                "iat",
                "nbf",
                "exp",
                "jti"
            ])
        );
        assert_eq!(claims["iss"], json!(ISSUER));
        assert_eq!(claims["sub"], json!(WORKLOAD));
        assert_eq!(claims["client_id"], json!(WORKLOAD));
        // One destination, as a string, not an array.
        assert_eq!(claims["aud"], json!("https://db.example.org"));
        assert_eq!(claims["scope"], json!("read:orders"));
        assert_eq!(claims["iat"], json!(NOW));
        assert_eq!(claims["nbf"], json!(NOW));
        assert_eq!(claims["exp"], json!(NOW + TTL as i64));
        assert_eq!(claims["jti"], json!(minted.jti));
        assert_eq!(
            (minted.issued_at, minted.expires_at),
            (NOW, NOW + TTL as i64)
        );
    }
}

#[test]
fn the_jti_is_the_issue_millisecond_then_128_random_bits_and_differs_per_token() {
    let [minter, _] = minters();
    let (a, b) = (mint(&minter, None), mint(&minter, None));
    assert_eq!(URL_SAFE_NO_PAD.decode(&a.jti).unwrap().len(), 6 + 16);
    assert_eq!(
        crate::domain::id::embedded_ms(&a.jti),
        Some(NOW * 1000),
        "time-ordered: the issue millisecond first"
    );
    assert_ne!(a.jti, b.jti);
    assert_ne!(a.token, b.token);
}

#[test]
fn cnf_x5t_s256_is_present_only_when_the_caller_was_attested_over_mtls() {
    let [minter, _] = minters();
    let x5t = "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0";
    assert_eq!(
        part(&mint(&minter, Some(x5t)).token, 1)["cnf"],
        json!({"x5t#S256": x5t})
    );
    assert!(part(&mint(&minter, None).token, 1).get("cnf").is_none());
}

#[test]
fn the_status_claim_points_at_the_list_entry_when_given() {
    let [minter, _] = minters();
    let uri = "https://tessera.example.org/statuslists/1767225600-00abcdef01234567";
    let token = minter
        .mint(MintJwtParams {
            workload: &WORKLOAD.parse().unwrap(),
            destination: "https://db.example.org",
            purpose: "read:orders",
            ttl: Duration::from_secs(TTL),
            issued_ms: NOW * 1000,
            cnf_x5t_s256: None,
            status: Some(StatusClaim { idx: 41, uri }),
        })
        .unwrap()
        .token;
    assert_eq!(
        part(&token, 1)["status"],
        json!({"status_list": {"idx": 41, "uri": uri}})
    );
    assert!(part(&mint(&minter, None).token, 1).get("status").is_none());
}

#[test]
fn sign_claims_uses_the_minting_key_with_the_given_typ() {
    for minter in minters() {
        let token = minter
            .sign_claims("statuslist+jwt", &json!({"sub": "s", "iat": NOW}))
            .unwrap();
        assert_eq!(
            part(&token, 0),
            json!({"alg": minter.alg(), "kid": minter.kid(), "typ": "statuslist+jwt"})
        );
        assert_eq!(part(&token, 1), json!({"sub": "s", "iat": NOW}));
        let (input, signature) = token.rsplit_once('.').unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&published_jwk(&minter)).unwrap();
        let alg: jsonwebtoken::Algorithm = minter.alg().parse().unwrap();
        assert!(jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, alg).unwrap());
        assert!(
            minter.verify(&token, NOW).is_none(),
            "not an access token: verify refuses it"
        );
    }
}

#[test]
fn the_signature_verifies_with_the_published_jwk_and_es256_is_jose_encoded() {
    for minter in minters() {
        let token = mint(&minter, None).token;
        let (input, signature) = token.rsplit_once('.').unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&published_jwk(&minter)).unwrap();
        let alg: jsonwebtoken::Algorithm = minter.alg().parse().unwrap();
        assert!(jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, alg).unwrap());
        // ES256 is r || s (64 bytes), not DER; Ed25519 is 64 bytes too.
        assert_eq!(URL_SAFE_NO_PAD.decode(signature).unwrap().len(), 64);
    }
}

#[test]
fn verify_round_trips_until_exp_and_refuses_foreign_and_tampered_tokens() {
    let [es256, eddsa] = minters();
    let minted = mint(&es256, None);
    let claims = es256.verify(&minted.token, NOW).unwrap();
    assert_eq!(Value::Object(claims), part(&minted.token, 1));
    assert!(es256.verify(&minted.token, minted.expires_at - 1).is_some());
    assert!(es256.verify(&minted.token, minted.expires_at).is_none());

    // Same issuer, another key: a foreign token.
    let other = JwtMinter::new(ISSUER, &key(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
    assert!(es256.verify(&mint(&other, None).token, NOW).is_none());
    assert!(es256.verify(&mint(&eddsa, None).token, NOW).is_none());

    // Claims swapped after signing.
    let (header, rest) = minted.token.split_once('.').unwrap();
    let signature = rest.rsplit_once('.').unwrap().1;
    let mut forged = part(&minted.token, 1);
    forged["scope"] = json!("write:orders");
    let forged = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(forged.to_string())
    );
    assert!(es256.verify(&forged, NOW).is_none());
    assert!(es256.verify("not.a.token", NOW).is_none());
    assert!(es256.verify("", NOW).is_none());
}

#[test]
fn a_key_other_than_p256_or_ed25519_is_refused() {
    let err = JwtMinter::new(ISSUER, &key(&rcgen::PKCS_ECDSA_P384_SHA384)).unwrap_err();
    assert!(
        matches!(&err, MintError::Key(m) if m.contains("P-256")),
        "{err:?}"
    );
    let err = JwtMinter::new(ISSUER, &SecretKey::from_pkcs8_der(b"garbage".to_vec())).unwrap_err();
    assert!(matches!(err, MintError::Key(_)), "{err:?}");
}

#[test]
fn sign_claims_uses_the_given_typ_with_the_same_alg_and_kid_and_verifies_with_the_jwks() {
    for minter in minters() {
        let claims = json!({"iss": ISSUER, "jti": "j1", "events": {"urn:example": {}}});
        let token = minter.sign_claims("secevent+jwt", &claims).unwrap();
        assert_eq!(
            part(&token, 0),
            json!({"alg": minter.alg(), "kid": minter.kid(), "typ": "secevent+jwt"})
        );
        assert_eq!(part(&token, 1), claims);
        let (input, signature) = token.rsplit_once('.').unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&published_jwk(&minter)).unwrap();
        let alg: jsonwebtoken::Algorithm = minter.alg().parse().unwrap();
        assert!(jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, alg).unwrap());
        // Not an access token: the minter's own verify refuses it.
        assert!(minter.verify(&token, NOW).is_none());
    }
}
