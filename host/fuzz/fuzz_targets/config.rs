//! Any config file: parsing and resolving report problems, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("fuzz.yaml");
    if let Ok(raw) = flowgate_core::config::RawConfig::from_yaml(text, path) {
        let _ = flowgate_core::config::resolve_with_env(raw, &flowgate_core::config::Env::default());
    }
});
