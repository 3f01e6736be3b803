//! Strict unpadded base64url (RFC 7515 §2, RFC 4648 §5).
//!
//! Strict means one text per byte string: no `=` padding, no characters outside the
//! URL-safe alphabet (no `+`, `/`, whitespace), no length that leaves a lone character,
//! and no non-zero bits left over in the last character. A lenient decoder lets an
//! attacker produce many spellings of one token, which defeats the verified-token cache
//! key and any log correlation on the token text.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Decodes strict unpadded base64url; `None` on any deviation.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let rem = input.len() % 4;
    if rem == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut chunks = input.chunks_exact(4);
    for chunk in &mut chunks {
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | value(c)?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut n = 0u32;
        for &c in tail {
            n = (n << 6) | value(c)?;
        }
        if tail.len() == 2 {
            // 12 bits carry one byte: the low 4 must be zero.
            if n & 0xF != 0 {
                return None;
            }
            out.push((n >> 4) as u8);
        } else {
            // 18 bits carry two bytes: the low 2 must be zero.
            if n & 0x3 != 0 {
                return None;
            }
            out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
        }
    }
    Some(out)
}

fn sym(i: u32) -> char {
    char::from(ALPHABET.get((i & 63) as usize).copied().unwrap_or(b'A'))
}

/// Encodes as unpadded base64url.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        if let [a, b, d] = *c {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(d);
            for shift in [18, 12, 6, 0] {
                out.push(sym(n >> shift));
            }
        }
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(sym(n >> 18));
            out.push(sym(n >> 12));
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.push(sym(n >> 18));
            out.push(sym(n >> 12));
            out.push(sym(n >> 6));
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn refuses_lenient_spellings() {
        for bad in [
            "Zg==", "Zm8=", "Z", "Zm9v Yg", "Zm+v", "Zm/v", "Zh", "Zm9", "Zm\n9v",
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let e = encode(&bytes);
            prop_assert_eq!(decode(e.as_bytes()), Some(bytes));
        }

        #[test]
        fn decode_is_canonical(text in "[A-Za-z0-9_=+/-]{0,40}") {
            if let Some(b) = decode(text.as_bytes()) {
                prop_assert_eq!(encode(&b), text);
            }
        }
    }
}
