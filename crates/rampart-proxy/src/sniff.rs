//! The HTTP/1 head gate: every request head is read here, whole, before hyper sees a
//! byte of it. It does two things hyper cannot:
//!
//! - It sees what `http::Uri` hides: a `#fragment` in the request target (the `http`
//!   crate drops it silently, so without this `GET /a#b` would be served as `/a`).
//! - It refuses a head hyper would refuse with a bare `content-length: 0` answer (a
//!   malformed request line, too many or too large header fields, ambiguous body framing,
//!   a transfer coding other than `chunked`, a head that dribbles in past
//!   `header_read_timeout_ms`) and hands hyper a well-formed stand-in request instead,
//!   flagged with the reason, so that the refusal goes through the pipeline like any
//!   other: problem+json, security headers, a request id, one access-log line and one
//!   `rampart_requests_total` increment. The connection is closed after that answer.
//!
//! Our own framing rather than a library's because no HTTP library exposes the raw head
//! or lets a server answer its own parse errors: this module follows request boundaries
//! (head, then a `Content-Length` or chunked body) just far enough to find the next
//! request head, using `httparse` (the parser hyper itself uses) for the head. A head
//! that passes is handed on byte for byte; bodies pass through untouched. Anything it
//! cannot follow (HTTP/2, upgrades, broken chunk framing) stops the gate: hyper refuses
//! broken body framing itself. Bounded: a held head is capped, and so is the flag queue.
//! The common case (a whole head in one read) copies nothing.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rampart_http::Malformed;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the gate learnt about one request, in the order hyper hands requests over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag {
    pub had_fragment: bool,
    /// The head was refused; the request hyper parses is the gate's stand-in.
    pub refused: Option<Malformed>,
}

/// Per-request flags, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Flags(Arc<Mutex<FlagQueue>>);

#[derive(Debug, Default)]
struct FlagQueue {
    q: VecDeque<Flag>,
    /// The framing was lost or the queue overflowed: from here on every request is
    /// treated as carrying a fragment (fail closed).
    poisoned: bool,
}

const MAX_QUEUED: usize = 1024;

impl Flags {
    /// The flags of the next request (none once the gate stopped for HTTP/2; a
    /// fragment, fail closed, once it lost the framing).
    pub fn next(&self) -> Flag {
        let Ok(mut f) = self.0.lock() else {
            return Flag {
                had_fragment: true,
                refused: None,
            };
        };
        match f.q.pop_front() {
            Some(b) => b,
            None => Flag {
                had_fragment: f.poisoned,
                refused: None,
            },
        }
    }

    fn push(&self, flag: Flag) {
        if let Ok(mut f) = self.0.lock() {
            if f.q.len() >= MAX_QUEUED {
                f.poisoned = true;
            } else {
                f.q.push_back(flag);
            }
        }
    }

    fn poison(&self) {
        if let Ok(mut f) = self.0.lock() {
            f.poisoned = true;
        }
    }
}

/// The gate's limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line and header section) held.
    pub max_head: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Longest request target.
    pub max_target: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: 16384 + 8192,
            max_headers: 100,
            max_target: 8192,
        }
    }
}

#[derive(Debug)]
enum State {
    /// At a request boundary: the next bytes are a head.
    Head,
    /// Skipping a fixed-length body.
    Body(u64),
    /// Chunked body: reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Chunked body: skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// Chunked body: trailer section, current line so far.
    Trailers(Vec<u8>),
    /// Not following the stream any more (HTTP/2, an upgrade, lost framing).
    Off,
}

/// Where the bytes given to [`Framer::scan`] stop passing through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// All of them pass.
    All,
    /// From this offset on they are the start of a head not yet complete.
    Hold(usize),
    /// From this offset on they are a refused head (and whatever followed it).
    Refuse(usize, Malformed),
}

/// Follows request boundaries in a byte stream and judges each head.
#[derive(Debug)]
pub struct Framer {
    state: State,
    flags: Flags,
    limits: Limits,
    /// No head has been seen yet (and no HTTP/2 preface).
    first: bool,
    /// Bytes of the stream that passed so far (the HTTP/2 preface counts only at 0).
    consumed: u64,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4). Only the whole of it switches the gate
/// off, as only the whole of it makes hyper speak HTTP/2: a head with the method `PRI`
/// is an HTTP/1 head like any other and is judged.
const PRI: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Framer {
    pub fn new(flags: Flags, limits: Limits) -> Self {
        Self {
            state: State::Head,
            flags,
            limits,
            first: true,
            consumed: 0,
        }
    }

    /// Nothing of the stream has passed yet.
    fn at_start(&self) -> bool {
        self.consumed == 0
    }

    /// Scans `data`, which continues the stream where the last scan's passing bytes
    /// ended (a held head is scanned again from its start, with more bytes after it).
    pub fn scan(&mut self, data: &[u8]) -> Tail {
        let tail = self.scan_inner(data);
        let passed = match tail {
            Tail::All => data.len(),
            Tail::Hold(k) | Tail::Refuse(k, _) => k,
        };
        self.consumed = self.consumed.saturating_add(passed as u64);
        tail
    }

    fn scan_inner(&mut self, mut data: &[u8]) -> Tail {
        let total = data.len();
        while !data.is_empty() {
            let at = total - data.len();
            match &mut self.state {
                State::Off => return Tail::All,
                State::Head => {
                    // The HTTP/2 preface is recognised only at the very start of the
                    // stream, as hyper recognises it.
                    if self.at_start() && at == 0 {
                        let n = data.len().min(PRI.len());
                        if data.get(..n) == PRI.get(..n) {
                            if n < PRI.len() {
                                return Tail::Hold(at);
                            }
                            // HTTP/2 prior knowledge: hyper's business from here
                            // (its own deadlines apply; no head is awaited any more).
                            self.state = State::Off;
                            self.first = false;
                            return Tail::All;
                        }
                    }
                    // Empty lines before a request line are tolerated (RFC 9112 §2.2).
                    let skip = data
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    data = data.get(skip..).unwrap_or(&[]);
                    if data.is_empty() {
                        return Tail::All;
                    }
                    let at = total - data.len();
                    match self.on_head(data) {
                        Ok(Some(len)) => data = data.get(len..).unwrap_or(&[]),
                        Ok(None) if data.len() > self.limits.max_head => {
                            return self.refuse(at, Malformed::HeadTooLarge);
                        }
                        Ok(None) => return Tail::Hold(at),
                        Err(m) => return self.refuse(at, m),
                    }
                }
                State::Body(n) => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(data.len());
                    *n -= k as u64;
                    data = data.get(k..).unwrap_or(&[]);
                    if *n == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkSize(line) => match data.iter().position(|b| *b == b'\n') {
                    None => {
                        line.extend_from_slice(data);
                        data = &[];
                        if line.len() > 4096 {
                            self.lost();
                        }
                    }
                    Some(i) => {
                        line.extend_from_slice(data.get(..i).unwrap_or(&[]));
                        data = data.get(i + 1..).unwrap_or(&[]);
                        let s = String::from_utf8_lossy(line);
                        let hex = s.split(';').next().unwrap_or("").trim();
                        match u64::from_str_radix(hex, 16) {
                            Ok(0) => self.state = State::Trailers(Vec::new()),
                            // data + CRLF
                            Ok(n) => self.state = State::ChunkData(n.saturating_add(2)),
                            Err(_) => self.lost(),
                        }
                    }
                },
                State::ChunkData(n) => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(data.len());
                    *n -= k as u64;
                    data = data.get(k..).unwrap_or(&[]);
                    if *n == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                }
                State::Trailers(line) => match data.iter().position(|b| *b == b'\n') {
                    None => {
                        line.extend_from_slice(data);
                        data = &[];
                        if line.len() > 65536 {
                            self.lost();
                        }
                    }
                    Some(i) => {
                        line.extend_from_slice(data.get(..i).unwrap_or(&[]));
                        data = data.get(i + 1..).unwrap_or(&[]);
                        if line.iter().all(|b| *b == b'\r') {
                            self.state = State::Head;
                        } else {
                            line.clear();
                        }
                    }
                },
            }
        }
        Tail::All
    }

    fn refuse(&mut self, at: usize, m: Malformed) -> Tail {
        self.flags.push(Flag {
            had_fragment: false,
            refused: Some(m),
        });
        self.state = State::Off;
        Tail::Refuse(at, m)
    }

    fn lost(&mut self) {
        self.flags.poison();
        self.state = State::Off;
    }

    /// Parses and judges the head at the start of `head`; on success moves to the state
    /// after it. `Ok(Some(len))`: a good head `len` bytes long; `Ok(None)`: incomplete.
    fn on_head(&mut self, head: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
        let mut many: Vec<httparse::Header<'_>> = Vec::new();
        let mut req = httparse::Request::new(&mut []);
        let parsed = match req.parse_with_uninit_headers(head, &mut headers) {
            Err(httparse::Error::TooManyHeaders) if self.limits.max_headers >= 128 => {
                many.resize(self.limits.max_headers + 1, httparse::EMPTY_HEADER);
                req = httparse::Request::new(&mut many);
                req.parse(head)
            }
            r => r,
        };
        let len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if req.path.is_some_and(|p| p.len() > self.limits.max_target) {
                    return Err(Malformed::UriTooLong);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(Malformed::TooManyHeaders),
            Err(_) => return Err(Malformed::Request),
        };
        if len > self.limits.max_head {
            return Err(Malformed::HeadTooLarge);
        }
        let framing = judge(&req, &self.limits)?;
        self.first = false;
        let had_fragment = req.path.is_some_and(|p| p.contains('#'));
        self.flags.push(Flag {
            had_fragment,
            refused: None,
        });
        self.state = match framing {
            Framing::Opaque => State::Off,
            Framing::Chunked => State::ChunkSize(Vec::new()),
            Framing::Length(n) if n > 0 => State::Body(n),
            Framing::Length(_) | Framing::None => State::Head,
        };
        Ok(Some(len))
    }
}

/// How a good head's body is framed.
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// CONNECT or an upgrade: the gate stops following the stream.
    Opaque,
}

/// The checks hyper would make on a head (so that it never has to refuse one itself),
/// and the framing rules of RFC 9112 §6.1 and §6.3, stricter where ambiguity could be
/// used for smuggling.
fn judge(req: &httparse::Request<'_, '_>, limits: &Limits) -> Result<Framing, Malformed> {
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Malformed::Request);
    };
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(Malformed::Request);
    }
    if path.len() > limits.max_target {
        return Err(Malformed::UriTooLong);
    }
    if http::Uri::try_from(path).is_err() {
        return Err(Malformed::Request);
    }
    if req.headers.len() > limits.max_headers {
        return Err(Malformed::TooManyHeaders);
    }
    let mut length: Option<u64> = None;
    let mut codings = 0usize;
    let mut chunked_last = false;
    let mut chunked_seen = false;
    let mut other_coding = false;
    let mut te = false;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value).ok_or(Malformed::Framing)?;
            if length.is_some_and(|l| l != n) {
                return Err(Malformed::Framing);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            let v = std::str::from_utf8(h.value).map_err(|_| Malformed::Framing)?;
            for tok in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                codings += 1;
                if chunked_last {
                    // `chunked` is not the final coding.
                    return Err(Malformed::Framing);
                }
                if tok.eq_ignore_ascii_case("chunked") {
                    if chunked_seen {
                        return Err(Malformed::Framing);
                    }
                    chunked_seen = true;
                    chunked_last = true;
                } else {
                    other_coding = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if te {
        if version == 0 || length.is_some() || codings == 0 || !chunked_last {
            return Err(Malformed::Framing);
        }
        if other_coding {
            return Err(Malformed::TransferCoding);
        }
    }
    Ok(if method == "CONNECT" || upgrade {
        Framing::Opaque
    } else if te {
        Framing::Chunked
    } else {
        length.map_or(Framing::None, Framing::Length)
    })
}

/// A `Content-Length` value: ASCII digits only, at most 19 of them (no sign, list or
/// whitespace inside).
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The request hyper parses in place of a refused head: well-formed, no body, and
/// asking for the connection to close after the answer.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n";

/// The gate's byte bookkeeping, apart from any IO so that it can be tested and fuzzed:
/// bytes read go in through [`Gate::feed`]; what hyper may read comes out as a prefix of
/// those bytes or through [`Gate::take_out`].
#[derive(Debug)]
pub struct Gate {
    framer: Framer,
    /// The start of a head not yet complete.
    held: Vec<u8>,
    /// Bytes for hyper that are not a prefix of the last read (a released held head,
    /// the stand-in), and how much of them was taken.
    out: Vec<u8>,
    out_pos: usize,
    /// A head was refused: nothing more passes.
    closed: bool,
}

impl Gate {
    pub fn new(flags: Flags, limits: Limits) -> Self {
        Self {
            framer: Framer::new(flags, limits),
            held: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            closed: false,
        }
    }

    /// Takes bytes just read. Returns how many leading bytes of `new` pass to hyper as
    /// they are; the rest is held or replaced, and any bytes for hyper that are not a
    /// prefix of `new` wait in [`Gate::take_out`] (call it first, before reading more).
    pub fn feed(&mut self, new: &[u8]) -> usize {
        if self.closed {
            return 0;
        }
        if self.held.is_empty() {
            return match self.framer.scan(new) {
                Tail::All => new.len(),
                Tail::Hold(k) => {
                    self.held.extend_from_slice(new.get(k..).unwrap_or(&[]));
                    k
                }
                Tail::Refuse(k, _) => {
                    self.stand_in();
                    k
                }
            };
        }
        let old = self.held.len();
        self.held.extend_from_slice(new);
        // A head can only end with a line feed: rescan only when one arrived (a head
        // trickled a byte at a time costs linear, not quadratic, work), or when the
        // preface check needs more bytes.
        let looks_done = new.contains(&b'\n') || (self.framer.at_start() && old < PRI.len());
        if !looks_done {
            if self.held.len() > self.framer.limits.max_head {
                self.held = Vec::new();
                self.framer.refuse(0, Malformed::HeadTooLarge);
                self.stand_in();
            }
            return 0;
        }
        let combined = std::mem::take(&mut self.held);
        match self.framer.scan(&combined) {
            Tail::All => self.push_out(&combined),
            Tail::Hold(k) => {
                self.push_out(combined.get(..k).unwrap_or(&[]));
                self.held = combined.get(k..).unwrap_or(&[]).to_vec();
            }
            Tail::Refuse(k, _) => {
                self.push_out(combined.get(..k).unwrap_or(&[]));
                self.stand_in();
            }
        }
        0
    }

    /// Bytes waiting for hyper ahead of anything read later.
    pub fn take_out(&mut self, max: usize) -> &[u8] {
        let start = self.out_pos;
        let end = self.out.len().min(start.saturating_add(max));
        self.out_pos = end;
        self.out.get(start..end).unwrap_or(&[])
    }

    pub fn has_out(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// A head is partly received.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// No request head has been released yet.
    pub fn before_first_head(&self) -> bool {
        self.framer.first
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    /// The head being held took too long: refuse it (408).
    pub fn time_out(&mut self) {
        if self.closed {
            return;
        }
        self.held = Vec::new();
        self.framer.refuse(0, Malformed::HeadTimeout);
        self.stand_in();
    }

    fn push_out(&mut self, b: &[u8]) {
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        self.out.extend_from_slice(b);
    }

    fn stand_in(&mut self) {
        self.push_out(STAND_IN);
        self.held = Vec::new();
        self.closed = true;
    }
}

pin_project_lite::pin_project! {
    /// An IO stream whose reads go through a [`Gate`], with the header-read deadline,
    /// and whose writes fail once the client has left written bytes unread for the
    /// write-stall deadline (a client that stops reading is dropped).
    pub struct Sniff<S> {
        #[pin]
        inner: S,
        gate: Gate,
        header_timeout: Duration,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        write_stall: Duration,
        write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        stalled: Option<Arc<std::sync::atomic::AtomicBool>>,
    }
}

impl<S> Sniff<S> {
    pub fn new(
        inner: S,
        flags: Flags,
        limits: Limits,
        header_timeout: Duration,
        write_stall: Duration,
    ) -> Self {
        Self {
            inner,
            gate: Gate::new(flags, limits),
            header_timeout,
            // The first head is due within the deadline of the connection's start.
            deadline: Some(Box::pin(tokio::time::sleep(header_timeout))),
            write_stall,
            write_deadline: None,
            stalled: None,
        }
    }

    /// `flag` is set when the write-stall deadline drops the client.
    #[must_use]
    pub fn on_stall(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.stalled = Some(flag);
        self
    }
}

/// Applies the write-stall deadline to one write-side poll: progress disarms it, a
/// wait arms it, and a wait past it is an error (`TimedOut`), which ends the connection.
fn stall_guard<T>(
    r: Poll<io::Result<T>>,
    stall: Duration,
    deadline: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Option<&Arc<std::sync::atomic::AtomicBool>>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    match r {
        Poll::Pending => {
            let d = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
            if d.as_mut().poll(cx).is_ready() {
                *deadline = None;
                if let Some(f) = stalled {
                    f.store(true, std::sync::atomic::Ordering::Release);
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client_write_stall: the client stopped reading",
                )));
            }
            Poll::Pending
        }
        ready => {
            *deadline = None;
            ready
        }
    }
}

impl<S: AsyncRead> AsyncRead for Sniff<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        loop {
            if this.gate.has_out() {
                let n = buf.remaining();
                buf.put_slice(this.gate.take_out(n));
                return Poll::Ready(Ok(()));
            }
            if this.gate.closed() {
                // The stand-in was handed over. Never report end of stream (hyper would
                // abort the answer in flight); read and discard what the client still
                // sends, so that closing does not reset the connection under the answer.
                let mut scratch = [0u8; 4096];
                let mut rb = ReadBuf::new(&mut scratch);
                match this.inner.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() => continue,
                    _ => return Poll::Pending,
                }
            }
            let waiting = this.gate.holding() || this.gate.before_first_head();
            if waiting {
                if this.deadline.is_none() {
                    *this.deadline = Some(Box::pin(tokio::time::sleep(*this.header_timeout)));
                }
                if let Some(d) = this.deadline.as_mut()
                    && d.as_mut().poll(cx).is_ready()
                {
                    *this.deadline = None;
                    if this.gate.holding() {
                        this.gate.time_out();
                        continue;
                    }
                    // Nothing at all arrived: close quietly, as for an idle connection.
                    return Poll::Ready(Ok(()));
                }
            } else {
                *this.deadline = None;
            }
            let before = buf.filled().len();
            match this.inner.as_mut().poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let Some(new) = buf.filled().get(before..) else {
                return Poll::Ready(Ok(()));
            };
            if new.is_empty() {
                // End of stream: a held partial head is dropped, as hyper would.
                return Poll::Ready(Ok(()));
            }
            let pass = this.gate.feed(new);
            buf.set_filled(before + pass);
            if pass > 0 {
                return Poll::Ready(Ok(()));
            }
            // Everything read is held or replaced: loop to hand over the replacement, or
            // to read again (which registers the waker when nothing is there).
        }
    }
}

use std::future::Future as _;

impl<S: AsyncWrite> AsyncWrite for Sniff<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, b);
        stall_guard(
            r,
            *this.write_stall,
            this.write_deadline,
            this.stalled.as_ref(),
            cx,
        )
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let r = this.inner.poll_flush(cx);
        stall_guard(
            r,
            *this.write_stall,
            this.write_deadline,
            this.stalled.as_ref(),
            cx,
        )
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        stall_guard(
            r,
            *this.write_stall,
            this.write_deadline,
            this.stalled.as_ref(),
            cx,
        )
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Runs `data` through a gate in reads of `step` bytes and returns what hyper would
/// read and the flags (for tests and the fuzz target).
pub fn simulate(data: &[u8], step: usize, limits: Limits) -> (Vec<u8>, Vec<Flag>) {
    let flags = Flags::default();
    let mut gate = Gate::new(flags.clone(), limits);
    let mut seen = Vec::new();
    for piece in data.chunks(step.max(1)) {
        while gate.has_out() {
            seen.extend_from_slice(gate.take_out(usize::MAX));
        }
        let n = gate.feed(piece);
        seen.extend_from_slice(piece.get(..n).unwrap_or(&[]));
        while gate.has_out() {
            seen.extend_from_slice(gate.take_out(usize::MAX));
        }
    }
    let q = flags
        .0
        .lock()
        .map(|q| q.q.iter().copied().collect())
        .unwrap_or_default();
    (seen, q)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<Flag>) {
        let flags = Flags::default();
        let mut gate = Gate::new(flags.clone(), Limits::default());
        let mut seen = Vec::new();
        for c in chunks {
            let n = gate.feed(c);
            seen.extend_from_slice(&c[..n]);
            while gate.has_out() {
                seen.extend_from_slice(gate.take_out(7));
            }
        }
        let q = flags.0.lock().unwrap().q.iter().copied().collect();
        (seen, q)
    }

    fn fragments(chunks: &[&[u8]]) -> Vec<bool> {
        run(chunks).1.iter().map(|f| f.had_fragment).collect()
    }

    const STREAM: &[u8] = b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\n\r\nGET /fake#x HTTP/1.1\r\n\r\n.....\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n18\r\nGET /fake#y HTTP/1.1\r\n\r\n\r\n0\r\nX-T: 1\r\n\r\n\
GET /d?q=#z HTTP/1.1\r\nHost: x\r\n\r\nGET /e HTTP/1.1\nHost: x\n\n";

    #[test]
    fn follows_bodies_and_flags_each_request() {
        assert_eq!(fragments(&[STREAM]), vec![true, false, false, true, false]);
        // Good heads pass byte for byte.
        assert_eq!(run(&[STREAM]).0, STREAM);
    }

    #[test]
    fn trickled_request_is_still_framed() {
        let req: &[u8] = b"POST /a#x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        let chunks: Vec<&[u8]> = req.chunks(1).collect();
        assert_eq!(fragments(&chunks), vec![true]);
        assert_eq!(run(&chunks).0, req);
        let pri: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let chunks: Vec<&[u8]> = pri.chunks(1).collect();
        let (seen, flags) = run(&chunks);
        assert!(flags.is_empty());
        assert_eq!(seen, pri);
    }

    #[test]
    fn the_preface_counts_only_at_the_start_of_the_stream() {
        // Found by the fuzzer: a preface after empty lines is a (malformed) HTTP/1 head,
        // however the bytes are split.
        let data = b"\n\rPRI \r\n\r\n";
        let whole = simulate(data, data.len(), Limits::default());
        let split = simulate(data, 1, Limits::default());
        assert_eq!(whole, split);
        assert_eq!(
            whole.1.first().and_then(|f| f.refused),
            Some(Malformed::Request)
        );
        // The method `PRI` without the whole preface does not switch the gate off.
        assert_eq!(
            fragments(&[b"PRI /a#x HTTP/1.1\r\nHost: x\r\n\r\n"]),
            vec![true]
        );
        assert_eq!(
            refusal(b"PRI / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Some(Malformed::TransferCoding)
        );
    }

    #[test]
    fn stops_for_http2() {
        assert!(fragments(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).is_empty());
        // No head is awaited on an HTTP/2 connection: the header deadline must not
        // end it.
        let mut gate = Gate::new(Flags::default(), Limits::default());
        assert!(gate.before_first_head());
        assert_eq!(gate.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 24);
        assert!(!gate.before_first_head() && !gate.holding());
    }

    fn refusal(head: &[u8]) -> Option<Malformed> {
        let (seen, flags) = run(&[head]);
        let r = flags.first().and_then(|f| f.refused);
        if r.is_some() {
            assert_eq!(seen, STAND_IN, "{}", String::from_utf8_lossy(head));
        } else {
            assert_eq!(seen, head);
        }
        r
    }

    #[test]
    fn refuses_what_hyper_would_answer_bare() {
        use Malformed::*;
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            (0..101)
                .map(|i| format!("x-h{i}: v\r\n"))
                .collect::<String>()
        );
        let cases: &[(&[u8], Option<Malformed>)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None),
            (b"GET / HTTP/1.1\r\nA: 1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", None),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", None),
            (b"GET / HTTP/1.1 x\r\n\r\n", Some(Request)),
            (b"G@T / HTTP/1.1\r\n\r\n", Some(Request)),
            (b"GET / HTTP/9.9\r\n\r\n", Some(Request)),
            (b"GET /a b HTTP/1.1\r\n\r\n", Some(Request)),
            (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", Some(Request)),
            (many.as_bytes(), Some(TooManyHeaders)),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Some(Framing)),
            (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", Some(Framing)),
            (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", Some(Framing)),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Some(Framing)),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Some(Framing)),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Some(Framing)),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Some(Framing)),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Some(TransferCoding)),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", Some(TransferCoding)),
        ];
        for (head, want) in cases {
            assert_eq!(refusal(head), *want, "{}", String::from_utf8_lossy(head));
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        assert_eq!(refusal(long.as_bytes()), Some(UriTooLong));
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(30_000));
        assert_eq!(refusal(big.as_bytes()), Some(HeadTooLarge));
    }

    #[test]
    fn a_refusal_ends_the_stream_and_drops_what_follows() {
        let (seen, flags) = run(&[
            b"GET /a HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
            b"GET /after HTTP/1.1\r\n\r\n",
        ]);
        let mut want = b"GET /a HTTP/1.1\r\n\r\n".to_vec();
        want.extend_from_slice(STAND_IN);
        assert_eq!(seen, want);
        assert_eq!(flags.len(), 2);
        assert_eq!(flags[1].refused, Some(Malformed::TransferCoding));
    }

    #[test]
    fn a_held_head_times_out_into_a_408() {
        let flags = Flags::default();
        let mut gate = Gate::new(flags.clone(), Limits::default());
        assert_eq!(gate.feed(b"GET / HTTP/1.1\r\nHost"), 0);
        assert!(gate.holding());
        gate.time_out();
        assert_eq!(gate.take_out(usize::MAX), STAND_IN);
        assert_eq!(flags.next().refused, Some(Malformed::HeadTimeout));
        assert_eq!(gate.feed(b": x\r\n\r\n"), 0);
        assert!(!gate.has_out());
    }

    #[test]
    fn trickled_oversized_head_is_refused_without_quadratic_rescans() {
        let flags = Flags::default();
        let mut gate = Gate::new(flags.clone(), Limits::default());
        gate.feed(b"GET / HTTP/1.1\r\nx: ");
        let mut n = 0;
        while !gate.closed() && n < 100_000 {
            gate.feed(b"a");
            n += 1;
        }
        assert!(gate.closed());
        assert_eq!(flags.next().refused, Some(Malformed::HeadTooLarge));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_bytes_and_flags(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..12)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts {
                chunks.push(&STREAM[last..c]);
                last = c;
            }
            chunks.push(&STREAM[last..]);
            let (seen, flags) = run(&chunks);
            prop_assert_eq!(seen, STREAM.to_vec());
            prop_assert_eq!(flags.iter().map(|f| f.had_fragment).collect::<Vec<_>>(), vec![true, false, false, true, false]);
        }

        #[test]
        fn never_panics_and_splits_agree(data in proptest::collection::vec(any::<u8>(), 0..2048), step in 1usize..64) {
            // A held head is judged again only when a line feed arrives: end the stream
            // with one so that whole and split reads are judged on the same bytes.
            let mut data = data;
            data.extend_from_slice(b"\r\n\r\n");
            let whole = simulate(&data, data.len().max(1), Limits::default());
            let split = simulate(&data, step, Limits::default());
            prop_assert_eq!(whole, split);
        }
    }
}
