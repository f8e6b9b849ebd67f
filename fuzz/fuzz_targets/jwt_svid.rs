//! JWS parsing and every JWT-SVID check (`JwtSvidVerifier::verify`): a forged token is never
//! accepted; a signed one is accepted only with our audience, a `sub` in the trust domain and an
//! `exp` within the lifetime cap.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prometheus_client::metrics::counter::Counter;
use tessera_core::attest::jwt_svid::DEFAULT_MAX_LIFETIME;
use tessera_core::attest::{JwtSvidVerifier, Principal, TrustDomainBundle};
use tessera_core::keys::BundleJwk;
use tessera_fuzz::{AUDIENCE, KID, NOW, TRUST_DOMAIN, TokenInput, signer, token, token_input};

fn verifier() -> &'static JwtSvidVerifier {
    static VERIFIER: OnceLock<JwtSvidVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let jwk = serde_json::from_value(signer().bundle_jwk()).expect("jwk");
        let bundle = TrustDomainBundle {
            name: TRUST_DOMAIN.parse().expect("trust domain"),
            x509_roots: Vec::new(),
            jwt_keys: vec![BundleJwk {
                kid: KID.into(),
                jwk,
            }],
            max_jwt_svid_lifetime: DEFAULT_MAX_LIFETIME,
        };
        JwtSvidVerifier::new(&[bundle], AUDIENCE, Counter::default()).expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = token_input(data) else {
        return;
    };
    let Some(token) = token(&input) else { return };
    let verdict = verifier().verify(&token, NOW);
    match (&input, verdict) {
        (_, Err(_)) => {}
        (TokenInput::Forged(_), Ok(a)) => panic!("forged token accepted: {}", a.principal),
        (TokenInput::Signed { claims, .. }, Ok(a)) => {
            let Principal::Spiffe(id) = &a.principal else {
                panic!("not a workload")
            };
            assert_eq!(id.trust_domain_name(), TRUST_DOMAIN);
            let exp = claims["exp"].as_f64().expect("accepted without exp");
            let cap = (NOW + DEFAULT_MAX_LIFETIME.as_secs() as i64 + 60) as f64;
            assert!(exp <= cap, "accepted exp {exp} beyond the lifetime cap");
        }
    }
});
