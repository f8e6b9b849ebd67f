//! PKCS#10 parsing and verification (`VerifiedCsr::from_der`): an accepted CSR's key is the
//! rebuilt SubjectPublicKeyInfo, which parses whole and carries no bytes the request chose
//! beyond the key itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::csr::VerifiedCsr;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};

fuzz_target!(|data: &[u8]| {
    let Ok(csr) = VerifiedCsr::from_der(data) else {
        return;
    };
    let spki = csr.spki_der();
    let (rest, parsed) = SubjectPublicKeyInfo::from_der(spki).expect("rebuilt SPKI parses");
    assert!(rest.is_empty(), "bytes after the rebuilt SPKI");
    let key_len = parsed.subject_public_key.data.len();
    // The algorithm identifier around the key is at most ~30 bytes (OID + curve or NULL).
    assert!(
        spki.len() <= key_len + 40,
        "SPKI larger than its key: {}",
        spki.len()
    );
});
