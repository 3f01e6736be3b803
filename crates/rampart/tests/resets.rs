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

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

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
        let connect = || async {
            let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            send
        };
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
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
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
