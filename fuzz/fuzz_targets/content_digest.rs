//! `Content-Digest` and the streamed checker: no panic; a parsed field names only
//! supported algorithms with digests of the right length; the verdict is the same however
//! the body is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_sig::DigestChecker;
use rampart_sig::digest::{self, DigestAlg};

fuzz_target!(|data: &[u8]| {
    // Input: split byte, then the field value and the body separated by 0xff.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(2, |&b| b == 0xff);
    let field = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    if let Ok(digests) = digest::parse_content_digest(field) {
        assert!(!digests.is_empty());
        for (alg, d) in &digests {
            let len = match alg {
                DigestAlg::Sha256 => 32,
                DigestAlg::Sha512 => 64,
            };
            assert_eq!(d.len(), len);
        }
    }
    let (Ok(mut whole), Ok(mut pieces)) = (
        DigestChecker::from_header(field),
        DigestChecker::from_header(field),
    ) else {
        return;
    };
    whole.update(body);
    let at = usize::from(split).min(body.len());
    let (a, b) = body.split_at(at);
    pieces.update(a);
    pieces.update(b);
    assert_eq!(whole.finish(), pieces.finish());
});
