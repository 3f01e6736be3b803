//! What an upstream sends back: the response-head parser and the chunked decoder never
//! panic, only consume a head when it is complete, and the decoder gives the same body
//! however the bytes are split across reads.
#![no_main]

use bytes::BytesMut;
use http::Method;
use libfuzzer_sys::fuzz_target;
use rampart_proxy::h1::{Chunk, ChunkedDecoder, parse_response_head};

/// Decodes `input` fed in pieces of `step` bytes; the body, or `None` on an error or
/// an incomplete body.
fn decode(input: &[u8], step: usize) -> Option<Vec<u8>> {
    let mut dec = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf).ok()? {
                Chunk::Data(d) => out.extend_from_slice(&d),
                Chunk::NeedMore => break,
                Chunk::Done => return Some(out),
            }
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let method = if sel & 1 == 0 { Method::GET } else { Method::HEAD };
    let mut buf = BytesMut::from(rest);
    match parse_response_head(&mut buf, &method) {
        Ok(Some(_)) => assert!(buf.len() < rest.len(), "a head was consumed"),
        Ok(None) | Err(_) => assert_eq!(buf.len(), rest.len(), "nothing consumed"),
    }
    let whole = decode(rest, rest.len());
    let split = decode(rest, usize::from(sel % 7) + 1);
    if let (Some(a), Some(b)) = (&whole, &split) {
        assert_eq!(a, b, "split reads changed the body");
    }
});
