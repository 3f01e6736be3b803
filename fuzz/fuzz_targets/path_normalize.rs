//! Path normalization never panics, and its output is a fixed point: absolute, without
//! `//`, `/./` or `/../`, and normalizing it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(out) = rampart_http::path::normalize(input) {
        assert!(out.starts_with('/'), "{input:?} -> {out:?}");
        assert!(!out.contains("//"), "{input:?} -> {out:?}");
        assert!(!out.contains("/./"), "{input:?} -> {out:?}");
        assert!(!out.contains("/../"), "{input:?} -> {out:?}");
        let again = rampart_http::path::normalize(&out);
        assert!(
            matches!(&again, Ok(a) if a.as_ref() == out.as_ref()),
            "not idempotent: {input:?} -> {out:?} -> {again:?}"
        );
    }
});
