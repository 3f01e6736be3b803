//! The record codec and the hash chain.
//!
//! A record is one JSON line whose members come in a fixed order (DESIGN.md §6):
//! `seq, ts, request_id, subject, tenant, auth, client_ip, method, route, path, status,
//! decision, reason, latency_us, prev, hash`. The *canonical bytes* are the line up to
//! and including `prev`, closed with `}`; `hash` = SHA-256(prev ‖ canonical bytes), hex.
//! A line is accepted only when re-encoding its parsed values gives back exactly its
//! bytes, so every record has one spelling and a changed byte changes its hash.
//! `seq` counts from 0 and is also the record's leaf index in the Merkle tree, whose leaf
//! data is the whole line without its newline.

use std::borrow::Cow;

use serde::Deserialize;

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// `prev` of the first record.
pub const GENESIS: Hash = [0u8; 32];

/// Longest record line accepted by the reader (the writer cuts fields well below it).
pub const MAX_LINE: usize = 16 * 1024;

/// Longest `path` kept (characters); longer ones are cut and marked with `…`.
pub const MAX_PATH: usize = 2048;
const MAX_FIELD: usize = 256;

/// What the gateway knows about one finished request: everything but `seq`, `ts` and
/// the chain, which the writer assigns. The members that are nearly always one of a few
/// fixed words are `Cow`s, so the audit stage allocates nothing for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub request_id: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub auth: Cow<'static, str>,
    pub client_ip: Option<String>,
    pub method: Cow<'static, str>,
    pub route: Option<String>,
    pub path: String,
    pub status: u16,
    pub decision: Cow<'static, str>,
    pub reason: Cow<'static, str>,
    pub latency_us: u64,
}

/// A parsed, chained record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub ts: String,
    pub request_id: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub auth: String,
    pub client_ip: Option<String>,
    pub method: String,
    pub route: Option<String>,
    pub path: String,
    pub status: u16,
    pub decision: String,
    pub reason: String,
    pub latency_us: u64,
    pub prev: String,
    pub hash: String,
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a record: {0}")]
    Syntax(String),
    #[error("not in canonical form")]
    NotCanonical,
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("`prev` or `hash` is not 64 hex digits")]
    BadHex,
}

/// Encodes one record line (with its trailing newline) into `out` and returns its hash.
pub fn encode(out: &mut Vec<u8>, seq: u64, ts: &str, e: &Entry, prev: &Hash) -> Hash {
    Encoder::default().encode(out, seq, ts, e, prev).0
}

/// Encodes records and computes both hashes of each: the chain hash and the Merkle leaf
/// hash. Both hash inputs are prefixes laid out in one reused buffer, `prev ‖ canonical
/// bytes` and then `0x00 ‖ line`, so each is a single one-shot SHA-256 call (no digest
/// context to allocate and free) and the record allocates nothing.
#[derive(Debug, Default)]
pub struct Encoder {
    scratch: Vec<u8>,
}

impl Encoder {
    /// Appends the record line (with its newline) to `out`; returns its `hash` and its
    /// Merkle leaf hash (the same as [`crate::merkle::leaf_hash`] of the line).
    pub fn encode(
        &mut self,
        out: &mut Vec<u8>,
        seq: u64,
        ts: &str,
        e: &Entry,
        prev: &Hash,
    ) -> (Hash, Hash) {
        let s = &mut self.scratch;
        s.clear();
        s.extend_from_slice(prev);
        canonical_into(s, seq, ts, e, prev);
        let hash = sha256(s);
        s.pop();
        s.extend_from_slice(b",\"hash\":\"");
        push_hex_bytes(s, &hash);
        s.extend_from_slice(b"\"}");
        // The byte before the line becomes the leaf prefix (RFC 9162: 0x00 ‖ data).
        let line_at = prev.len();
        if let Some(b) = s.get_mut(line_at - 1) {
            *b = 0;
        }
        let leaf = sha256(s.get(line_at - 1..).unwrap_or(&[]));
        out.extend_from_slice(s.get(line_at..).unwrap_or(&[]));
        out.push(b'\n');
        (hash, leaf)
    }
}

/// SHA-256 of `data` in one call.
pub(crate) fn sha256(data: &[u8]) -> Hash {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    for (o, b) in out.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    out
}

/// Appends the canonical bytes: the line up to and including `prev`, closed with `}`.
fn canonical_into(s: &mut Vec<u8>, seq: u64, ts: &str, e: &Entry, prev: &Hash) {
    s.extend_from_slice(b"{\"seq\":");
    push_u64(s, seq);
    s.extend_from_slice(b",\"ts\":");
    push_str(s, ts, MAX_FIELD);
    s.extend_from_slice(b",\"request_id\":");
    push_opt(s, e.request_id.as_deref());
    s.extend_from_slice(b",\"subject\":");
    push_opt(s, e.subject.as_deref());
    s.extend_from_slice(b",\"tenant\":");
    push_opt(s, e.tenant.as_deref());
    s.extend_from_slice(b",\"auth\":");
    push_str(s, &e.auth, MAX_FIELD);
    s.extend_from_slice(b",\"client_ip\":");
    push_opt(s, e.client_ip.as_deref());
    s.extend_from_slice(b",\"method\":");
    push_str(s, &e.method, MAX_FIELD);
    s.extend_from_slice(b",\"route\":");
    push_opt(s, e.route.as_deref());
    s.extend_from_slice(b",\"path\":");
    push_str(s, &e.path, MAX_PATH);
    s.extend_from_slice(b",\"status\":");
    push_u64(s, u64::from(e.status));
    s.extend_from_slice(b",\"decision\":");
    push_str(s, &e.decision, MAX_FIELD);
    s.extend_from_slice(b",\"reason\":");
    push_str(s, &e.reason, MAX_FIELD);
    s.extend_from_slice(b",\"latency_us\":");
    push_u64(s, e.latency_us);
    s.extend_from_slice(b",\"prev\":\"");
    push_hex_bytes(s, prev);
    s.extend_from_slice(b"\"}");
}

/// SHA-256(prev ‖ canonical bytes).
pub fn chain_hash(prev: &Hash, canonical: &[u8]) -> Hash {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    let mut out = [0u8; 32];
    for (o, b) in out.iter_mut().zip(ctx.finish().as_ref()) {
        *o = *b;
    }
    out
}

/// A parsed line with the values the verifier needs.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub record: Record,
    pub prev: Hash,
    /// The hash written in the line.
    pub stated_hash: Hash,
    /// The hash recomputed from `prev` and the canonical bytes.
    pub computed_hash: Hash,
}

/// Parses one line (without its newline), requiring canonical form.
pub fn parse(line: &[u8]) -> Result<Parsed, RecordError> {
    if line.len() > MAX_LINE {
        return Err(RecordError::TooLong);
    }
    let record: Record =
        serde_json::from_slice(line).map_err(|e| RecordError::Syntax(e.to_string()))?;
    let prev = unhex(&record.prev).ok_or(RecordError::BadHex)?;
    let stated_hash = unhex(&record.hash).ok_or(RecordError::BadHex)?;
    let entry = Entry {
        request_id: record.request_id.clone(),
        subject: record.subject.clone(),
        tenant: record.tenant.clone(),
        auth: record.auth.clone().into(),
        client_ip: record.client_ip.clone(),
        method: record.method.clone().into(),
        route: record.route.clone(),
        path: record.path.clone(),
        status: record.status,
        decision: record.decision.clone().into(),
        reason: record.reason.clone().into(),
        latency_us: record.latency_us,
    };
    let mut expected = Vec::with_capacity(line.len());
    canonical_into(&mut expected, record.seq, &record.ts, &entry, &prev);
    let computed_hash = chain_hash(&prev, &expected);
    expected.pop();
    expected.extend_from_slice(b",\"hash\":\"");
    expected.extend_from_slice(record.hash.as_bytes());
    expected.extend_from_slice(b"\"}");
    if expected != line {
        return Err(RecordError::NotCanonical);
    }
    Ok(Parsed {
        record,
        prev,
        stated_hash,
        computed_hash,
    })
}

fn push_opt(s: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(v) => push_str(s, v, MAX_FIELD),
        None => s.extend_from_slice(b"null"),
    }
}

/// Bytes that `push_str` cannot copy as they are: `"`, `\\`, control characters and DEL.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// Whether no byte of `v` needs escaping, eight bytes at a time: a byte below 0x20 or
/// equal to `"`, `\\` or DEL sets the high bit of its lane in one of the masks (the
/// usual zero-byte test, exact about whether any lane matches).
fn plain(v: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        let hit = (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
            | zero_in(x ^ (ONES * u64::from(b'"')))
            | zero_in(x ^ (ONES * u64::from(b'\\')))
            | zero_in(x ^ (ONES * 0x7f));
        if hit != 0 {
            return false;
        }
    }
    !chunks.remainder().iter().any(|b| needs_escape(*b))
}

/// JSON string with the one escaping the codec accepts: `\"`, `\\` and `\u00XX` for
/// control characters. At most `max` characters are kept (a cut value ends in `…`).
fn push_str(s: &mut Vec<u8>, v: &str, max: usize) {
    s.push(b'"');
    // Fast path (the usual value): short enough to be kept whole (bytes bound chars) and
    // nothing to escape, so the bytes go as they are; same output as the loop below.
    if v.len() <= max && plain(v.as_bytes()) {
        s.extend_from_slice(v.as_bytes());
        s.push(b'"');
        return;
    }
    let cut = v.chars().nth(max).is_some();
    let mut utf8 = [0u8; 4];
    for (i, c) in v.chars().enumerate() {
        if cut && i + 1 >= max {
            s.extend_from_slice("…".as_bytes());
            break;
        }
        match c {
            '"' => s.extend_from_slice(b"\\\""),
            '\\' => s.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let n = c as u32;
                s.extend_from_slice(b"\\u00");
                push_hex_bytes(s, &[u8::try_from(n).unwrap_or(0)]);
            }
            c => s.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    s.push(b'"');
}

/// Decimal digits of `n`.
fn push_u64(s: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            // n % 10 < 10: the cast cannot truncate.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    s.extend_from_slice(digits.get(i..).unwrap_or(&[]));
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn push_hex_bytes(s: &mut Vec<u8>, b: &[u8]) {
    for x in b {
        // Nibbles always index the 16 digits (the compiler drops the checks).
        s.push(HEX_DIGITS.get(usize::from(x >> 4)).copied().unwrap_or(b'0'));
        s.push(HEX_DIGITS.get(usize::from(x & 15)).copied().unwrap_or(b'0'));
    }
}

pub fn push_hex(s: &mut String, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for x in b {
        for n in [x >> 4, x & 15] {
            s.push(char::from(HEX.get(usize::from(n)).copied().unwrap_or(b'0')));
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    push_hex(&mut s, b);
    s
}

/// Lower-case hex of exactly 32 bytes.
pub fn unhex(s: &str) -> Option<Hash> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = nibble(*b.get(2 * i)?)?;
        let lo = nibble(*b.get(2 * i + 1)?)?;
        *o = (hi << 4) | lo;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Strings meant to break an encoder: JSON metacharacters, every control character,
    /// DEL, multi-byte and astral characters, lone `\u` look-alikes, and lengths around
    /// the field limit (256 characters).
    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}é€😀]|\\\\u0000){0,40}",
            "[a-z\"\\\\\u{0}\u{1f}\u{7f}é]{250,262}",
            "[a-z0-9.:/-]{0,300}",
            Just(String::new()),
            Just("€".repeat(257)),
        ]
    }

    /// The encoder as it was before it wrote bytes into the caller's buffer (a `String`
    /// per record and `write!` for numbers): the oracle the byte encoder must match.
    mod oracle {
        use std::fmt::Write as _;

        use super::super::{Entry, Hash, MAX_FIELD, MAX_PATH, chain_hash, push_hex};

        pub fn encode(out: &mut Vec<u8>, seq: u64, ts: &str, e: &Entry, prev: &Hash) -> Hash {
            let mut s = canonical(seq, ts, e, prev);
            let hash = chain_hash(prev, s.as_bytes());
            s.pop();
            s.push_str(",\"hash\":\"");
            push_hex(&mut s, &hash);
            s.push_str("\"}\n");
            out.extend_from_slice(s.as_bytes());
            hash
        }

        fn canonical(seq: u64, ts: &str, e: &Entry, prev: &Hash) -> String {
            let mut s = String::with_capacity(384);
            let _ = write!(s, "{{\"seq\":{seq}");
            s.push_str(",\"ts\":");
            push_str(&mut s, ts, MAX_FIELD);
            s.push_str(",\"request_id\":");
            push_opt(&mut s, e.request_id.as_deref());
            s.push_str(",\"subject\":");
            push_opt(&mut s, e.subject.as_deref());
            s.push_str(",\"tenant\":");
            push_opt(&mut s, e.tenant.as_deref());
            s.push_str(",\"auth\":");
            push_str(&mut s, &e.auth, MAX_FIELD);
            s.push_str(",\"client_ip\":");
            push_opt(&mut s, e.client_ip.as_deref());
            s.push_str(",\"method\":");
            push_str(&mut s, &e.method, MAX_FIELD);
            s.push_str(",\"route\":");
            push_opt(&mut s, e.route.as_deref());
            s.push_str(",\"path\":");
            push_str(&mut s, &e.path, MAX_PATH);
            let _ = write!(s, ",\"status\":{}", e.status);
            s.push_str(",\"decision\":");
            push_str(&mut s, &e.decision, MAX_FIELD);
            s.push_str(",\"reason\":");
            push_str(&mut s, &e.reason, MAX_FIELD);
            let _ = write!(s, ",\"latency_us\":{}", e.latency_us);
            s.push_str(",\"prev\":\"");
            push_hex(&mut s, prev);
            s.push_str("\"}");
            s
        }

        fn push_opt(s: &mut String, v: Option<&str>) {
            match v {
                Some(v) => push_str(s, v, MAX_FIELD),
                None => s.push_str("null"),
            }
        }

        pub fn push_str(s: &mut String, v: &str, max: usize) {
            s.push('"');
            let cut = v.chars().nth(max).is_some();
            for (i, c) in v.chars().enumerate() {
                if cut && i + 1 >= max {
                    s.push('…');
                    break;
                }
                match c {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    c if (c as u32) < 0x20 || c == '\u{7f}' => {
                        let _ = write!(s, "\\u{:04x}", c as u32);
                    }
                    c => s.push(c),
                }
            }
            s.push('"');
        }
    }

    fn entry() -> Entry {
        Entry {
            request_id: Some("abc".into()),
            subject: None,
            tenant: Some("t1".into()),
            auth: "none".into(),
            client_ip: Some("127.0.0.1".into()),
            method: "GET".into(),
            route: Some("r".into()),
            path: "/a?token=REDACTED".into(),
            status: 200,
            decision: "allow".into(),
            reason: "forwarded".into(),
            latency_us: 12,
        }
    }

    #[test]
    fn round_trip_and_chain() {
        let mut out = Vec::new();
        let h0 = encode(
            &mut out,
            0,
            "2026-01-01T00:00:00.000000Z",
            &entry(),
            &GENESIS,
        );
        let line = &out[..out.len() - 1];
        let p = parse(line).unwrap();
        assert_eq!(p.computed_hash, h0);
        assert_eq!(p.stated_hash, h0);
        assert_eq!(p.prev, GENESIS);
        assert_eq!(p.record.status, 200);
        let text = std::str::from_utf8(line).unwrap();
        assert!(text.starts_with("{\"seq\":0,\"ts\":"));
        assert!(text.contains(",\"latency_us\":12,\"prev\":\"0000"));
    }

    #[test]
    fn edited_value_changes_hash_and_respelling_is_refused() {
        let mut out = Vec::new();
        let h = encode(&mut out, 3, "t", &entry(), &GENESIS);
        let line = String::from_utf8(out[..out.len() - 1].to_vec()).unwrap();
        let edited = line.replace("\"status\":200", "\"status\":201");
        let p = parse(edited.as_bytes()).unwrap();
        assert_eq!(p.stated_hash, h);
        assert_ne!(p.computed_hash, h);
        // Same values, other spelling: refused.
        let spaced = line.replace("\"status\":200", "\"status\": 200");
        assert_eq!(
            parse(spaced.as_bytes()).unwrap_err(),
            RecordError::NotCanonical
        );
        let escaped = line.replace("\"abc\"", "\"\\u0061bc\"");
        assert_eq!(
            parse(escaped.as_bytes()).unwrap_err(),
            RecordError::NotCanonical
        );
        let extra = line.replace("{\"seq\"", "{\"x\":1,\"seq\"");
        assert!(parse(extra.as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn any_entry_round_trips(
            rid in proptest::option::of(".{0,40}"),
            sub in proptest::option::of("\\PC{0,40}"),
            path in ".{0,300}",
            status in 100u16..600,
            lat in any::<u64>(),
            seq in any::<u64>(),
        ) {
            let e = Entry { request_id: rid, subject: sub, path, status, latency_us: lat, ..entry() };
            let mut out = Vec::new();
            let h = encode(&mut out, seq, "ts", &e, &GENESIS);
            let p = parse(&out[..out.len() - 1]).unwrap();
            prop_assert_eq!(p.computed_hash, h);
            prop_assert_eq!(p.stated_hash, h);
            prop_assert_eq!(p.record.seq, seq);
        }

        /// The fast path of `push_str` spells every value as the escaping loop does
        /// (the oracle is that loop, as the encoder had it before it wrote bytes).
        #[test]
        fn push_str_fast_path_matches_the_loop(v in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}é€])*", max in 1usize..50) {
            let mut slow = String::new();
            oracle::push_str(&mut slow, &v, max);
            let mut fast = Vec::new();
            push_str(&mut fast, &v, max);
            prop_assert_eq!(String::from_utf8(fast).unwrap(), slow);
        }

        /// The byte encoder writes exactly the line the previous `String` encoder wrote
        /// (kept below as the oracle), for any values: quotes, backslashes, control
        /// characters, DEL, multi-byte characters, values cut at their limit, extreme
        /// numbers; and the parser accepts the line back with the same hash.
        #[test]
        fn encoder_matches_the_previous_encoder_byte_for_byte(
            rid in proptest::option::of(hostile()),
            sub in proptest::option::of(hostile()),
            tenant in proptest::option::of(hostile()),
            auth in hostile(),
            ip in proptest::option::of(hostile()),
            method in hostile(),
            route in proptest::option::of(hostile()),
            path in proptest::string::string_regex("(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}é€/?=&]){0,2100}").unwrap(),
            status in any::<u16>(),
            decision in hostile(),
            reason in hostile(),
            lat in any::<u64>(),
            seq in prop_oneof![any::<u64>(), Just(0u64), Just(u64::MAX), 0u64..100_000],
            ts in hostile(),
            prev in any::<[u8; 32]>(),
        ) {
            let e = Entry {
                request_id: rid,
                subject: sub,
                tenant,
                auth: auth.into(),
                client_ip: ip,
                method: method.into(),
                route,
                path,
                status,
                decision: decision.into(),
                reason: reason.into(),
                latency_us: lat,
            };
            let mut want = b"earlier line\n".to_vec();
            let want_hash = oracle::encode(&mut want, seq, &ts, &e, &prev);
            let mut got = b"earlier line\n".to_vec();
            let start = got.len();
            let (got_hash, leaf) = Encoder::default().encode(&mut got, seq, &ts, &e, &prev);
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(got_hash, want_hash);
            prop_assert_eq!(leaf, crate::merkle::leaf_hash(&got[start..got.len() - 1]));
            let line = &got[start..got.len() - 1];
            prop_assume!(line.len() <= MAX_LINE);
            let p = parse(line).unwrap();
            prop_assert_eq!(p.computed_hash, got_hash);
            prop_assert_eq!(p.stated_hash, got_hash);
            prop_assert_eq!(p.prev, prev);
        }

        /// The eight-bytes-at-a-time test agrees with the byte test on any bytes.
        #[test]
        fn plain_matches_the_byte_test(v in proptest::collection::vec(any::<u8>(), 0..40), pick in proptest::collection::vec(prop_oneof![Just(0u8), Just(0x1f), Just(0x20), Just(b'"'), Just(b'\\'), Just(0x7f), Just(0x80), Just(0xff), Just(b'a')], 0..40)) {
            for bytes in [&v, &pick] {
                prop_assert_eq!(plain(bytes), !bytes.iter().any(|b| needs_escape(*b)));
            }
        }

        #[test]
        fn parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&b);
        }
    }
}
