//! JWT-SVID rules (`standards.md` §3): compact only, header members and `typ`, the `alg`
//! allow-list, key by `kid` from the bundle of the `sub`'s trust domain, signature, `aud`, `exp`
//! with leeway, `nbf`, `sub`, and the size limit.

use serde_json::{Value, json};

use super::*;
use crate::attest::sha256_hex;
use crate::keys::BundleJwk;
use crate::test_jws::{Case, Change, TestKey, case, unsigned};
use crate::test_pki::{NOW, TD, WORKLOAD};

const AUDIENCE: &str = "tessera";
const KID: &str = "k1";

fn bundle(name: &str, keys: &[(&str, &TestKey)]) -> TrustDomainBundle {
    TrustDomainBundle {
        name: name.parse().expect("trust domain"),
        x509_roots: Vec::new(),
        jwt_keys: keys
            .iter()
            .map(|(kid, key)| BundleJwk {
                kid: (*kid).to_owned(),
                jwk: key.jwk(kid, Some("jwt-svid")),
            })
            .collect(),
        max_jwt_svid_lifetime: DEFAULT_MAX_LIFETIME,
    }
}

fn header() -> Value {
    json!({"alg": "ES256", "kid": KID, "typ": "JWT"})
}

fn claims() -> Value {
    json!({"sub": WORKLOAD, "aud": [AUDIENCE], "exp": NOW + 300, "iat": NOW})
}

fn cases() -> Vec<Case<JwtSvidError>> {
    use JwtSvidError as E;
    vec![
        case("a_valid_jwt_svid_is_accepted", Change::None, None),
        case(
            "typ_jose_is_accepted",
            Change::Header(|h| h["typ"] = json!("JOSE")),
            None,
        ),
        case(
            "an_absent_typ_is_accepted",
            Change::Header(|h| drop(h.as_object_mut().unwrap().remove("typ"))),
            None,
        ),
        case(
            "typ_at_jwt_is_refused",
            Change::Header(|h| h["typ"] = json!("at+jwt")),
            Some(E::Typ("at+jwt".into())),
        ),
        case(
            "a_header_member_other_than_alg_kid_typ_is_refused",
            Change::Header(|h| h["jku"] = json!("https://attacker.example/jwks")),
            Some(E::HeaderMember("jku".into())),
        ),
        case(
            "alg_none_is_refused",
            Change::Token(|_, c, _, _| unsigned(&json!({"alg": "none", "kid": KID}), c)),
            Some(E::AlgNotAllowed("none".into())),
        ),
        case(
            "alg_hs256_is_refused",
            Change::Header(|h| h["alg"] = json!("HS256")),
            Some(E::AlgNotAllowed("HS256".into())),
        ),
        case(
            "alg_eddsa_is_refused_for_jwt_svids",
            Change::Header(|h| h["alg"] = json!("EdDSA")),
            Some(E::AlgNotAllowed("EdDSA".into())),
        ),
        case(
            "an_alg_the_named_key_cannot_verify_is_refused",
            Change::Header(|h| h["alg"] = json!("RS256")),
            Some(E::AlgKeyMismatch {
                kid: KID.into(),
                alg: "RS256".into(),
            }),
        ),
        case(
            "a_kid_missing_from_the_bundle_is_refused",
            Change::Header(|h| h["kid"] = json!("rotated-away")),
            Some(E::UnknownKid {
                kid: "rotated-away".into(),
                domain: TD.into(),
            }),
        ),
        case(
            "a_token_without_kid_is_tried_against_every_key_of_the_domain",
            Change::Header(|h| drop(h.as_object_mut().unwrap().remove("kid"))),
            None,
        ),
        case(
            "a_signature_by_another_key_is_refused",
            Change::Token(|h, c, _, other| other.sign(h, c)),
            Some(E::BadSignature),
        ),
        case(
            "claims_changed_after_signing_are_refused",
            Change::Token(|h, c, key, _| {
                let token = key.sign(h, c);
                let mut forged = c.clone();
                forged["sub"] = json!("spiffe://example.org/ns/prod/sa/admin");
                let (head, rest) = token.split_once('.').unwrap();
                let signature = rest.rsplit_once('.').unwrap().1;
                let forged = unsigned(&json!({}), &forged);
                let forged_claims = forged.split('.').nth(1).unwrap();
                format!("{head}.{forged_claims}.{signature}")
            }),
            Some(E::BadSignature),
        ),
        case(
            "an_aud_string_equal_to_ours_is_accepted",
            Change::Claims(|c| c["aud"] = json!(AUDIENCE)),
            None,
        ),
        case(
            "an_aud_array_holding_ours_among_others_is_accepted",
            Change::Claims(|c| c["aud"] = json!(["other", AUDIENCE])),
            None,
        ),
        case(
            "an_aud_without_ours_is_refused",
            Change::Claims(|c| c["aud"] = json!(["other"])),
            Some(E::Audience(AUDIENCE.into())),
        ),
        case(
            "a_missing_aud_is_refused",
            Change::Claims(|c| drop(c.as_object_mut().unwrap().remove("aud"))),
            Some(E::Audience(AUDIENCE.into())),
        ),
        case(
            "a_missing_exp_is_refused",
            Change::Claims(|c| drop(c.as_object_mut().unwrap().remove("exp"))),
            Some(E::MissingExp),
        ),
        case(
            "an_exp_within_the_leeway_is_accepted",
            Change::Claims(|c| c["exp"] = json!(NOW - LEEWAY_SECS + 1)),
            None,
        ),
        case(
            "an_exp_past_the_leeway_is_refused",
            Change::Claims(|c| c["exp"] = json!(NOW - LEEWAY_SECS)),
            Some(E::Expired {
                exp: NOW - LEEWAY_SECS,
                now: NOW,
            }),
        ),
        case(
            "an_exp_one_hour_ahead_is_accepted_under_the_default_cap",
            Change::Claims(|c| c["exp"] = json!(NOW + 3600)),
            None,
        ),
        case(
            "an_exp_further_ahead_than_the_lifetime_cap_is_refused",
            Change::Claims(|c| c["exp"] = json!(NOW + 3601)),
            Some(E::LivesTooLong {
                exp: NOW + 3601,
                now: NOW,
                max_secs: 3600,
            }),
        ),
        case(
            "an_exp_of_1e18_is_refused_by_the_lifetime_cap",
            Change::Claims(|c| c["exp"] = json!(1e18)),
            Some(E::LivesTooLong {
                exp: 1_000_000_000_000_000_000,
                now: NOW,
                max_secs: 3600,
            }),
        ),
        case(
            "an_nbf_beyond_the_leeway_is_refused",
            Change::Claims(|c| c["nbf"] = json!(NOW + LEEWAY_SECS + 1)),
            Some(E::NotYetValid {
                nbf: NOW + LEEWAY_SECS + 1,
                now: NOW,
            }),
        ),
        case(
            "an_nbf_within_the_leeway_is_accepted",
            Change::Claims(|c| c["nbf"] = json!(NOW + LEEWAY_SECS)),
            None,
        ),
        case(
            "a_missing_sub_is_refused",
            Change::Claims(|c| drop(c.as_object_mut().unwrap().remove("sub"))),
            Some(E::Subject("missing".into())),
        ),
        case(
            "a_sub_that_is_a_trust_domain_is_refused",
            Change::Claims(|c| c["sub"] = json!("spiffe://example.org")),
            Some(E::SubjectWithoutPath("spiffe://example.org".into())),
        ),
        case(
            "a_sub_of_an_unconfigured_trust_domain_is_refused",
            Change::Claims(|c| c["sub"] = json!("spiffe://elsewhere.org/w")),
            Some(E::UntrustedDomain("elsewhere.org".into())),
        ),
        case(
            "a_sub_of_another_trust_domain_is_checked_with_that_domains_keys",
            Change::Claims(|c| c["sub"] = json!("spiffe://other.org/w")),
            Some(E::UnknownKid {
                kid: KID.into(),
                domain: "other.org".into(),
            }),
        ),
        case(
            "two_parts_are_not_compact",
            Change::Token(|_, _, _, _| "aGVhZGVy.Y2xhaW1z".into()),
            Some(E::NotCompact),
        ),
        case(
            "four_parts_are_not_compact",
            Change::Token(|h, c, key, _| format!("{}.x", key.sign(h, c))),
            Some(E::NotCompact),
        ),
        case(
            "a_header_that_is_not_base64url_json_is_refused",
            Change::Token(|h, c, key, _| {
                let token = key.sign(h, c);
                format!("!!.{}", token.split_once('.').unwrap().1)
            }),
            Some(E::BadEncoding { part: "header" }),
        ),
        case(
            "claims_that_are_not_json_are_refused",
            Change::Token(|_, _, _, _| "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln".into()),
            Some(E::BadEncoding { part: "claims" }),
        ),
        case(
            "an_oversize_token_is_refused_before_parsing",
            Change::Token(|_, _, _, _| "a".repeat(MAX_TOKEN_LEN + 1)),
            Some(E::TooLong),
        ),
    ]
}

#[test]
fn each_jwt_svid_rule_refuses_its_violation_and_nothing_else() {
    let key = TestKey::es256();
    let other = TestKey::es256();
    let other_domain_key = TestKey::es256();
    let verifier = JwtSvidVerifier::new(
        &[
            bundle(TD, &[(KID, &key)]),
            bundle("other.org", &[("k-other", &other_domain_key)]),
        ],
        AUDIENCE,
        Counter::default(),
    )
    .unwrap();
    for case in cases() {
        let (h, c) = (header(), claims());
        let token = case.change.token(h, c, &key, &other);
        match (&case.refused, verifier.verify(&token, NOW)) {
            (None, Ok(a)) => assert_eq!(a.evidence_kind, EvidenceKind::JwtSvid, "{}", case.name),
            (Some(want), Err(got)) => assert_eq!(&got, want, "{}", case.name),
            (None, Err(e)) => panic!("{}: refused with {e:?}", case.name),
            (Some(want), Ok(_)) => panic!("{}: accepted, expected {want:?}", case.name),
        }
    }
}

#[test]
fn a_verified_jwt_svid_attests_its_sub_with_the_hash_of_the_token() {
    let key = TestKey::es256();
    let verifier =
        JwtSvidVerifier::new(&[bundle(TD, &[(KID, &key)])], AUDIENCE, Counter::default()).unwrap();
    let token = key.sign(&header(), &claims());
    let attestation = verifier.verify(&token, NOW).unwrap();
    assert_eq!(
        attestation.principal,
        Principal::Spiffe(WORKLOAD.parse().unwrap())
    );
    assert_eq!(attestation.evidence_hash, sha256_hex(token.as_bytes()));
    assert_eq!(attestation.cnf_x5t_s256, None);
    assert_eq!(attestation.one_time, None);
}

#[test]
fn rs256_and_ps256_jwt_svids_are_accepted_from_an_rsa_key() {
    let key = TestKey::rsa();
    let verifier =
        JwtSvidVerifier::new(&[bundle(TD, &[(KID, &key)])], AUDIENCE, Counter::default()).unwrap();
    for alg in ["RS256", "PS256"] {
        let token = key.sign(&json!({"alg": alg, "kid": KID}), &claims());
        assert!(verifier.verify(&token, NOW).is_ok(), "{alg}");
    }
    let token = key.sign(&json!({"alg": "ES256", "kid": KID}), &claims());
    assert_eq!(
        verifier.verify(&token, NOW).unwrap_err(),
        JwtSvidError::AlgKeyMismatch {
            kid: KID.into(),
            alg: "ES256".into()
        }
    );
}

#[test]
fn a_key_rotation_keeps_both_kids_verifying() {
    let old = TestKey::es256();
    let new = TestKey::es256();
    let verifier = JwtSvidVerifier::new(
        &[bundle(TD, &[("old", &old), ("new", &new)])],
        AUDIENCE,
        Counter::default(),
    )
    .unwrap();
    for (kid, key) in [("old", &old), ("new", &new)] {
        let token = key.sign(&json!({"alg": "ES256", "kid": kid}), &claims());
        assert!(verifier.verify(&token, NOW).is_ok(), "{kid}");
    }
    // The right kid with the other key's signature.
    let token = new.sign(&json!({"alg": "ES256", "kid": "old"}), &claims());
    assert_eq!(
        verifier.verify(&token, NOW),
        Err(JwtSvidError::BadSignature)
    );
}

#[test]
fn an_unusable_bundle_key_is_a_bundle_error_naming_domain_and_kid() {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        json!({"kty": "EC", "crv": "P-256", "x": "!!", "y": "!!", "kid": "bad", "use": "jwt-svid"}),
    )
    .unwrap();
    let domain = TrustDomainBundle {
        name: TD.parse().unwrap(),
        x509_roots: Vec::new(),
        jwt_keys: vec![BundleJwk {
            kid: "bad".into(),
            jwk,
        }],
        max_jwt_svid_lifetime: DEFAULT_MAX_LIFETIME,
    };
    let err = JwtSvidVerifier::new(&[domain], AUDIENCE, Counter::default()).unwrap_err();
    assert!(
        matches!(&err, BundleError::JwtKey { domain, kid, .. } if domain == TD && kid == "bad"),
        "{err:?}"
    );
}

#[test]
fn the_lifetime_cap_is_the_trust_domains_and_its_refusal_names_it_and_the_exp() {
    let key = TestKey::es256();
    let mut domain = bundle(TD, &[(KID, &key)]);
    domain.max_jwt_svid_lifetime = std::time::Duration::from_secs(600);
    let verifier = JwtSvidVerifier::new(&[domain], AUDIENCE, Counter::default()).unwrap();
    let at_cap = key.sign(
        &header(),
        &json!({"sub": WORKLOAD, "aud": AUDIENCE, "exp": NOW + 600}),
    );
    assert!(verifier.verify(&at_cap, NOW).is_ok());
    let over = key.sign(
        &header(),
        &json!({"sub": WORKLOAD, "aud": AUDIENCE, "exp": 1e18}),
    );
    let message = verifier.verify(&over, NOW).unwrap_err().to_string();
    assert!(
        message.starts_with("JWT-SVID lives longer than the 10m this trust domain allows: exp is 1000000000000000000"),
        "{message}"
    );
}

#[test]
fn a_jwt_svid_presented_again_skips_the_verify_but_not_its_times() {
    let key = TestKey::es256();
    let hits = Counter::default();
    let verifier =
        JwtSvidVerifier::new(&[bundle(TD, &[(KID, &key)])], AUDIENCE, hits.clone()).unwrap();
    let token = key.sign(&header(), &claims());
    let first = verifier.verify(&token, NOW).unwrap();
    assert_eq!(hits.get(), 0);
    let again = verifier.verify(&token, NOW + 10).unwrap();
    assert_eq!(
        hits.get(),
        1,
        "the second presentation is served from the cache"
    );
    assert_eq!(again.principal, first.principal);
    assert_eq!(again.evidence_hash, sha256_hex(token.as_bytes()));
    // exp is NOW + 300, checked again on every hit, with the leeway.
    assert_eq!(
        verifier.verify(&token, NOW + 330),
        Err(JwtSvidError::Expired {
            exp: NOW + 300,
            now: NOW + 330
        })
    );
    assert_eq!(hits.get(), 2);
    let early = key.sign(
        &header(),
        &json!({"sub": WORKLOAD, "aud": [AUDIENCE], "exp": NOW + 300, "nbf": NOW}),
    );
    assert!(verifier.verify(&early, NOW).is_ok());
    assert_eq!(
        verifier.verify(&early, NOW - 31),
        Err(JwtSvidError::NotYetValid {
            nbf: NOW,
            now: NOW - 31
        })
    );
}

#[test]
fn a_refused_jwt_svid_is_not_remembered_and_a_byte_changed_token_is_verified_anew() {
    let key = TestKey::es256();
    let other = TestKey::es256();
    let hits = Counter::default();
    let verifier =
        JwtSvidVerifier::new(&[bundle(TD, &[(KID, &key)])], AUDIENCE, hits.clone()).unwrap();
    let forged = other.sign(&header(), &claims());
    for _ in 0..2 {
        assert_eq!(
            verifier.verify(&forged, NOW),
            Err(JwtSvidError::BadSignature)
        );
    }
    let token = key.sign(&header(), &claims());
    verifier.verify(&token, NOW).unwrap();
    // The same header and claims under another signature are other bytes: verified, refused.
    let (signed, _) = token.rsplit_once('.').unwrap();
    let (_, bad_sig) = forged.rsplit_once('.').unwrap();
    assert_eq!(
        verifier.verify(&format!("{signed}.{bad_sig}"), NOW),
        Err(JwtSvidError::BadSignature)
    );
    assert_eq!(hits.get(), 0);
}

#[test]
fn a_verifier_built_for_new_bundles_does_not_trust_what_the_old_one_remembered() {
    let old = TestKey::es256();
    let new = TestKey::es256();
    let hits = Counter::default();
    let before =
        JwtSvidVerifier::new(&[bundle(TD, &[(KID, &old)])], AUDIENCE, hits.clone()).unwrap();
    let token = old.sign(&header(), &claims());
    before.verify(&token, NOW).unwrap();
    before.verify(&token, NOW).unwrap();
    assert_eq!(hits.get(), 1);
    // The bundle rotated: the old key is gone, and so is what it vouched for.
    let after =
        JwtSvidVerifier::new(&[bundle(TD, &[(KID, &new)])], AUDIENCE, hits.clone()).unwrap();
    assert_eq!(after.verify(&token, NOW), Err(JwtSvidError::BadSignature));
    assert_eq!(hits.get(), 1);
}
