//! The configuration loader must never panic, whatever the TOML text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = rampart_config::load_from_strs(&[("fuzz.toml", &text)], &[]);
});
