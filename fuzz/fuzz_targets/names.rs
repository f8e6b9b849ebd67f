//! The names a request carries, parsed into their newtypes: SPIFFE IDs and trust domains, grant
//! selections, credential kinds, destination/purpose/TTL, bearer headers, durations and sizes.
//! What parses prints back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::attest::bearer_token;
use tessera_core::domain::{CredentialKind, GrantSelection};
use tessera_core::request::CredentialRequest;
use tessera_core::spiffe_id::{SpiffeId, TrustDomain};
use tessera_server::config::{parse_duration, parse_size};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<SpiffeId>() {
        let again: SpiffeId = id.as_str().parse().expect("a SPIFFE ID reparses");
        assert_eq!(again, id);
        assert!(id.as_str().len() <= 2048);
    }
    if let Ok(domain) = text.parse::<TrustDomain>() {
        assert_eq!(
            domain.as_str().parse::<TrustDomain>().expect("reparses"),
            domain
        );
    }
    if let Ok(selection) = text.parse::<GrantSelection>() {
        let again: GrantSelection = selection.to_string().parse().expect("a selection reparses");
        assert_eq!(again, selection);
    }
    if let Ok(kind) = text.parse::<CredentialKind>() {
        assert_eq!(kind.as_str().parse::<CredentialKind>().ok(), Some(kind));
    }
    let mut fields = text.splitn(3, '\n');
    let destination = fields.next().unwrap_or_default();
    let purpose = fields.next().unwrap_or_default();
    let ttl = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let _ = CredentialRequest::parse(destination, purpose, ttl);
    let _ = bearer_token(text);
    let _ = parse_duration(text);
    let _ = parse_size(text);
});
