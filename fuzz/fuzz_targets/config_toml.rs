//! The configuration file (`Config::parse`): TOML syntax, `deny_unknown_fields`, every value
//! check. Bad files are a `ConfigError` naming the key, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tessera_core::clock::ManualClock;
use tessera_fuzz::NOW;
use tessera_server::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Key and certificate paths are read: keep the fuzzer off device and process files.
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let clock = ManualClock::at(NOW);
    if let Err(e) = Config::parse(Path::new("/nonexistent/tessera.toml"), text, &clock) {
        assert!(!e.to_string().is_empty());
    }
});
