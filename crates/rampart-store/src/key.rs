//! The API key format: pure parsing and generation, no I/O.
//!
//! ```text
//! rpk_<id>_<secret>_<check>
//!     id      12 base62 characters (about 71 random bits): the lookup handle, not secret
//!     secret  43 base62 characters (about 256 random bits)
//!     check   6 base62 characters: CRC-32 (IEEE) of `rpk_<id>_<secret>`, big-endian base62,
//!             zero-padded
//! ```
//!
//! 67 characters in all, ASCII letters, digits and `_` only (safe in headers, URLs and
//! shells). Secret scanners match it with
//! `\brpk_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b` and can confirm a hit offline
//! with the checksum, without asking us. The checksum also turns most typos into a
//! cheap refusal before any lookup.

use std::fmt;

use zeroize::Zeroizing;

/// The recognisable prefix of every rampart API key.
pub const PREFIX: &str = "rpk_";
/// Length of the id part.
pub const ID_LEN: usize = 12;
/// Length of the secret part: 43 × log2(62) ≈ 256.03 bits.
pub const SECRET_LEN: usize = 43;
/// Length of the checksum part (62^6 > 2^32).
pub const CHECK_LEN: usize = 6;
/// Total length of a key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN + 1 + CHECK_LEN;
/// The regular expression secret scanners use to find leaked keys.
pub const SCANNER_REGEX: &str = r"\brpk_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b";

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented string is not a well-formed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// Wrong length, prefix, separators or alphabet.
    Malformed,
    /// Well-formed, but the checksum does not match (a typo or a made-up key).
    BadChecksum,
}

/// A presented key split into its parts. Borrowed; holds no copy of the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// `rpk_<id>_<secret>`: the bytes the keyed hash is computed over.
    pub body: &'a str,
    pub id: &'a str,
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn is_base62(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_alphanumeric)
}

/// Splits and checks a presented key. Never panics, never allocates.
pub fn parse(presented: &str) -> Result<ParsedKey<'_>, FormatError> {
    let b = presented.as_bytes();
    if b.len() != KEY_LEN || !presented.starts_with(PREFIX) {
        return Err(FormatError::Malformed);
    }
    let id_end = PREFIX.len() + ID_LEN;
    let secret_end = id_end + 1 + SECRET_LEN;
    let (Some(id), Some(sep1), Some(secret), Some(sep2), Some(check)) = (
        b.get(PREFIX.len()..id_end),
        b.get(id_end),
        b.get(id_end + 1..secret_end),
        b.get(secret_end),
        b.get(secret_end + 1..),
    ) else {
        return Err(FormatError::Malformed);
    };
    if *sep1 != b'_' || *sep2 != b'_' || !is_base62(id) || !is_base62(secret) || !is_base62(check) {
        return Err(FormatError::Malformed);
    }
    // All ASCII from here on, so these byte offsets are char boundaries.
    let (Some(body), Some(id)) = (
        presented.get(..secret_end),
        presented.get(PREFIX.len()..id_end),
    ) else {
        return Err(FormatError::Malformed);
    };
    if checksum(body.as_bytes()) != check {
        return Err(FormatError::BadChecksum);
    }
    Ok(ParsedKey { body, id })
}

/// Whether `s` has the shape of a key id (for CLI arguments and store rows).
pub fn is_key_id(s: &str) -> bool {
    s.len() == ID_LEN && is_base62(s.as_bytes())
}

/// CRC-32 lookup table (reflected polynomial 0xEDB88320), built at compile time.
// Evaluated by the compiler: an out-of-range index would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), the one zlib and PNG use.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        let idx = usize::from((crc as u8) ^ byte);
        crc = (crc >> 8) ^ CRC_TABLE.get(idx).copied().unwrap_or(0);
    }
    !crc
}

/// The 6-character base62 checksum of a key body.
pub fn checksum(body: &[u8]) -> [u8; CHECK_LEN] {
    let mut n = u64::from(crc32(body));
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        let d = usize::try_from(n % 62).unwrap_or(0);
        *slot = ALPHABET.get(d).copied().unwrap_or(b'0');
        n /= 62;
    }
    out
}

/// Uniform base62 characters from the system CSPRNG (aws-lc-rs), by rejection sampling:
/// bytes ≥ 248 are dropped so every character has probability exactly 1/62.
pub(crate) fn random_base62(n: usize) -> Result<Zeroizing<String>, aws_lc_rs::error::Unspecified> {
    let mut out = Zeroizing::new(String::with_capacity(n));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < n {
        aws_lc_rs::rand::fill(&mut buf[..])?;
        for &b in buf.iter() {
            if out.len() == n {
                break;
            }
            if b < 248 {
                out.push(char::from(
                    ALPHABET.get(usize::from(b % 62)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    Ok(out)
}

/// A new random key id.
pub(crate) fn new_id() -> Result<String, aws_lc_rs::error::Unspecified> {
    Ok(random_base62(ID_LEN)?.as_str().to_owned())
}

/// A full key for `id` with a fresh secret.
pub(crate) fn new_key(id: &str) -> Result<Zeroizing<String>, aws_lc_rs::error::Unspecified> {
    let secret = random_base62(SECRET_LEN)?;
    let mut key = Zeroizing::new(String::with_capacity(KEY_LEN));
    key.push_str(PREFIX);
    key.push_str(id);
    key.push('_');
    key.push_str(&secret);
    let check = checksum(key.as_bytes());
    key.push('_');
    for c in check {
        key.push(char::from(c));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Cross-checked with Python's zlib.crc32 and the base62 encoding in the README.
        assert_eq!(
            &checksum(b"rpk_0123456789AB_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"),
            b"0pkKhj"
        );
    }

    #[test]
    fn generated_keys_parse() {
        for _ in 0..200 {
            let id = new_id().unwrap();
            assert!(is_key_id(&id));
            let k = new_key(&id).unwrap();
            assert_eq!(k.len(), KEY_LEN);
            let p = parse(&k).unwrap();
            assert_eq!(p.id, id);
            assert_eq!(p.body, &k[..KEY_LEN - CHECK_LEN - 1]);
            assert!(!format!("{p:?}").contains(&k[PREFIX.len() + ID_LEN + 1..][..SECRET_LEN]));
        }
    }

    #[test]
    fn random_is_spread_over_the_alphabet() {
        let s = random_base62(62 * 200).unwrap();
        let mut counts = [0u32; 62];
        for b in s.bytes() {
            counts[ALPHABET.iter().position(|a| *a == b).unwrap()] += 1;
        }
        // Expected 200 each; a biased or stuck generator falls far outside this band.
        assert!(counts.iter().all(|c| (100..320).contains(c)), "{counts:?}");
    }

    #[test]
    fn shape_errors() {
        let k = new_key(&new_id().unwrap()).unwrap();
        assert_eq!(parse(""), Err(FormatError::Malformed));
        assert_eq!(parse(&k[..KEY_LEN - 1]), Err(FormatError::Malformed));
        assert_eq!(parse(&format!("{}x", &*k)), Err(FormatError::Malformed));
        assert_eq!(
            parse(&k.replacen("rpk_", "rpx_", 1)),
            Err(FormatError::Malformed)
        );
        let mut b = k.as_bytes().to_vec();
        b[PREFIX.len() + ID_LEN] = b'-';
        assert_eq!(
            parse(std::str::from_utf8(&b).unwrap()),
            Err(FormatError::Malformed)
        );
        // A multi-byte character of the right byte length.
        let mut s = k[..KEY_LEN - 2].to_owned();
        s.push('é');
        assert_eq!(s.len(), KEY_LEN);
        assert_eq!(parse(&s), Err(FormatError::Malformed));
    }

    fn key() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(0usize..62, ID_LEN),
            proptest::collection::vec(0usize..62, SECRET_LEN),
        )
            .prop_map(|(id, secret)| {
                let id: String = id.into_iter().map(|i| char::from(ALPHABET[i])).collect();
                let secret: String = secret
                    .into_iter()
                    .map(|i| char::from(ALPHABET[i]))
                    .collect();
                let body = format!("{PREFIX}{id}_{secret}");
                let check = checksum(body.as_bytes());
                format!("{body}_{}", std::str::from_utf8(&check).unwrap())
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,100}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_keys(k in key(), pos in 0usize..KEY_LEN, c in any::<char>()) {
            let mut chars: Vec<char> = k.chars().collect();
            chars[pos] = c;
            let s: String = chars.into_iter().collect();
            let _ = parse(&s);
        }

        #[test]
        fn valid_keys_round_trip(k in key()) {
            let p = parse(&k).unwrap();
            prop_assert_eq!(p.id, &k[PREFIX.len()..PREFIX.len() + ID_LEN]);
        }

        /// One changed character (a typo) in the id, the secret or the checksum is refused
        /// by the checksum alone: CRC-32 detects every single-symbol error in this range.
        #[test]
        fn checksum_catches_one_typo(k in key(), pos in PREFIX.len()..KEY_LEN, d in 1usize..62) {
            let b = k.as_bytes();
            prop_assume!(b[pos] != b'_');
            let cur = ALPHABET.iter().position(|a| *a == b[pos]).unwrap();
            let mut t = b.to_vec();
            t[pos] = ALPHABET[(cur + d) % 62];
            let s = String::from_utf8(t).unwrap();
            prop_assert_eq!(parse(&s), Err(FormatError::BadChecksum));
        }

        /// Two neighbouring characters swapped (the other classic typo).
        #[test]
        fn checksum_catches_transpositions(k in key(), pos in PREFIX.len()..KEY_LEN - CHECK_LEN - 2) {
            let b = k.as_bytes();
            prop_assume!(b[pos] != b[pos + 1] && b[pos] != b'_' && b[pos + 1] != b'_');
            let mut t = b.to_vec();
            t.swap(pos, pos + 1);
            let s = String::from_utf8(t).unwrap();
            prop_assert_eq!(parse(&s), Err(FormatError::BadChecksum));
        }
    }
}
