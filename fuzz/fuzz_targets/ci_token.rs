//! The CI token checks (`OidcVerifier::verify`) for the GitHub, GitLab and Kubernetes profiles,
//! with the issuers' keys installed (no network): a forged token is never accepted; a signed one
//! only from a configured issuer, for our audience, with its platform's claims.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tessera_core::attest::oidc::{IssuerConfig, KeySource, Profile};
use tessera_core::attest::{OidcVerifier, Principal};
use tessera_core::clock::ManualClock;
use tessera_core::http_client::HttpsClient;
use tessera_fuzz::seeds::CI_ISSUERS;
use tessera_fuzz::{AUDIENCE, NOW, TokenInput, block_on, signer, token, token_input};

fn verifier() -> &'static OidcVerifier {
    static VERIFIER: OnceLock<OidcVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let profiles = [Profile::Github, Profile::Gitlab, Profile::Kubernetes];
        let issuers = CI_ISSUERS
            .iter()
            .zip(profiles)
            .map(|(issuer, profile)| IssuerConfig {
                issuer: (*issuer).to_owned(),
                profile,
                audience: AUDIENCE.to_owned(),
                max_token_lifetime: Duration::from_secs(3600),
            })
            .collect();
        let http = HttpsClient::new(&[]).expect("client");
        // Closed ports: a refresh for an unknown kid fails at once and is then rate limited.
        let sources = CI_ISSUERS
            .iter()
            .map(|issuer| KeySource {
                issuer: (*issuer).to_owned(),
                jwks_uri: Some(format!("{issuer}/jwks")),
                http: http.clone(),
            })
            .collect();
        let verifier = OidcVerifier::new(issuers, sources, Arc::new(ManualClock::at(NOW)));
        let jwks = serde_json::from_value(serde_json::json!({"keys": [signer().signing_jwk()]}))
            .expect("jwks");
        for issuer in CI_ISSUERS {
            block_on(verifier.seed_keys(issuer, &jwks)).expect("seed keys");
        }
        verifier
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = token_input(data) else {
        return;
    };
    let Some(token) = token(&input) else { return };
    let verdict = block_on(verifier().verify(&token));
    match (&input, verdict) {
        (_, Err(_)) => {}
        (TokenInput::Forged(_), Ok(a)) => panic!("forged CI token accepted: {}", a.principal),
        (TokenInput::Signed { .. }, Ok(a)) => {
            let Principal::Ci(ci) = &a.principal else {
                panic!("not a CI identity")
            };
            assert!(
                CI_ISSUERS.contains(&ci.issuer.as_str()),
                "issuer {}",
                ci.issuer
            );
            assert!(a.one_time.is_some(), "a CI token is always one-time");
        }
    }
});
