//! `/introspect` (and `/revoke`) bodies: the form, then the check of a token this broker minted
//! (`JwtMinter::verify`). A forged body never yields claims; a signed token only while live.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tessera_core::keys::SecretKey;
use tessera_core::mint::JwtMinter;
use tessera_fuzz::{NOW, TokenInput, token_input};
use tessera_server::api::fuzz_hooks::introspect_form;

fn minter() -> &'static JwtMinter {
    static MINTER: OnceLock<JwtMinter> = OnceLock::new();
    MINTER.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let key = SecretKey::from_pkcs8_der(key.serialize_der());
        JwtMinter::new("https://tessera.fuzz.example", &key).expect("minter")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = token_input(data) else {
        return;
    };
    match input {
        TokenInput::Forged(body) => {
            if let Ok(token) = introspect_form(body.as_bytes()) {
                assert!(
                    minter().verify(&token, NOW).is_none(),
                    "forged token verified"
                );
            }
        }
        TokenInput::Signed { claims, .. } => {
            let Ok(token) = minter().sign_claims("at+jwt", &claims) else {
                return;
            };
            let body = format!("token={token}");
            let token = introspect_form(body.as_bytes()).expect("token parameter");
            if let Some(claims) = minter().verify(&token, NOW) {
                let exp = claims["exp"].as_i64().expect("verified without exp");
                assert!(exp > NOW, "expired token verified");
            }
        }
    }
});
