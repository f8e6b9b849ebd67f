//! The list verifier against lists signed here with the minting key.

use tessera_core::mint::JwtMinter;
use tessera_core::status_list::EncodedList;

use super::*;

const ISSUER: &str = "https://broker.example.org";
const URI: &str = "https://broker.example.org/statuslists/1767225600-00abcdef01234567";
const T0: i64 = 1_767_225_600;

fn minter() -> JwtMinter {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    JwtMinter::new(
        ISSUER,
        &tessera_core::keys::SecretKey::from_pkcs8_der(pkcs8.as_ref().to_vec()),
    )
    .unwrap()
}

/// A list of 64 entries where 3 and 60 are revoked.
fn claims() -> StatusListClaims {
    let mut bits = vec![0u8; 8];
    bits[0] = 1 << 3;
    bits[7] = 1 << 4;
    StatusListClaims {
        iss: Some(ISSUER.into()),
        sub: URI.into(),
        iat: T0,
        exp: Some(T0 + 120),
        ttl: Some(60),
        status_list: EncodedList::compress(&bits),
    }
}

fn verifier(minter: &JwtMinter) -> ListVerifier {
    ListVerifier::new(
        ISSUER,
        &serde_json::from_value(minter.jwks().clone()).unwrap(),
    )
    .unwrap()
}

#[test]
fn a_list_signed_by_the_broker_reads_bit_for_bit() {
    let m = minter();
    let jwt = m.sign_claims(TYP, &claims()).unwrap();
    let list = verifier(&m).verify(&jwt, URI, T0 + 10).unwrap();
    let revoked: Vec<u64> = (0..64)
        .filter(|i| list.status(*i).unwrap() == TokenStatus::Invalid)
        .collect();
    assert_eq!(revoked, [3, 60]);
    assert_eq!(list.status(0).unwrap(), TokenStatus::Valid);
    assert!(matches!(list.status(64), Err(StatusError::Format(_))));
    assert_eq!((list.ttl, list.exp), (Some(60), Some(T0 + 120)));
}

#[test]
fn lists_that_do_not_verify_are_refused_with_the_reason() {
    let m = minter();
    let v = verifier(&m);
    let jwt = m.sign_claims(TYP, &claims()).unwrap();
    assert!(matches!(
        v.verify(&jwt, "https://broker.example.org/statuslists/other", T0),
        Err(StatusError::WrongSubject)
    ));
    assert!(matches!(
        v.verify(&jwt, URI, T0 + 120 + LEEWAY_SECS),
        Err(StatusError::Expired)
    ));
    let at_jwt = m.sign_claims("at+jwt", &claims()).unwrap();
    assert!(matches!(
        v.verify(&at_jwt, URI, T0),
        Err(StatusError::WrongType)
    ));
    let foreign = minter().sign_claims(TYP, &claims()).unwrap();
    assert!(matches!(
        v.verify(&foreign, URI, T0),
        Err(StatusError::UnknownKey)
    ));
    let mut other_issuer = claims();
    other_issuer.iss = Some("https://elsewhere.example.org".into());
    let jwt = m.sign_claims(TYP, &other_issuer).unwrap();
    assert!(matches!(
        v.verify(&jwt, URI, T0),
        Err(StatusError::WrongIssuer)
    ));
    // The bits of one list under the signature of another.
    let mut cleared = claims();
    cleared.status_list = EncodedList::compress(&[0u8; 8]);
    let cleared = m.sign_claims(TYP, &cleared).unwrap();
    let signed = m.sign_claims(TYP, &claims()).unwrap();
    let tampered = format!(
        "{}.{}",
        cleared.rsplit_once('.').unwrap().0,
        signed.rsplit_once('.').unwrap().1
    );
    assert!(matches!(
        v.verify(&tampered, URI, T0),
        Err(StatusError::Invalid(_))
    ));
    let mut bad_bits = claims();
    bad_bits.status_list.lst = "!!".into();
    let jwt = m.sign_claims(TYP, &bad_bits).unwrap();
    assert!(matches!(
        v.verify(&jwt, URI, T0),
        Err(StatusError::Format(_))
    ));
}
