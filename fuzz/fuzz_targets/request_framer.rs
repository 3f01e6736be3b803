//! The HTTP/1 request framer that flags `#` in request targets: never panics, and gives
//! the same flags however the byte stream is split across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_proxy::sniff::{Flags, Framer};

fn flags(data: &[u8], step: usize) -> Vec<bool> {
    let f = Flags::default();
    let mut framer = Framer::new(f.clone());
    for piece in data.chunks(step.max(1)) {
        framer.feed(piece);
    }
    (0..64).map(|_| f.next_had_fragment()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let whole = flags(rest, rest.len());
    let split = flags(rest, usize::from(sel % 13) + 1);
    assert_eq!(whole, split, "split reads changed the flags");
});
