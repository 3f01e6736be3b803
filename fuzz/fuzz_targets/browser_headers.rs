//! The CORS and CSRF header parsing never panics on arbitrary `Origin`,
//! `Access-Control-Request-Headers` and `Cookie` values, and what it accepts holds:
//! an allowed origin is one listed byte for byte (never `null`), and a CSRF pass on an
//! unsafe cookie-authenticated request means the header repeats the cookie exactly.
#![no_main]

use http::header::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rampart_authz::{cors, csrf};
use rampart_config::{CorsConfig, CsrfConfig};

fuzz_target!(|data: &[u8]| {
    // Three values separated by 0xff: Origin, Access-Control-Request-Headers, Cookie;
    // the rest is the CSRF header.
    let mut parts = data.splitn(4, |b| *b == 0xff);
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, v: Option<&[u8]>| {
        if let Some(v) = v.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            h.append(name, v);
        }
    };
    put("origin", parts.next());
    put("access-control-request-headers", parts.next());
    put("cookie", parts.next());
    put("x-csrf-token", parts.next());
    let c = CorsConfig {
        allowed_origins: vec!["https://app.example.com".into()],
        any_origin: false,
        allowed_methods: vec![http::Method::POST],
        allowed_headers: vec!["x-csrf-token".into()],
        expose_headers: vec![],
        allow_credentials: true,
        max_age_s: Some(600),
    };
    if let Some(o) = cors::allowed_origin(&c, &h) {
        assert_eq!(o.as_bytes(), b"https://app.example.com");
    }
    let _ = cors::decide_preflight(&c, &http::Method::POST, &h);
    let f = CsrfConfig {
        cookie: "__Host-csrf".into(),
        header: "x-csrf-token".into(),
    };
    if csrf::check(&f, &http::Method::POST, &h).is_ok() && csrf::cookie_authenticated(&h) {
        let token = h.get("x-csrf-token").map(|v| v.as_bytes().trim_ascii()).unwrap_or_default();
        assert!(!token.is_empty());
        let cookies: Vec<&[u8]> = h.get_all("cookie").iter().map(HeaderValue::as_bytes).collect();
        assert!(cookies.iter().any(|c| c.windows(token.len()).any(|w| w == token)));
    }
});
