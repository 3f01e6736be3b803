//! Body-phase deadlines and endings (issue 13): an upstream that stalls inside its
//! response body, a client that stalls or breaks its upload, a client that goes away.
//! Each ends the request within its deadline, releases the connections, and leaves one
//! access-log line whose reason says what ended it.
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
use std::time::{Duration, Instant};

use common::*;

/// An upstream that answers every request with a head announcing more body than it
/// sends, then goes silent; it counts open and closed connections.
struct StallingUpstream {
    addr: SocketAddr,
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    closed_after: Arc<Mutex<Vec<Duration>>>,
}

impl StallingUpstream {
    fn start(head_and_part: &'static [u8]) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let opened = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let closed_after = Arc::new(Mutex::new(Vec::new()));
        let (o, c, ca) = (opened.clone(), closed.clone(), closed_after.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                o.fetch_add(1, Ordering::SeqCst);
                let (c, ca) = (c.clone(), ca.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    s.write_all(head_and_part).unwrap();
                    let t = Instant::now();
                    // Silent from here on; wait for the gateway to give up.
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    ca.lock().unwrap().push(t.elapsed());
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            opened,
            closed,
            closed_after,
        }
    }
}

const FAST: &str = "client_body_idle_timeout_ms = 500\nupstream_body_idle_timeout_ms = 500\n";

fn config(upstream: SocketAddr) -> String {
    base_config(upstream, "").replace(
        "max_header_bytes = 16384\n",
        &format!("max_header_bytes = 16384\n{FAST}"),
    )
}

fn active(gw: &Gateway) -> i64 {
    let m = gw.admin_get("/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix("rampart_connections_active "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn upstream_stall(head: &'static [u8], label: &str) {
    let up = StallingUpstream::start(head);
    let gw = Gateway::start(&config(up.addr));
    let baseline = active(&gw);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{label}: {text}");
    // The client's connection is closed short of the body, within the deadline.
    assert!(took < Duration::from_secs(3), "{label}: took {took:?}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "{label}: a stalled body was completed: {text:?}"
    );
    // The upstream connection is released, the client connection is gone.
    assert!(
        wait_until(|| up.closed.load(Ordering::SeqCst) == up.opened.load(Ordering::SeqCst)),
        "{label}: upstream connection kept"
    );
    assert!(up.closed_after.lock().unwrap()[0] < Duration::from_secs(3));
    assert!(
        wait_until(|| active(&gw) == baseline),
        "{label}: client connection kept"
    );
    assert!(
        gw.wait_access("upstream_body_timeout", Duration::from_secs(5)),
        "{label}: {}",
        gw.stdout.lock().unwrap().join("")
    );
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("kind=\"upstream_body_timeout\""),
        "{label}: no upstream error counted"
    );
}

#[test]
fn upstream_stalling_inside_a_content_length_body_is_cut_off() {
    upstream_stall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        "content-length",
    );
}

#[test]
fn upstream_stalling_inside_a_chunked_body_is_cut_off() {
    upstream_stall(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        "chunked",
    );
}

/// An HTTP/2 client whose upstream stalls inside the body: the head and the first bytes
/// arrive, then the stream ends with RST_STREAM (not END_STREAM) after the body idle
/// deadline; the connection itself stays usable, and everything is released.
#[test]
fn upstream_stalling_inside_a_body_resets_the_http2_stream() {
    use http_body_util::BodyExt;
    let up = StallingUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    let gw = Gateway::start(&config(up.addr));
    let baseline = active(&gw);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut send, conn) = h2c_connect(gw.addr).await;
        let get = || {
            http::Request::get("http://127.0.0.1/status")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap()
        };
        let resp = send.send_request(get()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let start = Instant::now();
        let mut got = Vec::new();
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("the stalled stream was never ended")
            {
                Some(Ok(f)) => got.extend_from_slice(&f.into_data().unwrap()),
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            }
        };
        let took = start.elapsed();
        assert_eq!(got, b"0123456789");
        let e = end.expect_err("a stalled body ended as if complete (END_STREAM)");
        // hyper reports the peer's RST_STREAM as a remote reset of the stream.
        let why = format!("{e:?}");
        assert!(why.contains("Reset") && why.contains("Remote"), "{why}");
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{took:?}"
        );
        // Only the stream ended: the connection carries the next request.
        let next = send.send_request(get()).await.unwrap();
        assert_eq!(next.status(), 200);
        drop(next);
        drop(send);
        conn.abort();
    });
    // The client closes its connection: hyper's client drives it from a task of its
    // own, which only the runtime's end stops.
    drop(rt);
    // Both upstream connections are closed by the gateway within the deadline.
    assert!(
        wait_until(|| up.opened.load(Ordering::SeqCst) >= 1
            && up.closed.load(Ordering::SeqCst) == up.opened.load(Ordering::SeqCst)),
        "upstream connection kept: {} opened, {} closed",
        up.opened.load(Ordering::SeqCst),
        up.closed.load(Ordering::SeqCst)
    );
    assert!(up.closed_after.lock().unwrap()[0] < Duration::from_secs(3));
    assert!(
        wait_until(|| active(&gw) == baseline),
        "client connection kept"
    );
    assert!(
        gw.wait_access("upstream_body_timeout", Duration::from_secs(5)),
        "{}",
        gw.stdout.lock().unwrap().join("")
    );
    let lines = gw.stdout.lock().unwrap().join("\n");
    let line = lines
        .lines()
        .find(|l| l.contains("upstream_body_timeout"))
        .unwrap();
    assert!(
        line.contains("\"http\":\"HTTP/2.0\"") && line.contains("\"route\":\"status\""),
        "{line}"
    );
    let m = gw.admin_get("/metrics").text();
    assert!(m.contains("kind=\"upstream_body_timeout\""), "{m}");
    let counted: u64 = m
        .lines()
        .filter(|l| l.starts_with("rampart_requests_total{route=\"status\",status=\"200\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(counted >= 1, "{m}");
}

#[test]
fn a_silent_upload_gets_408() {
    let up = Upstream::start();
    let gw = Gateway::start(&config(up.addr));
    silent_upload_gets_408(&gw);
}

/// An upload that stops after 10 of its 100 bytes: 408 within the deadline, logged.
fn silent_upload_gets_408(gw: &Gateway) {
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let start = Instant::now();
    let r = read_response(&mut s).expect("an answer");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(assert_problem(&r, 408)["code"], "client_body_timeout");
    assert!(gw.wait_access("client_body_timeout", Duration::from_secs(5)));
}

#[test]
fn a_malformed_chunk_from_the_client_is_400_not_502() {
    let up = Upstream::start();
    let gw = Gateway::start(&config(up.addr));
    let r = raw(
        gw.addr,
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n",
    );
    assert_eq!(assert_problem(&r, 400)["code"], "bad_request_body");
    let m = gw.admin_get("/metrics").text();
    assert!(!m.contains("rampart_upstream_errors_total{"), "{m}");
}

#[test]
fn a_client_that_aborts_its_upload_is_not_an_upstream_error() {
    let up = Upstream::start();
    let gw = Gateway::start(&config(up.addr));
    {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.write_all(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    } // closed mid-body
    assert!(
        gw.wait_access("client_abort", Duration::from_secs(5)),
        "{}",
        gw.stdout.lock().unwrap().join("")
    );
    let m = gw.admin_get("/metrics").text();
    assert!(!m.contains("rampart_upstream_errors_total{"), "{m}");
    assert!(m.contains("status=\"499\""), "{m}");
}

#[test]
fn a_504_keeps_its_route() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &config(up.addr).replace("request_timeout_ms = 3000", "request_timeout_ms = 300"),
    );
    let r = gw.get("/slow/2000");
    assert_problem(&r, 504);
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("rampart_requests_total{route=\"slow\",status=\"504\",decision=\"deny\"} 1"),
        "{m}"
    );
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    // An upstream with an endless body (64 MiB, far more than the socket buffers hold).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let released = Arc::new(AtomicUsize::new(0));
    let r2 = released.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let r2 = r2.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n");
                let chunk = vec![b'x'; 65536];
                for _ in 0..1024 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                r2.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let gw = Gateway::start(&config(addr).replace(
        FAST,
        &format!("{FAST}client_write_stall_timeout_ms = 500\n"),
    ));
    let baseline = active(&gw);
    let s = TcpStream::connect(gw.addr).unwrap();
    (&s).write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    // Never read. The gateway drops the connection and releases the upstream.
    assert!(
        wait_until(|| released.load(Ordering::SeqCst) == 1),
        "upstream connection still held"
    );
    assert!(
        wait_until(|| active(&gw) == baseline),
        "client connection kept"
    );
    assert!(
        gw.wait_access("client_write_stall", Duration::from_secs(5)),
        "{}",
        gw.stdout.lock().unwrap().join("")
    );
    drop(s);
}

#[test]
fn the_upstream_connection_cap_answers_503_not_descriptor_exhaustion() {
    let up = Upstream::start();
    let gw = Gateway::start(&config(up.addr).replace(
        &format!("url = \"http://{}\"\n", up.addr),
        &format!(
            "url = \"http://{}\"\nmax_connections = 2\nqueue_timeout_ms = 200\n",
            up.addr
        ),
    ));
    cap_of_two_answers_503(&gw, &up);
}

/// Six concurrent slow requests through an upstream capped at 2 connections with a
/// 200 ms queue: two served, four 503 `upstream_busy` with `Retry-After`, at most two
/// connections seen by the upstream.
fn cap_of_two_answers_503(gw: &Gateway, up: &Upstream) {
    let addr = gw.addr;
    let handles: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                raw(
                    addr,
                    "GET /slow/1000 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                )
            })
        })
        .collect();
    let rs: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = rs.iter().filter(|r| r.status == 200).count();
    let busy: Vec<&Resp> = rs.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        ok,
        2,
        "{:?}",
        rs.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(busy.len(), 4);
    for r in busy {
        assert_eq!(assert_problem(r, 503)["code"], "upstream_busy");
        assert!(r.header("retry-after").is_some());
    }
    assert!(up.connections.load(Ordering::SeqCst) <= 2);
    assert!(gw.wait_access("upstream_busy", Duration::from_secs(5)));
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &config(up.addr).replace(FAST, &format!("{FAST}keepalive_idle_timeout_ms = 1500\n")),
    );
    let baseline = active(&gw);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    // Kept alive past the header deadline (1 s) while idle, closed at the idle limit.
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    let idle = start.elapsed();
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(
        idle >= Duration::from_millis(1300) && idle < Duration::from_secs(4),
        "{idle:?}"
    );
    assert!(wait_until(|| active(&gw) == baseline));
}

/// A raw HTTP/2 connection that opens no stream: GOAWAY (NO_ERROR) after
/// `h2_idle_timeout_ms`, then the gateway closes it and its slot is released.
#[test]
fn an_idle_http2_connection_gets_goaway_and_is_closed() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &config(up.addr).replace(FAST, &format!("{FAST}h2_idle_timeout_ms = 600\n")),
    );
    let baseline = active(&gw);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    assert!(wait_until(|| active(&gw) == baseline + 1));
    let mut goaway = None;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    // Read frames to the end of the connection, answering SETTINGS and PING as a
    // client must (a graceful GOAWAY waits for a PING round trip).
    let closed = loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match (kind, flags & 1) {
                (0x4, 0) => s.write_all(b"\0\0\0\x04\x01\0\0\0\0").unwrap(),
                (0x6, 0) => {
                    s.write_all(b"\0\0\x08\x06\x01\0\0\0\0").unwrap();
                    s.write_all(&payload).unwrap();
                }
                (0x7, _) => {
                    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                    goaway.get_or_insert((start.elapsed(), code));
                }
                _ => {}
            }
        }
        match s.read(&mut tmp) {
            Ok(0) => break start.elapsed(),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break start.elapsed(),
            Err(e) => panic!("connection not closed: {e}"),
        }
    };
    let (at, code) = goaway.expect("closed without GOAWAY");
    assert_eq!(code, 0, "GOAWAY error code");
    assert!(
        at >= Duration::from_millis(550) && at < Duration::from_secs(3),
        "GOAWAY after {at:?}"
    );
    assert!(closed < at + Duration::from_secs(2), "closed {closed:?}");
    assert!(
        wait_until(|| active(&gw) == baseline),
        "connection still counted"
    );
}

// ---- https upstreams (hyper's client): the same deadlines and cap ---------------------

/// The gateway of these tests with upstream `app` behind `front` (https).
fn https_gateway(front: &TlsFront, backend: SocketAddr, upstream_extra: &str) -> Gateway {
    front.gateway(&config(backend), backend, upstream_extra)
}

#[test]
fn https_upstream_stalling_inside_its_body_is_cut_off() {
    let up = StallingUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    let front = TlsFront::start(up.addr);
    let gw = https_gateway(&front, up.addr, "");
    let baseline = active(&gw);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The TLS connection to the upstream is dropped, so the front closes its backend.
    assert!(
        wait_until(|| up.closed.load(Ordering::SeqCst) == up.opened.load(Ordering::SeqCst)),
        "upstream connection kept"
    );
    assert!(wait_until(|| active(&gw) == baseline));
    assert!(gw.wait_access("upstream_body_timeout", Duration::from_secs(5)));
    assert!(
        gw.admin_get("/metrics")
            .text()
            .contains("kind=\"upstream_body_timeout\"")
    );
}

#[test]
fn https_upstream_a_silent_upload_gets_408() {
    let up = Upstream::start();
    let front = TlsFront::start(up.addr);
    let gw = https_gateway(&front, up.addr, "");
    // The https path works at all.
    assert_eq!(
        raw(
            gw.addr,
            "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .status,
        200
    );
    silent_upload_gets_408(&gw);
}

#[test]
fn https_upstream_connection_cap_answers_503() {
    let up = Upstream::start();
    let front = TlsFront::start(up.addr);
    let gw = https_gateway(
        &front,
        up.addr,
        "max_connections = 2\nqueue_timeout_ms = 200\n",
    );
    cap_of_two_answers_503(&gw, &up);
}
