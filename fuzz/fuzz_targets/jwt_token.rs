//! The compact-JWS parser and the whole verifier on arbitrary tokens: no panic; a
//! parsed token's signing input is exactly the first two segments; and nothing the
//! fuzzer makes ever verifies against a fixed key set (that would be a forgery).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rampart_jwt::{JwtSettings, JwtVerifier, ManualClock, jws};

const JWKS: &str = r#"{"keys":[
 {"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
 {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

fn verifier() -> &'static JwtVerifier {
    static V: OnceLock<JwtVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let s = JwtSettings::new(rampart_config::Profile::Prod, None);
        JwtVerifier::with_key_set(s, JWKS.as_bytes(), Arc::new(ManualClock::new(1_300_000_000)))
            .expect("fixed key set")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = jws::parse(token, 8192) {
        let mut parts = token.splitn(3, '.');
        let head = format!("{}.{}", parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert_eq!(p.signing_input, head.as_bytes());
        assert!(!p.signature.is_empty());
    }
    assert!(verifier().verify(token).is_err(), "forged token verified: {token:?}");
});
