//! HTTP/1.1 message framing for the upstream side (RFC 9112): the request head rampart
//! writes, the response head it reads (parsed by `httparse`), the rules that decide how a
//! response body is delimited (§6.3), and a chunked-transfer decoder (§7.1).
//!
//! Why our own and not hyper's client: hyper's HTTP/1 client runs every connection as a
//! separate task and hands each request, response and body chunk across channels to it;
//! on loopback that machinery cost about a fifth of the gateway's CPU per request (see
//! `bench/README.md`). The forwarding stage here drives the upstream connection inside the
//! request's own task. Header parsing stays with `httparse`; what is written here is
//! only framing, and every function is pure so that it can be property-tested and fuzzed
//! (`fuzz/fuzz_targets/upstream_response.rs`).
//!
//! Guards against: response smuggling (both `Transfer-Encoding` and `Content-Length`,
//! conflicting lengths, a transfer coding that does not end in `chunked`: the length is
//! never guessed and the connection is never reused), oversized heads, chunk-size lines
//! and trailer sections (hard caps), chunk sizes that overflow, bare-LF line endings in
//! chunk framing. Trusts: nothing in the bytes it is given.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Largest response head accepted from an upstream.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most header fields accepted in one response head.
pub const MAX_RESPONSE_HEADERS: usize = 128;
/// Longest chunk-size line (size plus extensions).
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section (discarded, but bounded).
pub const MAX_TRAILERS: usize = 16 * 1024;

/// Why an upstream's bytes could not be understood. The connection is closed after any
/// of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqFraming {
    /// No body and no framing header (a GET, say).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Methods whose requests carry a body by convention: an empty one is announced with
/// `Content-Length: 0` (RFC 9110 §8.6).
fn expects_body(m: &Method) -> bool {
    *m == Method::POST || *m == Method::PUT || *m == Method::PATCH
}

/// Writes the request head into `out`. `headers` must already be free of hop-by-hop
/// fields; fields for which `skip` says yes are left out (the caller must skip `Host`,
/// `Content-Length` and `Transfer-Encoding`, which this function writes itself), then
/// `extra` is appended. `target_prefix` + `target` form the request target.
#[allow(clippy::too_many_arguments)]
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target_prefix: &str,
    target: &str,
    host: &str,
    headers: &HeaderMap,
    skip: &dyn Fn(&HeaderName) -> bool,
    extra: &[(&HeaderName, Option<&HeaderValue>)],
    framing: ReqFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target_prefix.as_bytes());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    let fields = headers
        .iter()
        .filter(|(n, _)| !skip(n))
        .chain(extra.iter().filter_map(|(n, v)| Some((*n, (*v)?))));
    for (name, value) in fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        ReqFraming::None if expects_body(method) => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        ReqFraming::None => {}
        ReqFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            let mut b = itoa::Buffer::new();
            out.extend_from_slice(b.format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ReqFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk of a chunked body.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return; // a zero-size chunk would end the body
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    while n > 0 && i > 0 {
        i -= 1;
        let d = (n & 0xf) as u8;
        if let Some(slot) = hex.get_mut(i) {
            *slot = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        }
        n >>= 4;
    }
    out.extend_from_slice(hex.get(i..).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespFraming {
    /// No body whatever the headers say (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: RespFraming,
    /// The connection may carry another request after this response's body.
    pub reusable: bool,
}

/// Parses one response head at the start of `buf` and, if it is complete, removes it
/// from `buf` (what follows, the start of the body, stays). `Ok(None)`: need more bytes.
/// Informational (1xx) heads are returned like any other; the caller skips them.
///
/// Field values are slices of the head's buffer, not copies.
pub fn parse_response_head(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<ResponseHead>, FrameError> {
    // Where each field lies in `buf`: (name start, name end, value start, value end).
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_RESPONSE_HEADERS];
    let mut fields = 0;
    let mut summary = FramingFields::default();
    let (len, code, version) = {
        let bytes: &[u8] = buf;
        let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() };
            MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, bytes, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if bytes.len() >= MAX_RESPONSE_HEAD {
                    Err(FrameError::HeadTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(FrameError::Head("too many headers"));
            }
            Err(_) => return Err(FrameError::Head("syntax")),
        };
        if len > MAX_RESPONSE_HEAD {
            return Err(FrameError::HeadTooLarge);
        }
        let base = bytes.as_ptr() as usize;
        let span = |part: &[u8]| -> (u32, u32) {
            let start = (part.as_ptr() as usize).saturating_sub(base);
            (
                u32::try_from(start).unwrap_or(u32::MAX),
                u32::try_from(start + part.len()).unwrap_or(u32::MAX),
            )
        };
        for (slot, h) in spans.iter_mut().zip(resp.headers.iter()) {
            summary.observe(h.name.as_bytes(), h.value)?;
            let (ns, ne) = span(h.name.as_bytes());
            let (vs, ve) = span(h.value);
            *slot = (ns, ne, vs, ve);
            fields += 1;
        }
        (len, resp.code, resp.version)
    };
    let code = code.ok_or(FrameError::Head("status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| FrameError::Head("status"))?;
    let version = match version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(FrameError::Head("version")),
    };
    let head = buf.split_to(len).freeze();
    // Room for the security headers added on the way out, so they do not force a rehash.
    let mut headers = HeaderMap::with_capacity(fields + 12);
    for &(ns, ne, vs, ve) in spans.get(..fields).unwrap_or_default() {
        let range = |s: u32, e: u32| (s as usize)..(e as usize);
        let name = head
            .get(range(ns, ne))
            .and_then(|n| HeaderName::from_bytes(n).ok())
            .ok_or(FrameError::Head("name"))?;
        if head.get(range(vs, ve)).is_none() {
            return Err(FrameError::Head("value"));
        }
        let value = HeaderValue::from_maybe_shared(head.slice(range(vs, ve)))
            .map_err(|_| FrameError::Head("value"))?;
        headers.append(name, value);
    }
    let (framing, mut reusable) = response_framing(request_method, status, &summary)?;
    reusable &= version == Version::HTTP_11 && !summary.connection_close;
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        reusable,
    }))
}

/// What the framing rules need from a head's fields, gathered in one pass over them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FramingFields {
    /// Some `Transfer-Encoding` field was present.
    pub transfer_encoding: bool,
    /// The last transfer coding listed (over all fields) is `chunked`.
    pub last_coding_chunked: bool,
    /// The one length every `Content-Length` value agrees on.
    pub content_length: Option<u64>,
    /// Some `Connection` field lists `close`.
    pub connection_close: bool,
}

impl FramingFields {
    /// Takes one field into account. Conflicting or malformed lengths are an error.
    pub fn observe(&mut self, name: &[u8], value: &[u8]) -> Result<(), FrameError> {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            if let Some(last) = value
                .rsplit(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .find(|t| !t.is_empty())
            {
                self.last_coding_chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let n = parse_decimal(part.trim_ascii()).ok_or(FrameError::ContentLength)?;
                match self.content_length {
                    Some(prev) if prev != n => return Err(FrameError::ContentLength),
                    _ => self.content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection")
            && value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            self.connection_close = true;
        }
        Ok(())
    }
}

/// RFC 9112 §6.3, returning the framing and whether it leaves the connection reusable.
pub fn response_framing(
    request_method: &Method,
    status: StatusCode,
    f: &FramingFields,
) -> Result<(RespFraming, bool), FrameError> {
    if *request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((RespFraming::Empty, true));
    }
    if f.transfer_encoding {
        // The final coding decides; anything but chunked is delimited by close. With
        // Content-Length as well, the message may be an attempt at smuggling:
        // Transfer-Encoding wins and the connection is not reused (§6.3 item 3).
        return Ok(if f.last_coding_chunked {
            (RespFraming::Chunked, f.content_length.is_none())
        } else {
            (RespFraming::Close, false)
        });
    }
    Ok(match f.content_length {
        Some(n) => (RespFraming::Length(n), true),
        None => (RespFraming::Close, false),
    })
}

/// `1*DIGIT` without sign, whitespace or overflow.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// One step of the chunked decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Data(Bytes),
    /// The buffer holds no complete next element; read more.
    NeedMore,
    /// Last chunk and trailer section consumed.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Incremental decoder for `Transfer-Encoding: chunked`. It consumes from the front of
/// the buffer it is given and leaves everything after the body in place.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self { state: State::Size }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, FrameError> {
        loop {
            match self.state {
                State::Done => return Ok(Chunk::Done),
                State::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Chunk::NeedMore);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(rem) => {
                    if buf.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let n = usize::try_from(rem).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = rem - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Chunk::Data(data));
                }
                State::DataEnd => {
                    match buf.get(..2) {
                        None if buf.first().is_none_or(|&c| c == b'\r') => {
                            return Ok(Chunk::NeedMore);
                        }
                        Some(b"\r\n") => buf.advance(2),
                        _ => return Err(FrameError::Chunked("chunk data not followed by CRLF")),
                    }
                    self.state = State::Size;
                }
                State::Trailers(total) => {
                    let Some(line) = take_line(buf, MAX_TRAILERS.saturating_sub(total))? else {
                        if total.saturating_add(buf.len()) > MAX_TRAILERS {
                            return Err(FrameError::Chunked("trailer section too large"));
                        }
                        return Ok(Chunk::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                    } else {
                        let total = total.saturating_add(line.len() + 2);
                        if total > MAX_TRAILERS {
                            return Err(FrameError::Chunked("trailer section too large"));
                        }
                        self.state = State::Trailers(total);
                    }
                }
            }
        }
    }
}

/// Removes one CRLF-terminated line from the front of `buf` and returns it without the
/// CRLF. A bare LF is an error; so is a line longer than `max` without its end.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, FrameError> {
    let window = buf
        .get(..buf.len().min(max.saturating_add(2)))
        .unwrap_or_default();
    match window.iter().position(|&c| c == b'\n') {
        Some(i) => {
            if i == 0 || window.get(i - 1) != Some(&b'\r') {
                return Err(FrameError::Chunked("line not terminated by CRLF"));
            }
            let mut line = buf.split_to(i + 1);
            line.truncate(i - 1);
            Ok(Some(line))
        }
        None if buf.len() > max.saturating_add(1) => Err(FrameError::Chunked("line too long")),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: 1 to 16 hex digits, then optionally whitespace and
/// `;`-introduced extensions (ignored, but free of control characters).
fn parse_chunk_size(line: &[u8]) -> Result<u64, FrameError> {
    let digits = line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(FrameError::Chunked("missing chunk size"));
    }
    if digits > 16 {
        return Err(FrameError::Chunked("chunk size overflows"));
    }
    let mut n: u64 = 0;
    for &c in line.get(..digits).unwrap_or_default() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(FrameError::Chunked("missing chunk size")),
        };
        n = n
            .checked_mul(16)
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or(FrameError::Chunked("chunk size overflows"))?;
    }
    let rest = line.get(digits..).unwrap_or_default();
    let ext = rest.iter().position(|&c| c != b' ' && c != b'\t');
    match ext.and_then(|i| rest.get(i..)) {
        None => Ok(n),
        Some([b';', tail @ ..]) => {
            if tail.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7f) {
                Err(FrameError::Chunked("control character in chunk extension"))
            } else {
                Ok(n)
            }
        }
        Some(_) => Err(FrameError::Chunked("garbage after chunk size")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(bytes: &str, m: &Method) -> Result<Option<(ResponseHead, usize)>, FrameError> {
        let mut buf = BytesMut::from(bytes.as_bytes());
        let before = buf.len();
        Ok(parse_response_head(&mut buf, m)?.map(|h| (h, before - buf.len())))
    }

    fn encode(m: &Method, h: &HeaderMap, framing: ReqFraming) -> String {
        let mut out = Vec::new();
        encode_request_head(&mut out, m, "", "/", "h", h, &|_| false, &[], framing);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_head_is_canonical() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        h.append("accept", HeaderValue::from_static("a"));
        h.append("accept", HeaderValue::from_static("b"));
        h.insert("x-forwarded-for", HeaderValue::from_static("spoofed"));
        let xff = HeaderName::from_static("x-forwarded-for");
        let ours = HeaderValue::from_static("10.0.0.1");
        let none = HeaderName::from_static("x-unset");
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::GET,
            "/base",
            "/x?q=1",
            "up:80",
            &h,
            &|n| *n == xff,
            &[(&xff, Some(&ours)), (&none, None)],
            ReqFraming::None,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /base/x?q=1 HTTP/1.1\r\nhost: up:80\r\nx-request-id: abc\r\naccept: a\r\naccept: b\r\nx-forwarded-for: 10.0.0.1\r\n\r\n"
        );
        let e = HeaderMap::new();
        assert!(encode(&Method::POST, &e, ReqFraming::None).contains("content-length: 0\r\n"));
        assert!(!encode(&Method::GET, &e, ReqFraming::None).contains("content-length"));
        assert!(
            encode(&Method::PUT, &e, ReqFraming::Length(1234)).contains("content-length: 1234\r\n")
        );
        assert!(
            encode(&Method::PUT, &e, ReqFraming::Chunked)
                .contains("transfer-encoding: chunked\r\n")
        );
    }

    #[test]
    fn chunk_encoding() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, &[b'x'; 255]);
        encode_chunk(&mut out, b"");
        assert!(out.starts_with(b"5\r\nhello\r\nff\r\n"));
        assert_eq!(out.len(), 3 + 5 + 2 + 4 + 255 + 2);
    }

    #[test]
    fn framing_rules() {
        let get = Method::GET;
        let l = |s: &str| head(s, &get).unwrap().unwrap().0;
        let r = l("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (RespFraming::Length(5), true));
        let r = l("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.framing, RespFraming::Length(5));
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n", &get).unwrap_err(),
            FrameError::ContentLength
        );
        for bad in ["+5", "-1", "0x5", "5 5", "", "99999999999999999999"] {
            let s = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
            assert!(head(&s, &get).is_err(), "{bad}");
        }
        let r = l("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (RespFraming::Chunked, true));
        let r = l("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (RespFraming::Chunked, false));
        let r = l("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (RespFraming::Close, false));
        let r = l("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (RespFraming::Close, false));
        let r = l("HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (RespFraming::Empty, true));
        let r = l("HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(r.framing, RespFraming::Empty);
        let r = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            &Method::HEAD,
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(r.framing, RespFraming::Empty);
        let r = l("HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive, Close\r\n\r\n");
        assert!(!r.reusable);
        let r = l("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n");
        assert!(!r.reusable);
        let r = l("HTTP/1.1 100 Continue\r\n\r\n");
        assert!(r.status.is_informational());
    }

    #[test]
    fn heads_partial_and_malformed() {
        let get = Method::GET;
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-le", &get)
                .unwrap()
                .is_none()
        );
        assert!(head("HTTP/2 200 OK\r\n\r\n", &get).is_err());
        assert!(head("HTTP/1.1 20 OK\r\n\r\n", &get).is_err());
        assert!(head("HTTP/1.1 200 OK\r\nbad header\r\n\r\n", &get).is_err());
        let many: String = (0..MAX_RESPONSE_HEADERS + 1)
            .map(|i| format!("h{i}: v\r\n"))
            .collect();
        assert_eq!(
            head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), &get).unwrap_err(),
            FrameError::Head("too many headers")
        );
        let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_RESPONSE_HEAD));
        assert_eq!(head(&big, &get).unwrap_err(), FrameError::HeadTooLarge);
    }

    fn decode_all(input: &[u8], splits: &[usize]) -> Result<(Vec<u8>, Vec<u8>), FrameError> {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let mut cuts: Vec<usize> = splits.iter().map(|s| s % (input.len() + 1)).collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        for cut in cuts {
            if cut > fed {
                buf.extend_from_slice(&input[fed..cut]);
                fed = cut;
            }
            loop {
                match dec.decode(&mut buf)? {
                    Chunk::Data(d) => out.extend_from_slice(&d),
                    Chunk::NeedMore => break,
                    Chunk::Done => {
                        let mut rest = buf.to_vec();
                        rest.extend_from_slice(&input[fed..]);
                        return Ok((out, rest));
                    }
                }
            }
        }
        Err(FrameError::Chunked("incomplete"))
    }

    #[test]
    fn chunked_examples() {
        let (body, rest) = decode_all(
            b"5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nx-t: 1\r\n\r\nNEXT",
            &[],
        )
        .unwrap();
        assert_eq!(body, b"hello0123456789");
        assert_eq!(rest, b"NEXT");
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"g\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\x01\r\nhello\r\n0\r\n\r\n",
            b"0\r\nt: 1\n\r\n",
        ] {
            assert!(
                decode_all(bad, &[]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE + 10));
        assert_eq!(
            decode_all(long.as_bytes(), &[]).unwrap_err(),
            FrameError::Chunked("line too long")
        );
        let trailers = format!("0\r\n{}", "t: v\r\n".repeat(MAX_TRAILERS / 6 + 2));
        assert!(decode_all(trailers.as_bytes(), &[]).is_err());
    }

    proptest! {
        #[test]
        fn chunked_round_trip(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
            ext in proptest::option::of("[a-z=;\" ]{0,20}"),
            trailer in proptest::option::of("[a-z]{1,8}: [a-z0-9 ]{0,10}"),
            splits in proptest::collection::vec(any::<usize>(), 0..12),
            tail in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut wire = Vec::new();
            for c in &chunks {
                if let Some(e) = &ext {
                    wire.extend_from_slice(format!("{:X};{e}\r\n", c.len()).as_bytes());
                    wire.extend_from_slice(c);
                    wire.extend_from_slice(b"\r\n");
                } else {
                    encode_chunk(&mut wire, c);
                }
            }
            wire.extend_from_slice(b"0\r\n");
            if let Some(t) = &trailer {
                wire.extend_from_slice(t.as_bytes());
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&tail);
            let (body, rest) = decode_all(&wire, &splits).unwrap();
            prop_assert_eq!(body, chunks.concat());
            prop_assert_eq!(rest, tail);
        }

        #[test]
        fn chunked_never_panics(input in proptest::collection::vec(any::<u8>(), 0..400),
                                splits in proptest::collection::vec(any::<usize>(), 0..8)) {
            let _ = decode_all(&input, &splits);
        }

        #[test]
        fn head_parse_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut buf = BytesMut::from(&input[..]);
            let before = buf.len();
            if let Ok(None) | Err(_) = parse_response_head(&mut buf, &Method::GET) {
                prop_assert_eq!(buf.len(), before, "nothing consumed unless complete");
            }
        }

        #[test]
        fn length_framing_matches_decimal(n in any::<u64>()) {
            let s = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
            let (h, len) = head(&s, &Method::GET).unwrap().unwrap();
            prop_assert_eq!(h.framing, RespFraming::Length(n));
            prop_assert_eq!(len, s.len());
        }
    }
}
