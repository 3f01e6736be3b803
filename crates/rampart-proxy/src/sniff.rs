//! Reads each HTTP/1 request target as it arrives on the wire, before hyper parses it,
//! to see what `http::Uri` hides: a `#fragment` (the `http` crate drops it silently, so
//! without this `GET /a#b` would be served as `/a`).
//!
//! Our own framing rather than a library's because no HTTP library exposes the raw
//! target: this module follows request boundaries (head, then a `Content-Length` or
//! chunked body) just far enough to find the next request line, using `httparse` (the
//! parser hyper itself uses) for the head. It never changes a byte; it records one flag
//! per request in the order requests arrive, which is the order hyper hands them to the
//! service on an HTTP/1 connection. Anything it cannot follow (HTTP/2, upgrades, a head it
//! cannot parse) stops the sniffing; hyper refuses a malformed head and closes the
//! connection anyway. Bounded: the head buffer is capped and the flag queue too.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per-request flags, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Flags(Arc<Mutex<FlagQueue>>);

#[derive(Debug, Default)]
struct FlagQueue {
    q: VecDeque<bool>,
    /// The framing was lost or the queue overflowed: from here on every request is
    /// treated as carrying a fragment (fail closed).
    poisoned: bool,
    /// Sniffing stopped on purpose (HTTP/2 or an upgrade): no flags follow.
    stopped: bool,
}

const MAX_QUEUED: usize = 1024;
const MAX_HEAD: usize = 1 << 20;

impl Flags {
    /// The flag of the next request (false when sniffing stopped for HTTP/2).
    pub fn next_had_fragment(&self) -> bool {
        let Ok(mut f) = self.0.lock() else {
            return true;
        };
        match f.q.pop_front() {
            Some(b) => b,
            None => f.poisoned,
        }
    }

    fn push(&self, had_fragment: bool) {
        if let Ok(mut f) = self.0.lock() {
            if f.q.len() >= MAX_QUEUED {
                f.poisoned = true;
            } else {
                f.q.push_back(had_fragment);
            }
        }
    }

    fn poison(&self) {
        if let Ok(mut f) = self.0.lock() {
            f.poisoned = true;
        }
    }

    fn stop(&self) {
        if let Ok(mut f) = self.0.lock() {
            f.stopped = true;
        }
    }
}

#[derive(Debug)]
enum State {
    /// Accumulating a request head.
    Head(Vec<u8>),
    /// Skipping a fixed-length body.
    Body(u64),
    /// Chunked body: reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Chunked body: skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// Chunked body: trailer section, current line so far.
    Trailers(Vec<u8>),
    /// Not following the stream any more.
    Off,
}

/// Follows request boundaries in a byte stream.
#[derive(Debug)]
pub struct Framer {
    state: State,
    flags: Flags,
    /// Bytes of `PRI ` matched so far at the start of the stream; `None` once it is
    /// known not to be HTTP/2.
    preface_matched: Option<usize>,
}

const PRI: &[u8; 4] = b"PRI ";

impl Framer {
    pub fn new(flags: Flags) -> Self {
        Self {
            state: State::Head(Vec::new()),
            flags,
            preface_matched: Some(0),
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        // The HTTP/2 preface is recognised only once 4 bytes match `PRI `, however the
        // bytes are split across reads: a client trickling `P`, `OST …` is still framed.
        if let Some(n) = self.preface_matched {
            for b in data.iter().take(PRI.len() - n) {
                match self.preface_matched {
                    Some(k) if PRI.get(k) == Some(b) => self.preface_matched = Some(k + 1),
                    _ => {
                        self.preface_matched = None;
                        break;
                    }
                }
            }
            if self.preface_matched == Some(PRI.len()) {
                self.flags.stop();
                self.state = State::Off;
                return;
            }
        }
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Head(buf) => {
                    if buf.is_empty() {
                        // Empty lines before a request line are tolerated (RFC 9112 §2.2).
                        let skip = data
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        data = data.get(skip..).unwrap_or(&[]);
                        if data.is_empty() {
                            return;
                        }
                    }
                    if buf.is_empty() {
                        // Usually the whole head is in this read: parse it in place, no
                        // copy, and let the parser say where it ends.
                        match self.on_head(data) {
                            Some(Some(end)) => {
                                data = data.get(end..).unwrap_or(&[]);
                                continue;
                            }
                            Some(None) => {} // partial: gather it below
                            None => return,  // malformed: sniffing stopped
                        }
                    }
                    let State::Head(buf) = &mut self.state else {
                        continue;
                    };
                    match data.iter().position(|b| *b == b'\n') {
                        None => {
                            buf.extend_from_slice(data);
                            data = &[];
                        }
                        Some(i) => {
                            buf.extend_from_slice(data.get(..=i).unwrap_or(&[]));
                            data = data.get(i + 1..).unwrap_or(&[]);
                            if buf.ends_with(b"\n\n") || buf.ends_with(b"\n\r\n") {
                                let head = std::mem::take(buf);
                                if self.on_head(&head) == Some(None) {
                                    // The parser disagrees about where the head ends:
                                    // stop trusting our framing.
                                    self.lost();
                                    return;
                                }
                                continue;
                            }
                        }
                    }
                    if buf.len() > MAX_HEAD {
                        self.lost();
                        return;
                    }
                }
                State::Body(n) => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(data.len());
                    *n -= k as u64;
                    data = data.get(k..).unwrap_or(&[]);
                    if *n == 0 {
                        self.state = State::Head(Vec::new());
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
                            self.state = State::Head(Vec::new());
                        } else {
                            line.clear();
                        }
                    }
                },
            }
        }
    }

    fn lost(&mut self) {
        self.flags.poison();
        self.state = State::Off;
    }

    /// Parses the head at the start of `head` and moves to the state after it.
    /// `Some(Some(len))`: parsed, `len` bytes long; `Some(None)`: incomplete, nothing
    /// changed; `None`: malformed, sniffing stopped (hyper refuses the head and closes the
    /// connection).
    fn on_head(&mut self, head: &[u8]) -> Option<Option<usize>> {
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(head, &mut headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Some(None),
            Err(_) => {
                self.state = State::Off;
                return None;
            }
        };
        let had_fragment = req.path.is_some_and(|p| p.contains('#'));
        self.flags.push(had_fragment);
        if req.method == Some("CONNECT") {
            self.state = State::Off;
            return Some(Some(len));
        }
        let mut chunked = false;
        let mut length: Option<u64> = None;
        let mut upgrade = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = String::from_utf8_lossy(h.value)
                    .rsplit(',')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        self.state = if upgrade {
            State::Off
        } else if chunked {
            State::ChunkSize(Vec::new())
        } else {
            match length {
                Some(n) if n > 0 => State::Body(n),
                _ => State::Head(Vec::new()),
            }
        };
        Some(Some(len))
    }
}

pin_project_lite::pin_project! {
    /// An IO stream that shows every byte it reads to a [`Framer`].
    pub struct Sniff<S> {
        #[pin]
        inner: S,
        framer: Framer,
    }
}

impl<S> Sniff<S> {
    pub fn new(inner: S, flags: Flags) -> Self {
        Self {
            inner,
            framer: Framer::new(flags),
        }
    }
}

impl<S: AsyncRead> AsyncRead for Sniff<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r
            && let Some(new) = buf.filled().get(before..)
        {
            this.framer.feed(new);
        }
        r
    }
}

impl<S: AsyncWrite> AsyncWrite for Sniff<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flags_for(chunks: &[&[u8]]) -> Vec<bool> {
        let flags = Flags::default();
        let mut f = Framer::new(flags.clone());
        for c in chunks {
            f.feed(c);
        }
        let q = flags.0.lock().unwrap();
        q.q.iter().copied().collect()
    }

    const STREAM: &[u8] = b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\n\r\nGET /fake#x HTTP/1.1\r\n\r\n.....\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n18\r\nGET /fake#y HTTP/1.1\r\n\r\n\r\n0\r\nX-T: 1\r\n\r\n\
GET /d?q=#z HTTP/1.1\r\nHost: x\r\n\r\nGET /e HTTP/1.1\nHost: x\n\n";

    #[test]
    fn follows_bodies_and_flags_each_request() {
        assert_eq!(flags_for(&[STREAM]), vec![true, false, false, true, false]);
    }

    #[test]
    fn trickled_request_is_still_framed() {
        let req: &[u8] = b"POST /a#x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        let chunks: Vec<&[u8]> = req.chunks(1).collect();
        assert_eq!(flags_for(&chunks), vec![true]);
        let pri: Vec<&[u8]> = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".chunks(1).collect();
        assert!(flags_for(&pri).is_empty());
    }

    #[test]
    fn stops_for_http2() {
        assert!(flags_for(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).is_empty());
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_flags(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..12)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts {
                chunks.push(&STREAM[last..c]);
                last = c;
            }
            chunks.push(&STREAM[last..]);
            prop_assert_eq!(flags_for(&chunks), vec![true, false, false, true, false]);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = flags_for(&[&data]);
        }
    }
}
