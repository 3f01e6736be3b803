//! The HTTP/1 head gate: never panics, and hands hyper the same bytes and the same
//! per-request flags however the byte stream is split across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_proxy::sniff::{Limits, simulate};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // A held head is judged again only when a line feed arrives: end the stream with one
    // so that whole and split reads are judged on the same bytes.
    let mut rest = rest.to_vec();
    rest.extend_from_slice(b"\r\n\r\n");
    let limits = Limits::default();
    let whole = simulate(&rest, rest.len(), limits);
    let split = simulate(&rest, usize::from(sel % 13) + 1, limits);
    assert_eq!(whole, split, "split reads changed what hyper reads");
});
