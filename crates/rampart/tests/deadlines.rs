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

// ---- https upstreams (hyper's client): the same deadlines and cap ---------------------

/// A TLS front for a plain backend: terminates TLS with a certificate for `localhost`
/// issued by a test CA and copies bytes both ways; one backend connection per client
/// connection, closed when either side closes. `ca` is the CA certificate (PEM) the
/// gateway is told to trust through `SSL_CERT_FILE`.
struct TlsFront {
    addr: SocketAddr,
    ca: std::path::PathBuf,
}

impl TlsFront {
    fn start(backend: SocketAddr) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
            KeyPair,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "rampart upstream test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".into()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let sk = KeyPair::generate().unwrap();
        let sc = sp.signed_by(&sk, &ca).unwrap();
        let dir = private_dir("tls-front");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rustls_pki_types::PrivateKeyDer::try_from(sk.serialize_der()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![sc.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(s).await else {
                            return;
                        };
                        let Ok(mut back) = tokio::net::TcpStream::connect(backend).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                    });
                }
            });
        });
        TlsFront { addr, ca: ca_path }
    }

    /// The gateway's configuration with upstream `app` at this front (https).
    fn gateway(&self, backend: SocketAddr, upstream_extra: &str) -> Gateway {
        let cfg = config(backend).replace(
            &format!("url = \"http://{backend}\"\n"),
            &format!(
                "url = \"https://localhost:{}\"\n{upstream_extra}",
                self.addr.port()
            ),
        );
        let dir = private_dir("gw-https");
        let path = dir.join("rampart.toml");
        std::fs::write(&path, cfg).unwrap();
        let ca = self.ca.to_str().unwrap().to_owned();
        Gateway::spawn_env(dir, path, &[("SSL_CERT_FILE", &ca)]).unwrap()
    }
}

#[test]
fn https_upstream_stalling_inside_its_body_is_cut_off() {
    let up = StallingUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    let front = TlsFront::start(up.addr);
    let gw = front.gateway(up.addr, "");
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
    let gw = front.gateway(up.addr, "");
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
    let gw = front.gateway(up.addr, "max_connections = 2\nqueue_timeout_ms = 200\n");
    cap_of_two_answers_503(&gw, &up);
}
