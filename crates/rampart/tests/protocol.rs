//! Refusals made before hyper parses a request head (issue 13): each one is a
//! problem+json answer with the security headers and a request id, one access-log line
//! with its reason, and one `rampart_requests_total` increment; the upstream never sees
//! the request and the connection is closed after the answer.
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

fn denied_400s(gw: &Gateway, status: u16) -> u64 {
    let m = gw.admin_get("/metrics").text();
    let want =
        format!("rampart_requests_total{{route=\"\",status=\"{status}\",decision=\"deny\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&want))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn parser_level_refusals_are_problems_logged_and_counted() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, ""));
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n"),
            431,
            "too_many_headers",
        ),
        ("GET /status HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n".into(), 400, "malformed_request"),
        ("GET /sta tus HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".into(), 400, "malformed_request"),
        ("GET /status HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n".into(), 400, "malformed_request"),
        (
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello".into(),
            400,
            "bad_framing",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            400,
            "bad_framing",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n".into(),
            400,
            "bad_framing",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into(),
            501,
            "unsupported_transfer_coding",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "a".repeat(10_000)),
            414,
            "uri_too_long",
        ),
        (
            format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n", "a".repeat(30_000)),
            431,
            "head_too_large",
        ),
    ];
    for (req, status, reason) in &cases {
        let before = denied_400s(&gw, *status);
        let r = raw(gw.addr, req);
        let v = assert_problem(&r, *status);
        assert_eq!(v["code"], *reason, "{req:.80}");
        assert_eq!(r.header("connection"), Some("close"), "{req:.80}");
        let id = r.header("x-request-id").unwrap().to_owned();
        assert!(
            gw.wait_access(&id, Duration::from_secs(5)),
            "no access-log line for {reason}"
        );
        let line = gw
            .stdout
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(&id))
            .cloned()
            .unwrap();
        assert!(line.contains(reason), "{line}");
        assert!(line.contains(&format!("\"status\":{status}")), "{line}");
        assert_eq!(
            denied_400s(&gw, *status),
            before + 1,
            "{reason} not counted"
        );
    }
    assert!(up.seen().is_empty(), "a refused head reached the upstream");
}

#[test]
fn bytes_after_a_refused_head_are_never_served() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, ""));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
0\r\n\r\nGET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_problem(&r, 501);
    // The connection closes after the answer: the smuggled request gets nothing.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(up.seen().is_empty());
}

#[test]
fn a_head_that_stalls_gets_408() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, "")); // header_read_timeout_ms = 1000
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let start = Instant::now();
    let r = read_response(&mut s).expect("an answer, not a silent close");
    assert!(start.elapsed() < Duration::from_secs(3));
    let v = assert_problem(&r, 408);
    assert_eq!(v["code"], "header_read_timeout");
    assert!(gw.wait_access("header_read_timeout", Duration::from_secs(5)));
    assert!(up.seen().is_empty());
}

#[test]
fn a_connection_that_sends_nothing_is_closed_quietly() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, ""));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn max_header_count_is_configurable_and_good_requests_still_pass() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, "").replace(
        "max_header_bytes = 16384\n",
        "max_header_bytes = 16384\nmax_header_count = 10\n",
    ));
    let few: String = (0..5).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        gw.addr,
        &format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n{few}Connection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let many: String = (0..12).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        gw.addr,
        &format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n"),
    );
    assert_eq!(assert_problem(&r, 431)["code"], "too_many_headers");
    // A head trickled a byte at a time is still served.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for b in b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
    }
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
}
