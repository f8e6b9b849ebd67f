//! X509-SVID chains as a TLS peer presents them (`X509SvidVerifier::verify`): leaf rules, then
//! path validation to the trusted CA. Chains come from the fuzzer, never signed by that CA's key,
//! so none may ever verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tessera_core::attest::jwt_svid::DEFAULT_MAX_LIFETIME;
use tessera_core::attest::{TrustDomainBundle, X509SvidVerifier};
use tessera_fuzz::{NOW, TRUST_DOMAIN, chain};
use tessera_testkit::pki;
use time::OffsetDateTime;

fn verifier() -> &'static X509SvidVerifier {
    static VERIFIER: OnceLock<X509SvidVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let now = OffsetDateTime::from_unix_timestamp(NOW).expect("time");
        let day = time::Duration::days(1);
        let uri = format!("spiffe://{TRUST_DOMAIN}");
        let ca = pki::ca("fuzz CA", Some(&uri), None, now - day, now + day).expect("CA");
        let bundle = TrustDomainBundle {
            name: TRUST_DOMAIN.parse().expect("trust domain"),
            x509_roots: vec![ca.cert_der.clone().into()],
            jwt_keys: Vec::new(),
            max_jwt_svid_lifetime: DEFAULT_MAX_LIFETIME,
        };
        X509SvidVerifier::new(&[bundle], None).expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let chain = chain(data);
    if let Ok(peer) = verifier().verify(&chain, NOW) {
        panic!(
            "a chain not signed by the trusted CA verified: {}",
            peer.identity
        );
    }
});
