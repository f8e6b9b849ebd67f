//! `/token` bodies (RFC 8693 form): parsed and checked as the handler does; a bad form is a typed
//! refusal (the caller's error, with a message), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_server::api::fuzz_hooks::token_form;
use tessera_server::refusal::Class;

fuzz_target!(|data: &[u8]| {
    if let Err(refusal) = token_form(data) {
        assert_eq!(
            refusal.class,
            Class::Invalid,
            "a bad form is the caller's error"
        );
        assert!(!refusal.message.is_empty(), "a refusal says what to fix");
    }
});
