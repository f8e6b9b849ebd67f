//! gRPC request messages (prost decoding) and the checks each handler applies before anything
//! else: destination/purpose/TTL, the CSR, the revoke selector, the list filters. A decoded
//! message re-encodes to one that decodes equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tessera_core::csr::VerifiedCsr;
use tessera_core::request::CredentialRequest;
use tessera_proto as proto;
use tessera_server::api::fuzz_hooks::{list_params, revoke_selector};

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
    let again = M::decode(m.encode_to_vec().as_slice()).expect("re-encoded message decodes");
    assert_eq!(&again, m);
}

fuzz_target!(|data: &[u8]| {
    let Some((kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 7 {
        0 => {
            if let Ok(m) = proto::MintJwtRequest::decode(bytes) {
                roundtrip(&m);
                let _ = CredentialRequest::parse(&m.destination, &m.purpose, m.ttl_seconds);
            }
        }
        1 => {
            if let Ok(m) = proto::MintX509Request::decode(bytes) {
                roundtrip(&m);
                let _ = CredentialRequest::parse(&m.destination, &m.purpose, m.ttl_seconds);
                let _ = VerifiedCsr::from_der(&m.csr);
            }
        }
        2 => {
            if let Ok(m) = proto::RevokeRequest::decode(bytes) {
                roundtrip(&m);
                let _ = revoke_selector(&m);
            }
        }
        3 => {
            if let Ok(m) = proto::ListCredentialsRequest::decode(bytes) {
                roundtrip(&m);
                let _ = list_params(&m);
            }
        }
        4 => {
            if let Ok(m) = proto::WatchRevocationsRequest::decode(bytes) {
                roundtrip(&m)
            }
        }
        5 => {
            if let Ok(m) = proto::AcknowledgeRevocationsRequest::decode(bytes) {
                roundtrip(&m)
            }
        }
        _ => {
            if let Ok(m) = proto::GetRevocationRequest::decode(bytes) {
                roundtrip(&m)
            }
        }
    }
});
