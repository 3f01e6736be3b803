//! Paced HTTP/2 rapid reset (issue 13): streams cancelled one after another, under the
//! reset limit, must not each cost a new upstream connection, and every cancelled
//! request is still logged and counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;

const STREAMS: usize = 1000;

#[test]
fn paced_resets_reuse_upstream_connections_and_are_accounted_for() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, ""));
    paced_resets(&gw, &up);
}

/// The same against an https upstream (hyper's client behind the gateway): a cancelled
/// exchange must not cost its TLS connection either.
#[test]
fn paced_resets_reuse_https_upstream_connections() {
    let up = Upstream::start();
    let front = TlsFront::start(up.addr);
    let gw = front.gateway(&base_config(up.addr, ""), up.addr, "");
    paced_resets(&gw, &up);
}

/// Resets [`STREAMS`] HTTP/2 streams, each before the upstream answers, and checks the
/// new upstream connections that cost and the access log and metrics.
fn paced_resets(gw: &Gateway, up: &Upstream) {
    // Warm the pool with one completed request.
    assert_eq!(gw.get("/slow/1").status, 200);
    let before = up.connections.load(Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let goaways = rt.block_on(async {
        let connect = || async { h2c_connect(gw.addr).await.0 };
        let mut send = connect().await;
        let mut goaways = 0;
        for _ in 0..STREAMS {
            if send.ready().await.is_err() {
                // The gateway ended the connection (GOAWAY): come back, as an attacker
                // would.
                goaways += 1;
                send = connect().await;
                send.ready().await.unwrap();
            }
            let req = http::Request::get("http://127.0.0.1/slow/5")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let fut = send.send_request(req);
            // Cancel before the upstream answers: hyper resets the stream on drop.
            let _ = tokio::time::timeout(Duration::from_millis(2), fut).await;
        }
        goaways
    });
    eprintln!("{goaways} GOAWAYs over {STREAMS} reset streams");
    // Let rescued connections settle back into the pool.
    std::thread::sleep(Duration::from_millis(300));
    let opened = up.connections.load(Ordering::SeqCst) - before;
    eprintln!("{opened} new upstream connections");
    // Before rescued connections, nearly every cancelled stream cost a new upstream
    // connection (issue 13: 143,602 streams, 121,239 connections). The target is
    // 20 per 1,000; measured here mostly 10 to 40, up to 77 when the 2-core machine is
    // busy with builds (the pool grows with upstream latency under scheduling jitter).
    // The bound proves the cost is no longer per stream without flaking on a busy box.
    assert!(
        opened <= STREAMS / 5,
        "{STREAMS} reset streams opened {opened} upstream connections"
    );
    // At least 90% of the cancelled requests are in the access log and the metrics.
    let logged = gw
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"route\":\"slow\"") || l.contains("client_abort"))
        .count();
    assert!(logged >= STREAMS * 9 / 10, "{logged} of {STREAMS} logged");
    let m = gw.admin_get("/metrics").text();
    let counted: u64 = m
        .lines()
        .filter(|l| l.starts_with("rampart_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(
        counted >= (STREAMS * 9 / 10) as u64,
        "{counted} of {STREAMS} counted"
    );
}

#[test]
fn an_idle_http2_connection_is_ended_with_goaway() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, "").replace(
        "max_header_bytes = 16384\n",
        "max_header_bytes = 16384\nh2_idle_timeout_ms = 500\n",
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut send, conn) = h2c_connect(gw.addr).await;
        // A request slower than the idle limit is not cut: only idleness counts.
        let req = http::Request::get("http://127.0.0.1/slow/800")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(send.send_request(req).await.unwrap().status(), 200);
        let start = std::time::Instant::now();
        // Then nothing: the gateway ends the connection (GOAWAY, then close; the client
        // side may see the close as a broken pipe).
        let _ = tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("the idle connection was not ended");
        assert!(send.is_closed() || send.ready().await.is_err());
        let quiet = start.elapsed();
        assert!(quiet >= Duration::from_millis(400), "{quiet:?}");
    });
}

/// An upstream that answers every request on a kept-alive connection with a 20-byte body
/// in two halves 30 ms apart; counts the connections it accepted.
fn slow_tail_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let opened = Arc::new(AtomicUsize::new(0));
    let o = Arc::clone(&opened);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            o.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    while let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..i + 4);
                        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789";
                        if s.write_all(head).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(30));
                        if s.write_all(b"abcdefghij").is_err() {
                            return;
                        }
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, opened)
}

/// HTTP/2 streams reset after their response head, while the upstream still owes part of
/// the body: the rest is read in the background and the connection reused, so the
/// upstream sees a handful of connections, not one per stream; each is logged.
fn resets_inside_the_body(gw: &Gateway, opened: &AtomicUsize) {
    const N: usize = 100;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut send, _conn) = h2c_connect(gw.addr).await;
        for _ in 0..N {
            send.ready().await.unwrap();
            let req = http::Request::get("http://127.0.0.1/status")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            // Dropping the response resets the stream inside its body.
            drop(resp);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    drop(rt);
    std::thread::sleep(Duration::from_millis(300));
    let n = opened.load(Ordering::SeqCst);
    eprintln!("{N} streams reset inside the body: {n} upstream connections");
    assert!(n <= N / 5, "{N} streams reset inside the body opened {n}");
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let aborted = loop {
        let aborted = gw
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("\"route\":\"status\"") && l.contains("client_abort"))
            .count();
        if aborted >= N * 9 / 10 || std::time::Instant::now() > end {
            break aborted;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        aborted >= N * 9 / 10,
        "{aborted} of {N} logged as client_abort"
    );
}

#[test]
fn resets_inside_the_body_reuse_upstream_connections() {
    let (addr, opened) = slow_tail_upstream();
    let gw = Gateway::start(&base_config(addr, ""));
    resets_inside_the_body(&gw, &opened);
}

#[test]
fn resets_inside_the_body_reuse_https_upstream_connections() {
    let (addr, opened) = slow_tail_upstream();
    let front = TlsFront::start(addr);
    let gw = front.gateway(&base_config(addr, ""), addr, "");
    resets_inside_the_body(&gw, &opened);
}
