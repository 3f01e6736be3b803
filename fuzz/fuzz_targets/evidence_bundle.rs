//! The evidence bundle reader (`rampart_crypto::bundle::read_bundle`, what `rampart
//! evidence verify` opens): arbitrary bytes, gzip or not, never panic, and whatever it
//! accepts names only plain relative paths under `files/`, each with a SHA-256 digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_crypto::bundle::read_bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = read_bundle(data) {
        for (name, digest) in &b.files {
            assert!(!name.is_empty() && !name.starts_with('/'));
            assert!(name.split('/').all(|c| !c.is_empty() && c != ".." && c != "."));
            assert_eq!(digest.len(), 64);
        }
    }
});
