//! CORS and CSRF against the real binary: preflights answered by the gateway for an
//! allowed, an unlisted and a `null` origin (never forwarded, before authentication);
//! CORS headers on actual responses, errors included, with `Vary: Origin`; the
//! double-submit CSRF check accepted and refused. Callers are simulated with trusted mTLS
//! identity headers from 127.0.0.1 (a trusted proxy here) plus browser cookies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;

const APP: &str = "https://app.example.com";

fn start() -> (Upstream, Gateway) {
    let up = Upstream::start();
    let extra = r#"
[[routes]]
id = "web-items"
path = "/api/items"
methods = ["GET", "POST", "DELETE"]
upstream = "app"
scopes = ["jobs"]
cors = { allowed_origins = ["https://app.example.com", "http://localhost:3000"], allowed_methods = ["POST", "DELETE"], allowed_headers = ["x-csrf-token", "content-type"], expose_headers = ["x-request-id"], allow_credentials = true, max_age_s = 600 }
csrf = { cookie = "__Host-csrf", header = "x-csrf-token" }

[[routes]]
id = "plain"
path = "/api/plain"
upstream = "app"
scopes = ["jobs"]

[auth]
modes = ["mtls"]

[auth.mtls]
identity_header = "x-ssl-client-subject"
scopes_header = "x-ssl-client-scopes"
"#;
    let cfg = base_config(up.addr, extra).replace(
        "drain_timeout_ms = 10000",
        "drain_timeout_ms = 10000\ntrusted_proxies = [\"127.0.0.1/32\"]",
    );
    (up, Gateway::start(&cfg))
}

fn send(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || method == "DELETE" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    raw(gw.addr, &req)
}

const CALLER: [(&str, &str); 2] = [
    ("x-ssl-client-subject", "alice"),
    ("x-ssl-client-scopes", "jobs"),
];

fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = CALLER.to_vec();
    h.extend_from_slice(extra);
    h
}

fn vary_has_origin(r: &Resp) -> bool {
    r.headers.get("vary").is_some_and(|vs| {
        vs.iter()
            .any(|v| v.split(',').any(|t| t.trim() == "Origin"))
    })
}

fn no_cors_headers(r: &Resp) {
    assert!(
        !r.headers.keys().any(|k| k.starts_with("access-control-")),
        "{:?}",
        r.headers
    );
}

#[test]
fn preflights_allowed_unlisted_and_null() {
    let (up, gw) = start();
    // Allowed origin: answered here, without credentials, never forwarded.
    let r = send(
        &gw,
        "OPTIONS",
        "/api/items",
        &[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-csrf-token",
            ),
        ],
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("POST, DELETE")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("x-csrf-token, content-type")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(vary_has_origin(&r), "{:?}", r.headers);
    assert_security_headers(&r);
    assert!(gw.wait_access("cors_preflight", Duration::from_secs(5)));

    // Unlisted origins, the `null` origin, look-alikes: 403, no CORS header at all.
    for origin in [
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
        "http://app.example.com",
        "https://APP.example.com",
    ] {
        let r = send(
            &gw,
            "OPTIONS",
            "/api/items",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ],
        );
        let doc = assert_problem(&r, 403);
        assert_eq!(doc["code"], "forbidden", "{origin}");
        no_cors_headers(&r);
        assert!(vary_has_origin(&r));
    }
    assert!(gw.wait_access("cors_origin", Duration::from_secs(5)));

    // A method the route accepts but CORS does not grant, and a header not listed.
    let r = send(
        &gw,
        "OPTIONS",
        "/api/items",
        &[("origin", APP), ("access-control-request-method", "GET")],
    );
    assert_problem(&r, 403);
    no_cors_headers(&r);
    assert!(gw.wait_access("cors_method", Duration::from_secs(5)));
    let r = send(
        &gw,
        "OPTIONS",
        "/api/items",
        &[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization"),
        ],
    );
    assert_problem(&r, 403);
    no_cors_headers(&r);
    assert!(gw.wait_access("cors_headers", Duration::from_secs(5)));

    // A method the route refuses is not a preflight of this route: 405, no CORS.
    let r = send(
        &gw,
        "OPTIONS",
        "/api/items",
        &[("origin", APP), ("access-control-request-method", "PUT")],
    );
    assert_eq!(r.status, 405);
    no_cors_headers(&r);
    // On a route without `cors`, OPTIONS is an ordinary request (here: unauthenticated).
    let r = send(
        &gw,
        "OPTIONS",
        "/api/plain",
        &[("origin", APP), ("access-control-request-method", "POST")],
    );
    assert_eq!(r.status, 401);
    no_cors_headers(&r);

    assert!(
        up.seen().is_empty(),
        "a preflight was forwarded: {:?}",
        up.seen()
    );
}

#[test]
fn actual_requests_get_cors_headers_and_vary() {
    let (up, gw) = start();
    // Allowed origin: the origin echoed (never `*` with credentials), credentials, expose.
    let r = send(&gw, "GET", "/api/items", &with(&[("origin", APP)]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert!(vary_has_origin(&r));
    assert_eq!(up.seen().len(), 1);
    // An upstream's own wider answer is replaced by the gateway's.
    let r = send(
        &gw,
        "GET",
        "/api/items",
        &with(&[
            ("origin", "https://evil.example"),
            ("x-test-upstream-acao", "*"),
        ]),
    );
    assert_eq!(r.status, 200);
    no_cors_headers(&r);
    assert!(vary_has_origin(&r));
    let r = send(
        &gw,
        "GET",
        "/api/items",
        &with(&[
            ("origin", APP),
            ("x-test-upstream-acao", "https://evil.example"),
        ]),
    );
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.headers["access-control-allow-origin"].len(), 1);
    // `null` gets nothing, and neither does a request without Origin (same-origin).
    for h in [with(&[("origin", "null")]), with(&[])] {
        let r = send(&gw, "GET", "/api/items", &h);
        assert_eq!(r.status, 200);
        no_cors_headers(&r);
        assert!(vary_has_origin(&r));
    }
    // Errors of later stages carry them too, so the page can read the 401.
    let r = send(&gw, "GET", "/api/items", &[("origin", APP)]);
    assert_problem(&r, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert!(vary_has_origin(&r));
    // A route without `cors` never gets CORS headers or Vary: Origin from the gateway.
    let r = send(&gw, "GET", "/api/plain", &with(&[("origin", APP)]));
    assert_eq!(r.status, 200);
    no_cors_headers(&r);
    assert!(!vary_has_origin(&r));
}

#[test]
fn csrf_double_submit_accepted_and_refused() {
    let (up, gw) = start();
    // Matching cookie and header: served.
    let r = send(
        &gw,
        "POST",
        "/api/items",
        &with(&[
            ("cookie", "session=s1; __Host-csrf=3q2-7w_tok"),
            ("x-csrf-token", "3q2-7w_tok"),
        ]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.seen().len(), 1);
    up.clear();
    // A safe method needs no token.
    let r = send(&gw, "GET", "/api/items", &with(&[("cookie", "session=s1")]));
    assert_eq!(r.status, 200);
    up.clear();
    // No cookies at all: not a cookie-authenticated caller, nothing to forge.
    let r = send(&gw, "DELETE", "/api/items", &CALLER);
    assert_eq!(r.status, 200);
    up.clear();

    let refusals: [(&[(&str, &str)], &str); 4] = [
        (&[("cookie", "session=s1")], "csrf_cookie_missing"),
        (
            &[("cookie", "session=s1; __Host-csrf=3q2-7w_tok")],
            "csrf_header_missing",
        ),
        (
            &[
                ("cookie", "session=s1; __Host-csrf=3q2-7w_tok"),
                ("x-csrf-token", "3q2-7w_toK"),
            ],
            "csrf_mismatch",
        ),
        (
            &[
                ("cookie", "__Host-csrf=a; __Host-csrf=b"),
                ("x-csrf-token", "b"),
            ],
            "csrf_ambiguous",
        ),
    ];
    for (headers, reason) in refusals {
        for method in ["POST", "DELETE"] {
            let r = send(&gw, method, "/api/items", &with(headers));
            let doc = assert_problem(&r, 403);
            assert_eq!(doc["code"], "forbidden");
            // One generic detail: the reason is for operators only.
            assert_eq!(
                doc["detail"],
                "The caller is not allowed to access this route."
            );
            assert!(!r.text().contains("csrf"), "{}", r.text());
        }
        assert!(gw.wait_access(reason, Duration::from_secs(5)), "{reason}");
    }
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    // The token values never reach the logs.
    assert!(!gw.logs().contains("3q2-7w_tok"));
}
