//! Client-certificate identity extraction never panics on hostile DER, and whatever it
//! accepts has a 64-hex-digit fingerprint, at most `MAX_NAMES` SAN names, and a subject.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_authn::mtls::{CertIdentity, MAX_NAMES, normalize_fingerprint};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = CertIdentity::from_der(data) {
        assert_eq!(c.fingerprint.len(), 64);
        assert_eq!(normalize_fingerprint(&c.fingerprint).as_deref(), Some(c.fingerprint.as_str()));
        assert!(c.dns.len() + c.uris.len() + c.emails.len() <= MAX_NAMES);
        let _ = c.subject();
        let _ = c.into_identity(&[]);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(n) = normalize_fingerprint(s) {
            assert_eq!(n.len(), 64);
        }
    }
});
