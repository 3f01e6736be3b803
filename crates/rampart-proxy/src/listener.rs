//! The public listener: accept with a hard connection cap, TLS handshake under a
//! deadline, HTTP/1.1 or HTTP/2 (ALPN or h2c preface), header-read timeout, and a
//! graceful drain that lets in-flight requests finish while new connections are refused.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rampart_config::ServerConfig;
use rampart_http::{ConnInfo, GatewayMetrics, RawTarget, TlsInfo};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use crate::sniff::{Flags, Limits, Sniff};
use crate::{Gateway, MAX_DEADLINE};

/// Listener limits, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub keepalive_idle_timeout: Duration,
    pub client_write_stall_timeout: Duration,
    pub h2_idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    pub drain_timeout: Duration,
}

impl ListenerSettings {
    /// The head gate's limits: a head may be `max_header_bytes` plus a request line.
    fn limits(&self) -> Limits {
        Limits {
            max_head: self.max_header_bytes.saturating_add(8192),
            max_headers: self.max_header_count,
            max_target: 8192,
        }
    }
}

impl From<&ServerConfig> for ListenerSettings {
    fn from(s: &ServerConfig) -> Self {
        Self {
            max_connections: s.max_connections,
            header_read_timeout: s.header_read_timeout,
            keepalive_idle_timeout: s.keepalive_idle_timeout,
            client_write_stall_timeout: s.client_write_stall_timeout.min(MAX_DEADLINE),
            h2_idle_timeout: s.h2_idle_timeout.min(MAX_DEADLINE),
            max_header_bytes: s.max_header_bytes,
            max_header_count: s.max_header_count,
            drain_timeout: s.drain_timeout,
        }
    }
}

/// Keeps `connections_active` honest however a connection task ends.
struct ConnGuard(Arc<GatewayMetrics>);
impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn builder(s: &ListenerSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper refuses a head larger than its read buffer, or with more fields than its
    // cap, with a bare answer; both sit above the head gate's limits so that the gate
    // (problem+json, security headers, logged and counted) answers every such head.
    // The gate times a head from its first byte; hyper's own header timer runs from the
    // moment it waits for a head, so it is the keep-alive idle deadline.
    let limits = s.limits();
    let buf = limits.max_head.saturating_add(8192).max(8192);
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.keepalive_idle_timeout.max(s.header_read_timeout))
        .keep_alive(true)
        .max_headers(limits.max_headers.saturating_add(1).max(100))
        .max_buf_size(buf);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves until `shutdown` turns true, then drains: stops accepting, asks every
/// connection to finish its in-flight requests and close, and waits up to
/// `drain_timeout`. Returns the number of connections still open when it gave up.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    settings: ListenerSettings,
    mut shutdown: watch::Receiver<bool>,
) -> usize {
    let max = settings
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let builder = Arc::new(builder(&settings));
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = Arc::clone(gw.metrics());
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_rejected.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        metrics.connections_active.fetch_add(1, Ordering::Relaxed);
        let gw = Arc::clone(&gw);
        let builder = Arc::clone(&builder);
        let shutdown = shutdown.clone();
        let hrt = settings.header_read_timeout;
        let limits = settings.limits();
        let stall = settings.client_write_stall_timeout;
        let idle_limit = settings.h2_idle_timeout;
        let local = local.unwrap_or(peer);
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = ConnGuard(Arc::clone(&metrics));
            let _ = stream.set_nodelay(true);
            match gw.tls_acceptor() {
                None => {
                    let stalled = Arc::new(AtomicBool::new(false));
                    let info = ConnInfo {
                        peer,
                        local,
                        tls: None,
                        write_stalled: Some(Arc::clone(&stalled)),
                    };
                    let flags = Flags::default();
                    let io = TokioIo::new(
                        Sniff::new(stream, flags.clone(), limits, hrt, stall).on_stall(stalled),
                    );
                    serve_conn(gw, &builder, io, info, flags, shutdown, idle_limit).await;
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(hrt, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            metrics
                                .tls_handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics
                                .tls_handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    let c = tls.get_ref().1;
                    let info = TlsInfo {
                        sni: c.server_name().map(str::to_owned),
                        alpn: c.alpn_protocol().map(<[u8]>::to_vec),
                        peer_certificates: c.peer_certificates().map(|certs| {
                            Arc::new(
                                certs
                                    .iter()
                                    .map(|d| Bytes::copy_from_slice(d.as_ref()))
                                    .collect::<Vec<_>>(),
                            )
                        }),
                    };
                    let stalled = Arc::new(AtomicBool::new(false));
                    let info = ConnInfo {
                        peer,
                        local,
                        tls: Some(Arc::new(info)),
                        write_stalled: Some(Arc::clone(&stalled)),
                    };
                    let flags = Flags::default();
                    let io = TokioIo::new(
                        Sniff::new(tls, flags.clone(), limits, hrt, stall).on_stall(stalled),
                    );
                    serve_conn(gw, &builder, io, info, flags, shutdown, idle_limit).await;
                }
            }
        });
    }
    drop(listener);
    tracing::info!("draining: no new connections; waiting for in-flight requests");
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    match tokio::time::timeout(settings.drain_timeout, slots.acquire_many(all)).await {
        Ok(_) => 0,
        Err(_) => max.saturating_sub(slots.available_permits()),
    }
}

async fn serve_conn<I>(
    gw: Arc<Gateway>,
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    info: ConnInfo,
    flags: Flags,
    mut shutdown: watch::Receiver<bool>,
    idle_limit: Duration,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let current = gw.pipeline();
    let activity = Arc::new(Activity::new());
    let svc = ConnService {
        cached: std::cell::RefCell::new(((*current).clone(), current)),
        gw,
        info,
        flags,
        activity: Arc::clone(&activity),
    };
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    if *shutdown.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    let opened = tokio::time::Instant::from_std(activity.opened);
    let mut floor = opened;
    loop {
        let due = (opened + activity.last_seen() + idle_limit).max(floor);
        tokio::select! {
            r = conn.as_mut() => { log_conn_end(r); return; }
            _ = shutdown.changed() => break,
            () = tokio::time::sleep_until(due) => {
                // No request started or ended for the idle limit and none in flight:
                // GOAWAY (an HTTP/2 connection's graceful end; a response body still
                // streaming finishes).
                let quiet = opened.elapsed().saturating_sub(activity.last_seen());
                if activity.in_flight() == 0 && quiet >= idle_limit {
                    break;
                }
                floor = tokio::time::Instant::now() + idle_limit;
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    log_conn_end(conn.await);
}

/// When a request of the connection last ended (time since it opened) and how many are
/// in flight, for the idle deadline.
#[derive(Debug)]
struct Activity {
    opened: std::time::Instant,
    last_seen_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: std::time::Instant::now(),
            last_seen_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// No clock read: while a request is in flight the connection is not idle, and its
    /// end (always later than its start) is what the idle time counts from.
    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn ended(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_seen_ms.store(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn last_seen(&self) -> Duration {
        Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed))
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

pin_project_lite::pin_project! {
    /// A request's future, counted in flight until it completes or is dropped.
    pub struct Tracked<F> {
        #[pin]
        fut: F,
        activity: Arc<Activity>,
    }

    impl<F> PinnedDrop for Tracked<F> {
        fn drop(this: Pin<&mut Self>) {
            this.project().activity.ended();
        }
    }
}

impl<F: std::future::Future> std::future::Future for Tracked<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

fn log_conn_end(r: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with error");
    }
}

/// Per-connection hyper service: tags each request with the connection facts and hands
/// it to the pipeline current at that moment (a reload affects the next request).
struct ConnService {
    gw: Arc<Gateway>,
    info: ConnInfo,
    flags: Flags,
    /// This connection's copy of the pipeline and the shared one it was cloned from:
    /// cloning a pipeline touches every stage's reference count, so it is done once per
    /// connection and again only after a reload.
    cached: std::cell::RefCell<(crate::Pipeline, Arc<crate::Pipeline>)>,
    activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnService {
    type Response = rampart_http::Resp;
    type Error = std::convert::Infallible;
    type Future = Tracked<<crate::Pipeline as Service<http::Request<Incoming>>>::Future>;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        if req.version() <= http::Version::HTTP_11 {
            let flag = self.flags.next();
            if flag.had_fragment || flag.refused.is_some() {
                req.extensions_mut().insert(RawTarget {
                    had_fragment: flag.had_fragment,
                    refused: flag.refused,
                });
            }
        }
        let current = self.gw.pipeline_ref();
        self.activity.started();
        let fut = match self.cached.try_borrow_mut() {
            Ok(mut c) => {
                if !Arc::ptr_eq(&c.1, &current) {
                    *c = ((**current).clone(), Arc::clone(&current));
                }
                c.0.call(req)
            }
            // Not reentrant in practice; if it ever were, a fresh clone is still right.
            Err(_) => (**current).clone().call(req),
        };
        Tracked {
            fut,
            activity: Arc::clone(&self.activity),
        }
    }
}

/// The kernel's cap on accept-queue lengths (`net.core.somaxconn`), when readable.
fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Binds `addr` with an accept queue of `backlog` (or the kernel's `somaxconn` if lower):
/// a burst of connects waits in the kernel instead of being refused or retried.
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let backlog = somaxconn().map_or(backlog, |m| m.min(backlog)).max(1);
    socket.listen(backlog)
}
