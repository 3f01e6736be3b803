//! Edge rules of DESIGN.md §4 against the real binary and a recording upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn setup(extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, extra));
    (up, gw)
}

#[test]
fn forwards_and_sets_headers_on_200() {
    let (up, gw) = setup("");
    let r = gw.get("/status?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_security_headers(&r);
    // HSTS only over TLS (or behind a trusted TLS proxy).
    assert!(r.header("strict-transport-security").is_none());
    let seen = up.last();
    assert_eq!(seen.target, "/status?x=1");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-rampart-auth"), Some("none"));
    assert_eq!(seen.header("x-request-id"), r.header("x-request-id"));
    assert_eq!(r.header("x-request-id").unwrap().len(), 32);
}

#[test]
fn path_normalization_rules() {
    let (up, gw) = setup("");
    // Refused before routing.
    for (path, code) in [
        ("/status%2Fadmin", "path_encoded_separator"),
        ("/status%2fadmin", "path_encoded_separator"),
        ("/status%5Cadmin", "path_encoded_separator"),
        ("/status/%2e%2e/%2e%2e/etc/passwd", "path_above_root"),
        ("/status/../../etc/passwd", "path_above_root"),
        ("/../status", "path_above_root"),
        ("/status%00", "path_encoded_control"),
        ("/status/%ff", "path_not_utf8"),
    ] {
        let r = gw.get(path);
        let v = assert_problem(&r, 400);
        assert_eq!(v["code"], code, "{path}");
    }
    // A raw backslash: refused (by the parser or by the normalizer), never forwarded.
    up.clear();
    let r = gw.get("/status\\..\\private");
    assert_eq!(r.status, 400);
    assert!(up.seen().is_empty());
    // Double slashes and dot segments are resolved; the upstream gets the normal form.
    for (path, want) in [
        ("//status", "/status"),
        ("/status//x///y", "/status/x/y"),
        ("/private/../status", "/status"),
        ("/./status/./x", "/status/x"),
        ("/%73tatus", "/status"),
    ] {
        let r = gw.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(up.last().target, want, "{path}");
    }
}

#[test]
fn route_rules_404_405_semicolon_wildcard() {
    let (up, gw) = setup("");
    assert_problem(&gw.get("/nowhere"), 404);
    assert_problem(&gw.get("/statusx"), 404);
    let r = raw(
        gw.addr,
        "DELETE /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_problem(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // `;` path parameters only where a route allows them.
    assert_eq!(
        assert_problem(&gw.get("/status;jsessionid=1"), 400)["code"],
        "path_parameter"
    );
    up.clear();
    let r = gw.get("/matrix;v=1");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/matrix;v=1");
    // `*` where a template segment is expected.
    assert_eq!(
        assert_problem(&gw.get("/tenants/*/items"), 400)["code"],
        "path_wildcard"
    );
    assert_eq!(gw.get("/tenants/acme/items").status, 200);
    // Unauthenticated route: 401 with WWW-Authenticate.
    let r = gw.get("/private");
    assert_problem(&r, 401);
    assert!(r.header("www-authenticate").is_some());
}

#[test]
fn host_allowlist() {
    let (up, gw) = setup("");
    up.clear();
    for host in [
        "evil.example",
        "127.0.0.1.evil.example",
        "api.example.com.evil",
        "a b",
    ] {
        let r = raw(
            gw.addr,
            &format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 400, "{host}");
    }
    let r = raw(
        gw.addr,
        "GET /status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_problem(&r, 400);
    // Two Host headers.
    let r = raw(
        gw.addr,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    // Absolute-form target that disagrees with Host.
    let r = raw(
        gw.addr,
        "GET http://evil.example/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert!(up.seen().is_empty(), "upstream saw a bad-host request");
    // Allowed: exact names, any port, case-insensitive.
    for host in ["api.example.com", "API.Example.COM:8443", "localhost:1"] {
        let r = raw(
            gw.addr,
            &format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 200, "{host}");
    }
}

#[test]
fn spoofed_forwarding_and_identity_headers_from_untrusted_peer() {
    let (up, gw) = setup("");
    let r = raw(
        gw.addr,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 203.0.113.7\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=1.2.3.4\r\n\
         X-Real-IP: 1.2.3.4\r\nX-Request-Id: attacker-chosen\r\nx-rampart-subject: admin\r\n\
         X_Rampart_Tenant: other\r\nx.rampart.scopes: *\r\nX-RAMPART-AUTH: jwt\r\n\
         x_forwarded_for: 9.9.9.9\r\nx-auth-request-user: root\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_ne!(r.header("x-request-id"), Some("attacker-chosen"));
    let s = up.last();
    assert_eq!(
        s.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{:?}",
        s.headers
    );
    assert_eq!(s.header("x-forwarded-proto"), Some("http"));
    assert_eq!(s.header("x-forwarded-host"), Some("127.0.0.1"));
    assert_eq!(s.header("x-rampart-auth"), Some("none"));
    assert!(s.header("forwarded").is_none());
    assert!(s.header("x-real-ip").is_none());
    assert!(s.header("x-auth-request-user").is_none());
    assert!(s.header("x-rampart-subject").is_none());
    assert!(s.header("x-rampart-tenant").is_none());
    assert!(s.header("x-rampart-scopes").is_none());
    for (n, _) in &s.headers {
        let canon = n.to_ascii_lowercase().replace(['_', '.'], "-");
        assert!(
            canon != "x-forwarded-for" || n == "x-forwarded-for",
            "alias {n} reached upstream"
        );
        assert!(
            !canon.starts_with("x-rampart-") || n == "x-rampart-auth",
            "{n} reached upstream"
        );
    }
    assert_ne!(s.header("x-request-id"), Some("attacker-chosen"));
}

#[test]
fn trusted_proxy_headers_are_honoured() {
    let up = Upstream::start();
    let cfg = base_config(up.addr, "").replace(
        "drain_timeout_ms = 10000",
        "drain_timeout_ms = 10000\ntrusted_proxies = [\"127.0.0.0/8\"]",
    );
    let gw = Gateway::start(&cfg);
    let r = raw(
        gw.addr,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 198.51.100.4\r\n\
         X-Forwarded-Proto: https\r\nX-Request-Id: ingress-42\r\nx-rampart-subject: admin\r\n\
         X_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("ingress-42"));
    // Behind a trusted TLS-terminating proxy, HSTS is sent.
    assert!(r.header("strict-transport-security").is_some());
    let s = up.last();
    assert_eq!(s.header("x-forwarded-for"), Some("198.51.100.4, 127.0.0.1"));
    assert_eq!(s.header("x-forwarded-proto"), Some("https"));
    assert_eq!(s.header("x-request-id"), Some("ingress-42"));
    assert!(
        s.header("x-rampart-subject").is_none(),
        "x-rampart-* is stripped even from trusted proxies"
    );
    assert!(!s.headers.iter().any(|(n, _)| n == "x_forwarded_for"));
}

#[test]
fn connection_header_cannot_remove_what_rampart_relies_on() {
    let (up, gw) = setup("");
    let r = raw(
        gw.addr,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, x-request-id, host, x-forwarded-for, x-custom\r\n\
         X-Custom: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let s = up.last();
    assert!(
        s.header("x-custom").is_none(),
        "header named in Connection was forwarded"
    );
    assert!(s.header("keep-alive").is_none());
    assert!(s.header("upgrade").is_none());
    assert!(s.header("proxy-connection").is_none());
    assert!(s.header("te").is_none());
    assert!(s.header("x-request-id").is_some());
    assert!(s.header("x-forwarded-for").is_some());
    assert!(s.header("host").is_some());
}

#[test]
fn overlong_headers_get_431() {
    let (up, gw) = setup("");
    up.clear();
    let big = "a".repeat(17_000);
    let r = raw(
        gw.addr,
        &format!(
            "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_problem(&r, 431);
    // Far beyond the cap: hyper's own limit answers 431 without reading it all.
    let huge = "a".repeat(200_000);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {huge}\r\n\r\n").as_bytes(),
    );
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(n == 0 || head.starts_with("HTTP/1.1 431"), "{head}");
    assert!(up.seen().is_empty());
}

#[test]
fn slow_headers_are_cut_off() {
    let (_up, gw) = setup(""); // header_read_timeout_ms = 1000
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let start = Instant::now();
    // Keep trickling a header byte now and then, as slow-loris does.
    let mut closed = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        if start.elapsed() > Duration::from_millis(1500) {
            break;
        }
    }
    let mut buf = [0u8; 256];
    let got = s.read(&mut buf);
    let n = got.as_ref().map(|n| *n).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        closed
            || n == 0
            || text.starts_with("HTTP/1.1 408")
            || got.is_err() && start.elapsed() < Duration::from_secs(6),
        "connection not cut off: {text:?} after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn body_limits_content_length_and_chunked() {
    let (up, gw) = setup(""); // /echo max_body_bytes = 1024
    up.clear();
    let body = "x".repeat(2000);
    let r = raw(
        gw.addr,
        &format!(
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{body}"
        ),
    );
    assert_problem(&r, 413);
    assert!(
        up.seen().is_empty(),
        "upstream saw an over-limit Content-Length request"
    );

    // Chunked: 4 x 600 bytes; the upstream must never receive more than the limit.
    let mut req = String::from(
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..4 {
        req.push_str(&format!("258\r\n{}\r\n", "y".repeat(600)));
    }
    req.push_str("0\r\n\r\n");
    let r = raw(gw.addr, &req);
    assert_problem(&r, 413);
    // The aborted upstream exchange may still be in flight: let it settle, then check
    // everything the upstream ever received.
    std::thread::sleep(Duration::from_millis(500));
    for s in up.seen() {
        assert!(
            s.body_bytes <= 1024,
            "upstream received {} bytes",
            s.body_bytes
        );
        assert!(!s.body_complete, "upstream saw a complete over-limit body");
    }

    // Under the limit, chunked, streams through.
    up.clear();
    let r = raw(
        gw.addr,
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(
        up.seen()
            .iter()
            .any(|s| s.body_complete && s.body_bytes == 5),
        "{:?}",
        up.seen()
    );
}

#[test]
fn upstream_down_is_502_with_headers_and_metric() {
    let (_up, gw) = setup("");
    let r = gw.get("/down");
    let v = assert_problem(&r, 502);
    let detail = v["detail"].as_str().unwrap();
    assert!(
        !detail.contains("127.0.0.1"),
        "internal address leaked: {detail}"
    );
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("rampart_upstream_errors_total{upstream=\"dead\",kind=\"connect\"} 1"),
        "{m}"
    );
}

#[test]
fn request_timeout_is_504() {
    let (_up, gw) = setup(""); // request_timeout_ms = 3000
    let start = Instant::now();
    let r = gw.get("/slow/5000");
    assert_problem(&r, 504);
    assert!(start.elapsed() < Duration::from_millis(4500));
}

#[test]
fn access_log_line_per_request_without_query_or_secrets() {
    let (_up, gw) = setup("");
    let r = raw(
        gw.addr,
        "GET /status?token=s3cr3t HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cr3t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let _ = gw.get("/nowhere");
    let id = r.header("x-request-id").unwrap().to_owned();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let out = gw.stdout.lock().unwrap().clone();
        if out.len() >= 2 {
            for l in &out {
                assert!(!l.contains("s3cr3t"), "secret in access log: {l}");
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(v["status"].is_u64() && v["route"].is_string() || v["route"].is_null());
            }
            let line = out
                .iter()
                .find(|l| l.contains(&id))
                .expect("no line for the request");
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["path"], "/status");
            assert_eq!(v["route"], "status");
            assert_eq!(v["status"], 200);
            assert_eq!(v["decision"], "allow");
            assert_eq!(v["client_ip"], "127.0.0.1");
            break;
        }
        assert!(Instant::now() < end, "access log lines missing: {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fragment_in_request_target_is_refused() {
    let (up, gw) = setup("");
    up.clear();
    let r = gw.get("/status#frag");
    assert_eq!(assert_problem(&r, 400)["code"], "path_fragment");
    assert!(up.seen().is_empty());
    // Pipelined on one connection, after a body that contains a fake request line.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = "GET /status#x HTTP/1.1\r\n\r\n";
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /status#y HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12))
        .collect();
    assert_eq!(statuses, vec!["200", "200", "400"], "{text}");
}
