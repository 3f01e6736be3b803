//! `Signature` and `Signature-Input` through the whole verifier against fixed device keys:
//! no panic, and nothing the fuzzer makes ever verifies (that would be a forgery). The
//! `Signature` dictionary alone re-serializes to a fixed point.
#![no_main]

use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use rampart_sig::{DeviceKey, MemoryNonceStore, Policy, RequestParts, StaticKeys, Verifier, sf};

const NOW: u64 = 1_700_000_000;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut keys = StaticKeys::new();
        keys.insert("h", DeviceKey::hmac(&[7u8; 32]).expect("fixed key"));
        keys.insert("e", DeviceKey::ed25519([9u8; 32]));
        Verifier::new(
            Arc::new(keys),
            Arc::new(MemoryNonceStore::new(1024)),
            Policy { max_age_s: 300 },
        )
    })
}

fuzz_target!(|data: &[u8]| {
    // Input: Signature-Input, a 0xff byte, Signature.
    let mut parts = data.splitn(2, |&b| b == 0xff);
    let input = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();

    if let Ok(d) = sf::parse_dictionary(signature) {
        let text = sf::serialize_dictionary(&d).expect("parsed values serialize");
        let again = sf::parse_dictionary(text.as_bytes()).expect("serialization parses");
        assert_eq!(
            sf::serialize_dictionary(&again).as_deref(),
            Some(text.as_str())
        );
    }

    let (Ok(i), Ok(s)) = (
        http::HeaderValue::from_bytes(input),
        http::HeaderValue::from_bytes(signature),
    ) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert("signature-input", i);
    headers.insert("signature", s);
    headers.insert(
        "content-digest",
        http::HeaderValue::from_static("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"),
    );
    let req = RequestParts {
        method: "POST",
        scheme: "https",
        authority: "api.example.com",
        target: "/a?b",
        headers: &headers,
    };
    let fut = pin!(verifier().verify(&req, true, NOW));
    // The memory nonce store answers at once: one poll finishes the future.
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(r) = fut.poll(&mut cx) {
        assert!(r.is_err(), "forged signature verified");
    }
});
