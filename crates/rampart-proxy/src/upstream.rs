//! Plain-HTTP upstream connections: a bounded keep-alive pool per upstream address and
//! one request/response exchange driven inside the calling task (framing in [`crate::h1`]).
//!
//! - The request body is streamed: what the client has sent so far is written, and
//!   rampart waits for more only after flushing. If the upstream answers before the body
//!   is complete, sending stops and the answer is read (the connection is then closed).
//! - The response body is streamed back by [`UpstreamBody`], which owns the connection
//!   and puts it back in the pool the moment the body's last byte has been read, or
//!   closes it if the body is dropped early, framing was ambiguous, or the upstream asked.
//! - A pooled connection the upstream has closed is noticed at checkout from the socket's
//!   readiness, without a syscall in the common case. A request that met a connection
//!   closed under it anyway, before any response byte, is retried once on a fresh
//!   connection if it is idempotent (RFC 9110 §9.2.2) and had no body.
//!
//! Guards against: upstream responses that smuggle a second message (see `h1`), heads and
//! chunk lines without end (caps), idle connections without bound (per-pool cap and idle
//! timeout). Trusts: the configured upstream address.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::h1::{self, Chunk, ChunkedDecoder, FrameError, ReqFraming, RespFraming};

/// Idle connections kept per upstream address.
pub const MAX_IDLE_PER_UPSTREAM: usize = 512;
/// Request bytes gathered before a write is forced.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Read size for response data.
const READ_CHUNK: usize = 16 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong talking to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("connect: timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect: could not resolve {0}")]
    Resolve(String),
    #[error("request: {0}")]
    Io(#[from] io::Error),
    #[error("request: upstream closed the connection before a response")]
    Closed,
    #[error("response: {0}")]
    Frame(#[from] FrameError),
    #[error("response: unsupported status 101 (protocol upgrade)")]
    Upgrade,
    /// The client's request body failed (its limit tripped, or the client went away).
    #[error("request body: {0}")]
    Body(BoxError),
    /// Every connection the cap allows is busy and none freed up in time.
    #[error("connect: all {0} connections busy")]
    Busy(usize),
    /// The client sent nothing of its body for `client_body_idle_timeout_ms`.
    #[error("request body: the client was silent for {0:?}")]
    ClientBodyTimeout(Duration),
}

impl ExchangeError {
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Resolve(_)
        )
    }
}

/// One open connection with its buffers (kept across requests to save allocations).
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// This connection's place under the upstream's `max_connections`.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// The pool for one upstream address. Shared by every pipeline that names the address,
/// so connections survive configuration reloads.
#[derive(Debug)]
pub struct HostPool {
    host: String,
    port: u16,
    /// `host[:port]` as written in the configuration, sent as `Host`.
    authority: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<(Conn, Instant)>>,
    /// Connections being rescued from abandoned exchanges, and the signal that one is
    /// back (see [`AwaitingHead`]).
    rescuing: std::sync::atomic::AtomicUsize,
    returned: tokio::sync::Notify,
    /// One permit per connection the upstream may have open (busy or idle).
    slots: Arc<tokio::sync::Semaphore>,
    max_connections: usize,
    queue_timeout: Duration,
}

/// Per-upstream connection cap and queue (`[upstreams.NAME]`).
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub max_connections: usize,
    pub queue_timeout: Duration,
}

impl HostPool {
    fn new(
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        idle: Duration,
        limits: PoolLimits,
    ) -> Self {
        let max_connections = limits
            .max_connections
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Self {
            host,
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            connect_timeout,
            idle_timeout: idle,
            max_idle: MAX_IDLE_PER_UPSTREAM.min(max_connections),
            idle: Mutex::new(Vec::new()),
            rescuing: std::sync::atomic::AtomicUsize::new(0),
            returned: tokio::sync::Notify::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            max_connections,
            queue_timeout: limits.queue_timeout,
        }
    }

    /// Idle connections currently pooled.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// The most recently used live idle connection, if any.
    fn checkout(&self) -> Option<Conn> {
        let now = Instant::now();
        loop {
            let (conn, since) = self.idle.lock().ok()?.pop()?;
            if now.saturating_duration_since(since) >= self.idle_timeout {
                // Everything below it is older still.
                if let Ok(mut idle) = self.idle.lock() {
                    idle.clear();
                }
                return None;
            }
            if still_open(&conn.stream) {
                return Some(conn);
            }
        }
    }

    /// Closes the connections idle for `idle_timeout` or longer (the sweeper's tick).
    /// Returns how many are left.
    fn sweep(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<(Conn, Instant)> = match self.idle.lock() {
            Ok(mut idle) => {
                let n = expired_prefix(&idle, now, self.idle_timeout);
                idle.drain(..n).collect()
            }
            Err(_) => return 0,
        };
        // Closed outside the lock.
        drop(expired);
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// With the pool empty but connections being rescued, waits a little for one of
    /// them rather than opening a new connection.
    async fn await_rescued(&self) -> Option<Conn> {
        if self.rescuing.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return None;
        }
        let _ = tokio::time::timeout(RESCUE_WAIT, self.returned.notified()).await;
        self.checkout()
    }

    fn checkin(&self, mut conn: Conn) {
        // A buffer grown by one large answer is not kept for the idle time.
        if conn.rbuf.capacity() > MAX_POOLED_BUFFER {
            conn.rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        if conn.wbuf.capacity() > MAX_POOLED_BUFFER {
            conn.wbuf = Vec::with_capacity(1024);
        }
        let now = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            prune_expired(&mut idle, now, self.idle_timeout);
            if idle.len() < self.max_idle {
                idle.push((conn, now));
            }
        }
        // A request queued at the cap may take it.
        if self.slots.available_permits() == 0 {
            self.returned.notify_one();
        }
    }

    /// A place under the cap: at once if one is free, else whichever comes first of a
    /// freed place and a connection checked back in, within `queue_timeout`.
    async fn slot_or_conn(
        &self,
    ) -> Result<Result<tokio::sync::OwnedSemaphorePermit, Conn>, ExchangeError> {
        if let Ok(p) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(Ok(p));
        }
        let wait = async {
            loop {
                tokio::select! {
                    p = Arc::clone(&self.slots).acquire_owned() => {
                        return p.map(Ok).map_err(|_| ExchangeError::Busy(self.max_connections));
                    }
                    () = self.returned.notified() => {
                        if let Some(c) = self.checkout() {
                            return Ok(Err(c));
                        }
                    }
                }
            }
        };
        tokio::time::timeout(self.queue_timeout, wait)
            .await
            .map_err(|_| ExchangeError::Busy(self.max_connections))?
    }

    /// A pooled connection or a new one, within the cap.
    async fn obtain(&self) -> Result<(Conn, bool), ExchangeError> {
        if let Some(c) = self.checkout() {
            return Ok((c, true));
        }
        if let Some(c) = self.await_rescued().await {
            return Ok((c, true));
        }
        match self.slot_or_conn().await? {
            Err(c) => Ok((c, true)),
            Ok(slot) => Ok((self.connect(slot).await?, false)),
        }
    }

    async fn connect(
        &self,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Conn, ExchangeError> {
        let attempt = async {
            let addrs: Vec<SocketAddr> = match self.host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, self.port)],
                Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                    .await
                    .map_err(|_| ExchangeError::Resolve(self.authority.clone()))?
                    .collect(),
            };
            let mut last = ExchangeError::Resolve(self.authority.clone());
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = ExchangeError::Connect(e),
                }
            }
            Err(last)
        };
        let stream = tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| ExchangeError::ConnectTimeout(self.connect_timeout))??;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(1024),
            _slot: slot,
        })
    }
}

/// Largest read or write buffer a pooled connection keeps while idle.
const MAX_POOLED_BUFFER: usize = 64 * 1024;

/// How many of the oldest idle connections (the front of the list: connections are
/// pushed in the order they come back) have been idle for `timeout` or longer.
fn expired_prefix(idle: &[(Conn, Instant)], now: Instant, timeout: Duration) -> usize {
    idle.iter()
        .take_while(|(_, since)| now.saturating_duration_since(*since) >= timeout)
        .count()
}

fn prune_expired(idle: &mut Vec<(Conn, Instant)>, now: Instant, timeout: Duration) {
    let n = expired_prefix(idle, now, timeout);
    if n > 0 {
        idle.drain(..n);
    }
}

/// Closes idle connections of `pool` once they pass its idle timeout, so that a burst's
/// connections (and their buffers) are released even when no request comes after it.
/// Ends with the pool.
fn spawn_sweeper(pool: &Arc<HostPool>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(pool);
    let every = (pool.idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
    rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = weak.upgrade() else {
                return;
            };
            pool.sweep();
        }
    });
}

/// An idle connection is usable if the socket reports nothing to read: any readiness
/// means the upstream closed it or sent bytes nobody asked for.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// Pools by upstream address; one per process.
#[derive(Debug, Default)]
pub struct Pools {
    by_authority: Mutex<HashMap<String, Arc<HostPool>>>,
}

impl Pools {
    /// The pool for `authority`, created on first use (from configuration, not from
    /// client input, so the map is bounded by the configured upstreams).
    pub fn get(
        &self,
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        idle: Duration,
        limits: PoolLimits,
    ) -> Arc<HostPool> {
        let mut map = match self.by_authority.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        Arc::clone(map.entry(authority.as_str().to_owned()).or_insert_with(|| {
            let pool = Arc::new(HostPool::new(authority, connect_timeout, idle, limits));
            spawn_sweeper(&pool);
            pool
        }))
    }
}

/// Methods a client may expect to be retried (RFC 9110 §9.2.2).
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What the writer saw.
enum Sent {
    All,
    /// The upstream began answering before the request was complete.
    EarlyResponse,
}

/// Writes all of `buf`, but stops early if the upstream starts answering while the write
/// is blocked (it is not reading what we send).
async fn write_watching(stream: &mut TcpStream, buf: &[u8]) -> io::Result<Sent> {
    let mut off = 0;
    poll_fn(|cx| {
        while let Some(rest) = buf.get(off..).filter(|r| !r.is_empty()) {
            match Pin::new(&mut *stream).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => off += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return match stream.poll_read_ready(cx) {
                        Poll::Ready(_) => Poll::Ready(Ok(Sent::EarlyResponse)),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        Poll::Ready(Ok(Sent::All))
    })
    .await
}

/// Reads more response bytes into `rbuf`; `Ok(0)` is end of stream.
fn poll_fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if conn.rbuf.capacity() - conn.rbuf.len() < 1024 {
        conn.rbuf.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.rbuf)
}

/// The body-phase deadlines of one exchange (`[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Longest silence inside the client's request body.
    pub client_body_idle: Duration,
    /// Longest silence inside the upstream's response body.
    pub upstream_body_idle: Duration,
}

/// The request as the forwarding stage prepared it.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    pub target_prefix: &'a str,
    pub target: &'a str,
    /// Without hop-by-hop fields.
    pub headers: &'a HeaderMap,
    /// Fields of `headers` not to send (`Host`, body framing and whatever `extra`
    /// replaces).
    pub skip: &'a (dyn Fn(&HeaderName) -> bool + Sync),
    /// Fields the gateway adds.
    pub extra: &'a [(&'a HeaderName, Option<&'a HeaderValue>)],
}

/// Sends one request and returns the response head with a streaming body.
pub async fn exchange<B>(
    pool: &Arc<HostPool>,
    req: Outgoing<'_>,
    body: B,
    deadlines: Deadlines,
) -> Result<Response<UpstreamBody>, ExchangeError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let framing = if body.is_end_stream() {
        ReqFraming::None
    } else {
        match body.size_hint().exact() {
            Some(0) if body.is_end_stream() => ReqFraming::None,
            Some(n) if n > 0 => ReqFraming::Length(n),
            _ => ReqFraming::Chunked,
        }
    };
    let replayable = framing == ReqFraming::None && idempotent(req.method);
    let mut head = Vec::new();
    let mut retried = false;
    let (mut conn, resp_head, early) = loop {
        let (mut conn, reused) = pool.obtain().await?;
        conn.wbuf.clear();
        if head.is_empty() {
            h1::encode_request_head(
                &mut conn.wbuf,
                req.method,
                req.target_prefix,
                req.target,
                &pool.authority,
                req.headers,
                req.skip,
                req.extra,
                framing,
            );
        } else {
            std::mem::swap(&mut conn.wbuf, &mut head);
        }
        let sent = if framing == ReqFraming::None {
            write_watching(&mut conn.stream, &conn.wbuf).await
        } else {
            send_body(
                &mut conn,
                body.as_mut(),
                framing,
                deadlines.client_body_idle,
            )
            .await?
        };
        let sent = match sent {
            Ok(s) => s,
            Err(_) if reused && replayable && !retried => {
                retried = true;
                head = std::mem::take(&mut conn.wbuf);
                continue;
            }
            // The upstream may have answered before it stopped reading (a 413 of its
            // own, say): that answer is worth more than the write error.
            Err(e) => match read_head(&mut conn, req.method).await {
                Ok(h) => break (conn, h, true),
                Err(_) => return Err(e.into()),
            },
        };
        // The request is out: if the exchange is abandoned while the answer is awaited
        // (the client reset its stream or went away), the guard saves the connection.
        let early = matches!(sent, Sent::EarlyResponse);
        let mut guard = AwaitingHead {
            conn: Some(conn),
            pool,
            method: req.method,
            armed: !early,
        };
        let Some(c) = guard.conn.as_mut() else {
            return Err(ExchangeError::Closed);
        };
        let got = read_head(c, req.method).await;
        let Some(mut conn) = guard.conn.take() else {
            return Err(ExchangeError::Closed);
        };
        match got {
            Ok(h) => break (conn, h, early),
            Err(ReadHeadError::ClosedBeforeResponse) if reused && replayable && !retried => {
                retried = true;
                head = std::mem::take(&mut conn.wbuf);
            }
            Err(ReadHeadError::ClosedBeforeResponse) => return Err(ExchangeError::Closed),
            Err(ReadHeadError::Other(e)) => return Err(e),
        }
    };
    let h1::ResponseHead {
        status,
        version: _,
        mut headers,
        framing: resp_framing,
        reusable,
    } = resp_head;
    let reusable = reusable && !early;
    if matches!(resp_framing, RespFraming::Chunked | RespFraming::Close) {
        // The client side frames these itself; a Content-Length beside
        // Transfer-Encoding is exactly what must not travel on.
        headers.remove(http::header::CONTENT_LENGTH);
    }
    let mut resp = Response::new(UpstreamBody::empty());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    let state = match resp_framing {
        RespFraming::Empty | RespFraming::Length(0) => {
            if reusable && conn.rbuf.is_empty() {
                pool.checkin(conn);
            }
            return Ok(resp);
        }
        RespFraming::Length(n) => BodyState::Length(n),
        RespFraming::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
        RespFraming::Close => BodyState::Close,
    };
    conn.wbuf.clear();
    *resp.body_mut() = UpstreamBody {
        conn: Some(conn),
        pool: Some(Arc::clone(pool)),
        state,
        reusable,
        idle: deadlines.upstream_body_idle,
        deadline: None,
    };
    Ok(resp)
}

/// Streams the request body after the head already in `conn.wbuf`. The outer `Result`
/// carries body errors (no retry); the inner one is the socket's.
async fn send_body<B>(
    conn: &mut Conn,
    mut body: Pin<&mut B>,
    framing: ReqFraming,
    idle: Duration,
) -> Result<io::Result<Sent>, ExchangeError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    enum Next<F> {
        Frame(F),
        WouldWait,
    }
    let chunked = framing == ReqFraming::Chunked;
    loop {
        let next = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(Next::Frame(f.map(|r| r.map_err(Into::into)))),
            Poll::Pending if conn.wbuf.is_empty() => Poll::Pending,
            Poll::Pending => Poll::Ready(Next::WouldWait),
        });
        // Only a real wait (nothing gathered to write) is timed.
        let next = match tokio::time::timeout(idle, next).await {
            Ok(n) => n,
            Err(_) => return Err(ExchangeError::ClientBodyTimeout(idle)),
        };
        match next {
            Next::WouldWait => {}
            Next::Frame(None) => break,
            Next::Frame(Some(Err(e))) => return Err(ExchangeError::Body(e)),
            Next::Frame(Some(Ok(frame))) => {
                // Trailers of the client's request are not forwarded.
                if let Ok(data) = frame.into_data() {
                    if chunked {
                        h1::encode_chunk(&mut conn.wbuf, &data);
                    } else {
                        conn.wbuf.extend_from_slice(&data);
                    }
                }
                if conn.wbuf.len() < WRITE_HIGH_WATER && !body.is_end_stream() {
                    continue;
                }
                if body.is_end_stream() {
                    break;
                }
            }
        }
        match write_watching(&mut conn.stream, &conn.wbuf).await {
            Ok(Sent::All) => conn.wbuf.clear(),
            other => return Ok(other),
        }
    }
    if chunked {
        conn.wbuf.extend_from_slice(h1::LAST_CHUNK);
    }
    Ok(write_watching(&mut conn.stream, &conn.wbuf).await)
}

/// Longest a rescued connection may take to deliver the rest of an abandoned answer.
pub(crate) const RESCUE_WITHIN: Duration = Duration::from_secs(2);
/// Longest a request waits for a rescued connection before opening a new one.
const RESCUE_WAIT: Duration = Duration::from_millis(10);
/// Largest abandoned response body read to keep its connection.
pub(crate) const RESCUE_MAX_BODY: u64 = 256 * 1024;

/// A connection whose request is fully sent, while its response head is awaited. Dropped
/// with the connection still inside (the exchange was abandoned: an HTTP/2 stream reset,
/// a client gone), it hands the connection to a short background task that reads and
/// discards the answer and pools the connection again, so that cancelled requests do not
/// each cost the next request a new upstream connection (paced rapid reset).
struct AwaitingHead<'a> {
    conn: Option<Conn>,
    pool: &'a Arc<HostPool>,
    method: &'a Method,
    armed: bool,
}

impl Drop for AwaitingHead<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.armed
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            self.pool
                .rescuing
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            rt.spawn(rescue(conn, Arc::clone(self.pool), self.method.clone()));
        }
    }
}

/// Reads an abandoned answer to its end (within [`RESCUE_WITHIN`] and
/// [`RESCUE_MAX_BODY`]) and pools the connection if it can be reused; closes it otherwise.
async fn rescue(mut conn: Conn, pool: Arc<HostPool>, method: Method) {
    let done = tokio::time::timeout(RESCUE_WITHIN, async {
        let Ok(head) = read_head(&mut conn, &method).await else {
            return false;
        };
        if !head.reusable {
            return false;
        }
        let state = match head.framing {
            RespFraming::Empty => BodyState::Done,
            RespFraming::Length(n) => BodyState::Length(n),
            RespFraming::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
            RespFraming::Close => return false,
        };
        drain(&mut conn, state).await
    })
    .await;
    requeue(conn, &pool, matches!(done, Ok(true)));
}

/// The rest of an abandoned response body, read and discarded.
async fn rescue_body(mut conn: Conn, pool: Arc<HostPool>, state: BodyState) {
    let done = tokio::time::timeout(RESCUE_WITHIN, drain(&mut conn, state)).await;
    requeue(conn, &pool, matches!(done, Ok(true)));
}

fn requeue(conn: Conn, pool: &HostPool, done: bool) {
    if done && conn.rbuf.is_empty() {
        pool.checkin(conn);
    }
    pool.rescuing
        .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    pool.returned.notify_one();
}

/// Reads a response body to its end without keeping it; `false` when it is too long,
/// broken, or delimited by the connection's end.
async fn drain(conn: &mut Conn, state: BodyState) -> bool {
    match state {
        BodyState::Done => true,
        BodyState::Length(n) if n <= RESCUE_MAX_BODY => {
            let mut rem = n;
            loop {
                let k = usize::try_from(rem)
                    .unwrap_or(usize::MAX)
                    .min(conn.rbuf.len());
                let _ = conn.rbuf.split_to(k);
                rem -= k as u64;
                if rem == 0 {
                    return true;
                }
                match poll_fn(|cx| poll_fill(conn, cx)).await {
                    Ok(n) if n > 0 => {}
                    _ => return false,
                }
            }
        }
        BodyState::Chunked(mut dec) => {
            let mut seen = 0u64;
            loop {
                match dec.decode(&mut conn.rbuf) {
                    Ok(Chunk::Data(d)) => {
                        seen = seen.saturating_add(d.len() as u64);
                        if seen > RESCUE_MAX_BODY {
                            return false;
                        }
                    }
                    Ok(Chunk::Done) => return true,
                    Ok(Chunk::NeedMore) => match poll_fn(|cx| poll_fill(conn, cx)).await {
                        Ok(n) if n > 0 => {}
                        _ => return false,
                    },
                    Err(_) => return false,
                }
            }
        }
        BodyState::Length(_) | BodyState::Close => false,
    }
}

enum ReadHeadError {
    /// End of stream or reset with no response byte received.
    ClosedBeforeResponse,
    Other(ExchangeError),
}

/// Reads up to and including the final (non-1xx) response head.
async fn read_head(conn: &mut Conn, method: &Method) -> Result<h1::ResponseHead, ReadHeadError> {
    let mut got_any = false;
    loop {
        if !conn.rbuf.is_empty() {
            match h1::parse_response_head(&mut conn.rbuf, method) {
                Ok(Some(head)) => {
                    if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
                        return Err(ReadHeadError::Other(ExchangeError::Upgrade));
                    }
                    if head.status.is_informational() {
                        continue; // 100 Continue, 103 Early Hints: not relayed
                    }
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadHeadError::Other(e.into())),
            }
        }
        match poll_fn(|cx| poll_fill(conn, cx)).await {
            Ok(0) if !got_any => return Err(ReadHeadError::ClosedBeforeResponse),
            Ok(0) => return Err(ReadHeadError::Other(FrameError::Head("truncated").into())),
            Ok(_) => got_any = true,
            Err(e)
                if !got_any
                    && matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
            {
                return Err(ReadHeadError::ClosedBeforeResponse);
            }
            Err(e) => return Err(ReadHeadError::Other(e.into())),
        }
    }
}

#[derive(Debug)]
enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
    Done,
}

/// A response body read straight from the upstream connection.
#[derive(Debug)]
pub struct UpstreamBody {
    conn: Option<Conn>,
    pool: Option<Arc<HostPool>>,
    state: BodyState,
    reusable: bool,
    /// Longest silence from the upstream inside the body.
    idle: Duration,
    /// Armed the first time the body waits for the upstream; pushed back on progress.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The upstream's body ended early or broke its framing.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream closed the connection inside the response body")]
    Truncated,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("upstream sent nothing of the response body for {0:?}")]
    IdleTimeout(Duration),
}

impl BodyError {
    /// The reason code of the access log and the `kind` of `rampart_upstream_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Frame(_) => "upstream_bad_framing",
            Self::Io(_) => "upstream_io_error",
            Self::IdleTimeout(_) => "upstream_body_timeout",
        }
    }
}

impl UpstreamBody {
    fn empty() -> Self {
        Self {
            conn: None,
            pool: None,
            state: BodyState::Done,
            reusable: false,
            idle: Duration::MAX,
            deadline: None,
        }
    }

    /// The body is complete: the connection goes back to the pool if nothing forbids it.
    fn finish(&mut self) {
        self.state = BodyState::Done;
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take())
            && self.reusable
            && conn.rbuf.is_empty()
        {
            pool.checkin(conn);
        }
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.state = BodyState::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Drop for UpstreamBody {
    /// A body dropped unfinished (the client reset its stream or went away): a short
    /// rest is read in the background so that the connection goes back to the pool.
    fn drop(&mut self) {
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take())
            && self.reusable
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let state = std::mem::replace(&mut self.state, BodyState::Done);
            if matches!(state, BodyState::Close) {
                return;
            }
            pool.rescuing
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            rt.spawn(rescue_body(conn, pool, state));
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                this.state = BodyState::Done;
                return Poll::Ready(None);
            };
            match &mut this.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                BodyState::Length(rem) => {
                    if !conn.rbuf.is_empty() {
                        let n = usize::try_from(*rem)
                            .unwrap_or(usize::MAX)
                            .min(conn.rbuf.len());
                        let data = conn.rbuf.split_to(n).freeze();
                        *rem -= n as u64;
                        if *rem == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                BodyState::Chunked(dec) => match dec.decode(&mut conn.rbuf) {
                    Ok(Chunk::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    Ok(Chunk::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Chunk::NeedMore) => {}
                    Err(e) => return this.fail(e.into()),
                },
                BodyState::Close => {
                    if !conn.rbuf.is_empty() {
                        let data = conn.rbuf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match poll_fill(conn, cx) {
                Poll::Pending => {
                    let idle = this.idle;
                    let d = this
                        .deadline
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if d.as_mut().poll(cx).is_ready() {
                        return this.fail(BodyError::IdleTimeout(idle));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(n)) if n > 0 => {
                    if let Some(d) = this.deadline.as_mut() {
                        d.as_mut().reset(tokio::time::Instant::now() + this.idle);
                    }
                }
                Poll::Ready(Ok(_)) => {
                    if matches!(this.state, BodyState::Close) {
                        this.reusable = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    return this.fail(BodyError::Truncated);
                }
                Poll::Ready(Err(e)) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, BodyState::Done | BodyState::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            BodyState::Length(n) => SizeHint::with_exact(n),
            BodyState::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn pool_and_peer(idle: Duration) -> (HostPool, tokio::net::TcpListener) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth: http::uri::Authority = l.local_addr().unwrap().to_string().parse().unwrap();
        let limits = PoolLimits {
            max_connections: 4,
            queue_timeout: Duration::from_millis(100),
        };
        (
            HostPool::new(&auth, Duration::from_secs(1), idle, limits),
            l,
        )
    }

    fn slot(pool: &HostPool) -> tokio::sync::OwnedSemaphorePermit {
        Arc::clone(&pool.slots).try_acquire_owned().unwrap()
    }

    #[tokio::test]
    async fn checkout_skips_connections_the_peer_closed() {
        let (pool, l) = pool_and_peer(Duration::from_secs(60)).await;
        let c = pool.connect(slot(&pool)).await.unwrap();
        let (peer, _) = l.accept().await.unwrap();
        pool.checkin(c);
        assert_eq!(pool.idle_count(), 1);
        let c = pool.checkout().expect("live connection is handed out");
        pool.checkin(c);
        drop(peer);
        // Let the FIN arrive and the reactor see it.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if pool.checkout().is_none() {
                break;
            }
        }
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.checkout().is_none());
    }

    #[tokio::test]
    async fn idle_connections_expire_and_the_pool_is_capped() {
        let (mut pool, l) = pool_and_peer(Duration::from_millis(20)).await;
        pool.max_idle = 2;
        let mut peers = Vec::new();
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(pool.connect(slot(&pool)).await.unwrap());
            peers.push(l.accept().await.unwrap());
        }
        for c in conns {
            pool.checkin(c);
        }
        assert_eq!(pool.idle_count(), 2, "the third one is closed, not kept");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(pool.checkout().is_none(), "expired connections are dropped");
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_without_further_requests() {
        use tokio::io::AsyncReadExt as _;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth: http::uri::Authority = l.local_addr().unwrap().to_string().parse().unwrap();
        let limits = PoolLimits {
            max_connections: 8,
            queue_timeout: Duration::from_millis(100),
        };
        let pools = Pools::default();
        let pool = pools.get(
            &auth,
            Duration::from_secs(1),
            Duration::from_millis(300),
            limits,
        );
        let mut peers = Vec::new();
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(pool.connect(slot(&pool)).await.unwrap());
            peers.push(l.accept().await.unwrap().0);
        }
        for c in conns {
            pool.checkin(c);
        }
        assert_eq!(pool.idle_count(), 3);
        // No checkout follows: the sweeper alone closes them, and the upstream sees it.
        for mut p in peers {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(3), p.read(&mut b))
                .await
                .expect("closed by the sweeper within the idle timeout and one tick")
                .unwrap();
            assert_eq!(n, 0);
        }
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(
            pool.slots.available_permits(),
            8,
            "their places are free again"
        );
    }

    #[tokio::test]
    async fn a_checkin_drops_the_expired_connections_below_it() {
        let (pool, l) = pool_and_peer(Duration::from_millis(50)).await;
        let old = pool.connect(slot(&pool)).await.unwrap();
        let _p1 = l.accept().await.unwrap();
        pool.checkin(old);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let fresh = pool.connect(slot(&pool)).await.unwrap();
        let _p2 = l.accept().await.unwrap();
        pool.checkin(fresh);
        assert_eq!(pool.idle_count(), 1, "only the fresh one is kept");
        assert!(pool.checkout().is_some());
    }

    #[tokio::test]
    async fn connect_errors_are_connect_errors() {
        let (pool, l) = pool_and_peer(Duration::from_secs(1)).await;
        drop(l);
        let e = pool.connect(slot(&pool)).await.unwrap_err();
        assert!(e.is_connect(), "{e}");
    }

    #[tokio::test]
    async fn the_connection_cap_queues_then_refuses() {
        let (pool, l) = pool_and_peer(Duration::from_secs(60)).await;
        let mut held = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..4 {
            held.push(pool.obtain().await.unwrap().0);
            peers.push(l.accept().await.unwrap());
        }
        // At the cap: the fifth waits its queue timeout, then is refused.
        let t = Instant::now();
        let e = pool.obtain().await.unwrap_err();
        assert!(matches!(e, ExchangeError::Busy(4)), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(90));
        // A connection checked in while one waits is handed to the waiter.
        let pool = Arc::new(pool);
        let p2 = Arc::clone(&pool);
        let waiter = tokio::spawn(async move { p2.obtain().await.map(|(_, reused)| reused) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.checkin(held.pop().unwrap());
        assert!(
            waiter.await.unwrap().unwrap(),
            "the freed connection is reused"
        );
        // A closed connection frees its place.
        drop(held.pop());
        assert!(pool.obtain().await.is_ok());
        drop(peers);
    }
}
