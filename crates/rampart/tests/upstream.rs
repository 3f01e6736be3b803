//! The upstream side of forwarding, against a scripted raw-TCP upstream: keep-alive
//! reuse, response framing (chunked, Content-Length, read-until-close, HEAD, 1xx), what
//! happens with ambiguous or broken framing, idle connections the upstream closed,
//! request bodies, and an upstream that answers before the body is sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Gateway, assert_problem, assert_security_headers, base_config, raw, read_response};

/// What the scripted upstream does with one request.
enum Reply {
    /// Send these bytes and keep the connection open for the next request.
    Send(Vec<u8>),
    /// Send these bytes, then close.
    SendClose(Vec<u8>),
    /// Close without answering.
    Close,
    /// Answer at once, without reading the body, then read and discard until EOF.
    Early(Vec<u8>),
    /// Answer, then close the idle connection after this long.
    SendCloseAfter(Vec<u8>, Duration),
}

#[derive(Debug, Clone)]
struct Got {
    head: String,
    body: Vec<u8>,
    conn: usize,
    /// Index of this request on its connection (0 = first).
    nth: usize,
}

impl Got {
    fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

type Handler = dyn Fn(&Got) -> Reply + Send + Sync;

struct Scripted {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Scripted {
    fn start(handler: impl Fn(&Got) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (conns, got) = (Arc::clone(&conns), Arc::clone(&got));
            std::thread::spawn(move || {
                for s in listener.incoming() {
                    let Ok(s) = s else { break };
                    let id = conns.fetch_add(1, Ordering::SeqCst) + 1;
                    let (got, handler) = (Arc::clone(&got), Arc::clone(&handler));
                    std::thread::spawn(move || serve_conn(s, id, &got, &*handler));
                }
            });
        }
        Self { addr, conns, got }
    }

    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn serve_conn(mut s: TcpStream, conn: usize, got: &Mutex<Vec<Got>>, handler: &Handler) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let mut read_more = |s: &mut TcpStream, buf: &mut Vec<u8>| -> bool {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    };
    for nth in 0.. {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !read_more(&mut s, &mut buf) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut req = Got {
            head,
            body: Vec::new(),
            conn,
            nth,
        };
        let reply = handler(&req);
        if let Reply::Early(bytes) = &reply {
            got.lock().unwrap().push(req);
            let _ = s.write_all(bytes);
            while read_more(&mut s, &mut buf) {
                buf.clear();
            }
            return;
        }
        // Read the body as framed.
        if let Some(n) = req
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            while buf.len() < n {
                if !read_more(&mut s, &mut buf) {
                    return;
                }
            }
            req.body = buf.drain(..n).collect();
        } else if req
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let Some(i) = find(&buf, b"\r\n") else {
                    if !read_more(&mut s, &mut buf) {
                        return;
                    }
                    continue;
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&buf[..i])
                        .unwrap()
                        .split(';')
                        .next()
                        .unwrap(),
                    16,
                )
                .unwrap();
                while buf.len() < i + 2 + size + 2 {
                    if !read_more(&mut s, &mut buf) {
                        return;
                    }
                }
                req.body.extend_from_slice(&buf[i + 2..i + 2 + size]);
                buf.drain(..i + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        }
        got.lock().unwrap().push(req);
        match reply {
            Reply::Send(b) => {
                if s.write_all(&b).is_err() {
                    return;
                }
            }
            Reply::SendClose(b) => {
                let _ = s.write_all(&b);
                return;
            }
            Reply::SendCloseAfter(b, d) => {
                let _ = s.write_all(&b);
                std::thread::sleep(d);
                return;
            }
            Reply::Close | Reply::Early(_) => return,
        }
    }
}

fn read_head_only(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while find(&head, b"\r\n\r\n").is_none() {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "connection closed inside a head"
        );
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn gateway(up: &Scripted) -> Gateway {
    Gateway::start(&base_config(up.addr, ""))
}

fn get(addr: SocketAddr, path: &str) -> common::Resp {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn keeps_upstream_connections_alive_and_decodes_chunked_bodies() {
    let up = Scripted::start(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-powered-by: php\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
                .to_vec(),
        )
    });
    let gw = gateway(&up);
    for _ in 0..5 {
        let r = get(gw.addr, "/status");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello world");
        assert!(r.header("x-powered-by").is_none());
        assert_security_headers(&r);
    }
    assert_eq!(up.conns(), 1, "one upstream connection carried all five");
    let g = up.got();
    assert_eq!(g.len(), 5);
    assert!(g.iter().all(|r| r.conn == 1));
    // What the upstream was sent: HTTP/1.1, the upstream's own authority as Host,
    // no body framing on a GET, the gateway's request id.
    let first = &g[0];
    assert!(
        first.head.starts_with("GET /status HTTP/1.1\r\n"),
        "{}",
        first.head
    );
    assert_eq!(first.header("host"), Some(up.addr.to_string()));
    assert!(first.header("content-length").is_none());
    assert!(first.header("transfer-encoding").is_none());
    assert!(first.header("x-request-id").is_some());
    assert!(first.header("connection").is_none());
}

#[test]
fn transfer_encoding_with_content_length_is_decoded_as_chunked_and_not_reused() {
    let up = Scripted::start(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n4\r\nsafe\r\n0\r\n\r\n"
                .to_vec(),
        )
    });
    let gw = gateway(&up);
    for _ in 0..2 {
        let r = get(gw.addr, "/status");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "safe");
        assert!(r.header("content-length").is_none_or(|v| v == "4"));
    }
    assert_eq!(up.conns(), 2, "an ambiguous response closes its connection");
}

#[test]
fn conflicting_content_lengths_are_a_bad_gateway() {
    let up = Scripted::start(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc".to_vec(),
        )
    });
    let gw = gateway(&up);
    let r = get(gw.addr, "/status");
    assert_problem(&r, 502);
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("rampart_upstream_errors_total")
                && l.contains("app")
                && l.contains("request")),
        "{m}"
    );
}

#[test]
fn a_response_cut_short_is_not_completed_and_the_next_request_works() {
    let up = Scripted::start(|g| {
        if g.head.starts_with("GET /status") {
            Reply::SendClose(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b".to_vec())
        } else {
            Reply::Send(ok("fine"))
        }
    });
    let gw = gateway(&up);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    // hyper closes the client connection when the body fails; whatever reached the
    // client before that, it is not a complete response.
    if let Some(r) = read_response(&mut s) {
        assert_eq!(r.status, 200);
        assert!(
            r.body.len() < 100,
            "the client must not see a complete body"
        );
    }
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let r = get(gw.addr, "/echo");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "fine");
}

#[test]
fn read_until_close_bodies_are_streamed() {
    let up =
        Scripted::start(|_| Reply::SendClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec()));
    let gw = gateway(&up);
    for _ in 0..2 {
        let r = get(gw.addr, "/status");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "until the end");
    }
    assert_eq!(up.conns(), 2);
}

#[test]
fn informational_head_and_no_content_responses() {
    let up = Scripted::start(|g| {
        if g.head.starts_with("HEAD") {
            Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n".to_vec())
        } else if g.head.starts_with("DELETE") {
            Reply::Send(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())
        } else {
            Reply::Send(
                b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    .to_vec(),
            )
        }
    });
    let gw = gateway(&up);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"HEAD /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    // Neither a HEAD response nor a 204 has a body: read exactly the head.
    let head = read_head_only(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 10"),
        "{head}"
    );
    s.write_all(b"DELETE /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let head = read_head_only(&mut s);
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
    assert_eq!(
        up.conns(),
        1,
        "HEAD, 204 and 1xx keep the connection reusable"
    );
}

#[test]
fn an_idle_connection_the_upstream_closed_is_not_used() {
    let up = Scripted::start(|_| Reply::SendCloseAfter(ok("x"), Duration::from_millis(100)));
    let gw = gateway(&up);
    assert_eq!(get(gw.addr, "/status").status, 200);
    std::thread::sleep(Duration::from_millis(400));
    let r = get(gw.addr, "/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "x");
    assert_eq!(up.conns(), 2);
}

#[test]
fn a_connection_closed_under_an_idempotent_request_is_retried_once() {
    // The upstream serves one request per connection and drops the second unanswered:
    // the race between reusing a pooled connection and the upstream closing it.
    let up = Scripted::start(|g| {
        if g.nth == 0 {
            Reply::Send(ok("served"))
        } else {
            Reply::Close
        }
    });
    let gw = gateway(&up);
    assert_eq!(get(gw.addr, "/status").status, 200);
    let r = get(gw.addr, "/status");
    assert_eq!(r.status, 200, "GET is retried on a fresh connection");
    assert_eq!(r.text(), "served");
    assert_eq!(up.conns(), 2);
    // A POST with a body is not replayed.
    let r = raw(
        gw.addr,
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_problem(&r, 502);
}

#[test]
fn request_bodies_are_forwarded_with_their_framing() {
    let up = Scripted::start(|_| Reply::Send(ok("stored")));
    let gw = gateway(&up);
    let r = raw(
        gw.addr,
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(r.status, 200);
    let r = raw(
        gw.addr,
        "PUT /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "stored");
    let r = raw(
        gw.addr,
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let g = up.got();
    assert_eq!(g.len(), 3);
    assert_eq!(g[0].body, b"hello");
    assert_eq!(g[0].header("content-length").as_deref(), Some("5"));
    assert_eq!(g[1].body, b"abcdefg");
    assert_eq!(g[1].header("transfer-encoding").as_deref(), Some("chunked"));
    assert!(g[1].header("content-length").is_none());
    assert_eq!(g[2].header("content-length").as_deref(), Some("0"));
    assert!(g[2].body.is_empty());
}

#[test]
fn an_upstream_answering_before_the_body_is_sent_is_relayed() {
    let up = Scripted::start(|_| {
        Reply::Early(
            b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbig!"
                .to_vec(),
        )
    });
    let cfg =
        base_config(up.addr, "").replace("max_body_bytes = 1024", "max_body_bytes = 67108864");
    let gw = Gateway::start(&cfg);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let total = 32 * 1024 * 1024;
    s.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {total}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if w.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
    });
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.text(), "big!");
    drop(s);
    writer.join().unwrap();
}
