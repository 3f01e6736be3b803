//! Path normalization (DESIGN.md §4), pure and allocation-light.
//!
//! Written here rather than taken from a crate because the rules are a security policy,
//! not a URL library's notion of equivalence: the gateway must refuse every path that two
//! reasonable servers could read differently (encoded `/`, `\`, NUL, dot segments that
//! climb above the root), and hand the upstream exactly the path it authorized.
//!
//! What it does, in order, on the path part of an origin-form request target (no query):
//! - percent-decodes the unreserved characters (`A-Z a-z 0-9 - . _ ~`) and upper-cases the
//!   hex digits of every escape it keeps;
//! - refuses an encoded `/`, `\`, NUL or other control character, a raw `\`, an invalid
//!   escape, and escapes that decode to invalid UTF-8;
//! - resolves `.` and `..` segments (also when they were written `%2e`), refusing a `..`
//!   that would climb above the root;
//! - merges repeated slashes.
//!
//! The result starts with `/`, contains no empty, `.` or `..` segment, keeps a trailing
//! slash, and is a fixed point: normalizing it again returns it unchanged.

use std::borrow::Cow;
use std::fmt;

/// Why a path was refused. Every variant is the client's fault (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The target does not start with `/` (asterisk-form or garbage).
    NotAbsolute,
    /// `%2F` or `%5C`: a separator hidden from the router.
    EncodedSeparator,
    /// `%00`..`%1F` or `%7F`.
    EncodedControl,
    /// A raw backslash, which some servers treat as `/`.
    Backslash,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// Escapes that decode to bytes that are not UTF-8.
    NotUtf8,
    /// A `..` that would climb above the root.
    AboveRoot,
    /// Longer than [`MAX_PATH_LEN`].
    TooLong,
}

/// Upper bound on the path length we normalize; hyper already caps the whole target.
pub const MAX_PATH_LEN: usize = 8192;

impl PathError {
    /// Stable reason code for logs, metrics and problem documents.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotAbsolute => "path_not_absolute",
            Self::EncodedSeparator => "path_encoded_separator",
            Self::EncodedControl => "path_encoded_control",
            Self::Backslash => "path_backslash",
            Self::BadEscape => "path_bad_escape",
            Self::NotUtf8 => "path_not_utf8",
            Self::AboveRoot => "path_above_root",
            Self::TooLong => "path_too_long",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "the request path must start with '/'",
            Self::EncodedSeparator => "the request path contains an encoded '/' or '\\'",
            Self::EncodedControl => "the request path contains an encoded control character",
            Self::Backslash => "the request path contains a backslash",
            Self::BadEscape => "the request path contains an invalid percent-escape",
            Self::NotUtf8 => "the request path does not decode to UTF-8",
            Self::AboveRoot => "the request path climbs above the root with '..'",
            Self::TooLong => "the request path is too long",
        })
    }
}

impl std::error::Error for PathError {}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Normalizes one segment into `out` (no `/` inside). Returns the decoded-escape state
/// needed to validate UTF-8 across consecutive escapes.
fn push_segment(seg: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    // Bytes of the current run of non-unreserved escapes, to check they form UTF-8.
    let mut run: [u8; 4] = [0; 4];
    let mut run_len = 0usize;
    let mut i = 0usize;
    while let Some(&b) = seg.get(i) {
        if b == b'%' {
            let (Some(h), Some(l)) = (
                seg.get(i + 1).copied().and_then(hex_val),
                seg.get(i + 2).copied().and_then(hex_val),
            ) else {
                return Err(PathError::BadEscape);
            };
            let v = (h << 4) | l;
            match v {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                0x00..=0x1F | 0x7F => return Err(PathError::EncodedControl),
                _ => {}
            }
            if is_unreserved(v) {
                check_run(&run, run_len)?;
                run_len = 0;
                out.push(v);
            } else {
                if v >= 0x80 {
                    // Continue or start a UTF-8 sequence made of escapes.
                    if run_len == run.len() {
                        check_run(&run, run_len)?;
                        run_len = 0;
                    }
                    if let Some(slot) = run.get_mut(run_len) {
                        *slot = v;
                    }
                    run_len += 1;
                    if std::str::from_utf8(run.get(..run_len).unwrap_or(&[])).is_ok() {
                        run_len = 0;
                    }
                } else {
                    check_run(&run, run_len)?;
                    run_len = 0;
                }
                out.push(b'%');
                out.push(HEX_UPPER.get(usize::from(h)).copied().unwrap_or(b'0'));
                out.push(HEX_UPPER.get(usize::from(l)).copied().unwrap_or(b'0'));
            }
            i += 3;
        } else {
            check_run(&run, run_len)?;
            run_len = 0;
            if b == b'\\' {
                return Err(PathError::Backslash);
            }
            out.push(b);
            i += 1;
        }
    }
    check_run(&run, run_len)
}

/// A pending run of escaped high bytes must be empty (complete sequences are cleared as
/// soon as they validate), otherwise the escapes did not form UTF-8.
fn check_run(_run: &[u8; 4], run_len: usize) -> Result<(), PathError> {
    if run_len == 0 {
        Ok(())
    } else {
        Err(PathError::NotUtf8)
    }
}

/// Normalizes a request path (without query). Borrows when the input is already normal,
/// which is the common case, so the hot path does not allocate.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    // Non-UTF-8 raw bytes cannot reach here: `&str` is UTF-8 by construction.
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Start offsets in `out` of each kept segment (each begins with its '/').
    let mut starts: Vec<usize> = Vec::new();
    let mut seg_buf: Vec<u8> = Vec::new();
    let trailing_slash = bytes.len() > 1 && bytes.last() == Some(&b'/');
    for raw in bytes.split(|&b| b == b'/').skip(1) {
        if raw.is_empty() {
            continue; // merged repeated slash (or the trailing one, re-added below)
        }
        seg_buf.clear();
        push_segment(raw, &mut seg_buf)?;
        match seg_buf.as_slice() {
            b"." => {}
            b".." => {
                let Some(start) = starts.pop() else {
                    return Err(PathError::AboveRoot);
                };
                out.truncate(start);
            }
            seg => {
                starts.push(out.len());
                out.push(b'/');
                out.extend_from_slice(seg);
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    // Trailing "/." or "/.." also denote a directory: keep the slash they imply.
    if !trailing_slash && !out.ends_with(b"/") && ends_with_dot_segment(bytes) {
        out.push(b'/');
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathError::NotUtf8)
}

fn ends_with_dot_segment(bytes: &[u8]) -> bool {
    let last = bytes.rsplit(|&b| b == b'/').next().unwrap_or(&[]);
    matches!(
        last.to_ascii_lowercase().as_slice(),
        b"." | b".." | b"%2e" | b"%2e%2e" | b".%2e" | b"%2e."
    )
}

/// Fast check: no escapes, no backslash, no empty/dot segments.
fn is_already_normal(bytes: &[u8]) -> bool {
    let mut prev_slash = false;
    let mut seg_start = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' | b'\\' => return false,
            b'/' => {
                if prev_slash && i > 0 {
                    return false;
                }
                if i > 0 && is_dot_segment(bytes.get(seg_start..i).unwrap_or(&[])) {
                    return false;
                }
                prev_slash = true;
                seg_start = i + 1;
            }
            _ => prev_slash = false,
        }
    }
    !is_dot_segment(bytes.get(seg_start..).unwrap_or(&[]))
}

fn is_dot_segment(seg: &[u8]) -> bool {
    seg == b"." || seg == b".."
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn keeps_normal_paths_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/api/v1/x.json",
            "/a.b/..c/d..",
            "/~user/-_.",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
            assert_eq!(n(p).unwrap(), p);
        }
    }

    #[test]
    fn merges_slashes_and_resolves_dots() {
        assert_eq!(n("//a///b").unwrap(), "/a/b");
        assert_eq!(n("/a/./b").unwrap(), "/a/b");
        assert_eq!(n("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert_eq!(n("/a/b/").unwrap(), "/a/b/");
        assert_eq!(n("//").unwrap(), "/");
        assert_eq!(n("/.").unwrap(), "/");
    }

    #[test]
    fn decodes_unreserved_and_uppercases_kept_escapes() {
        assert_eq!(n("/%41%62c").unwrap(), "/Abc");
        assert_eq!(n("/a%2db").unwrap(), "/a-b");
        assert_eq!(n("/a%3bb").unwrap(), "/a%3Bb");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
        assert_eq!(n("/caf%C3%A9").unwrap(), "/caf%C3%A9");
        assert_eq!(n("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(n("/a/%2E/b").unwrap(), "/a/b");
        assert_eq!(n("/a/.%2e/").unwrap(), "/");
    }

    #[test]
    fn refuses_ambiguous_paths() {
        assert_eq!(n("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%00b"), Err(PathError::EncodedControl));
        assert_eq!(n("/a%0d%0a"), Err(PathError::EncodedControl));
        assert_eq!(n("/a\\b"), Err(PathError::Backslash));
        assert_eq!(n("/.."), Err(PathError::AboveRoot));
        assert_eq!(n("/a/../.."), Err(PathError::AboveRoot));
        assert_eq!(n("/a/../../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(n("/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(n("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/a%4"), Err(PathError::BadEscape));
        assert_eq!(n("/a%"), Err(PathError::BadEscape));
        assert_eq!(n("/%C3"), Err(PathError::NotUtf8));
        assert_eq!(n("/%C3x"), Err(PathError::NotUtf8));
        assert_eq!(n("/%FF%FE"), Err(PathError::NotUtf8));
        assert_eq!(n("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
        assert_eq!(n(""), Err(PathError::NotAbsolute));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = normalize(&s);
        }

        #[test]
        fn output_is_a_clean_fixed_point(s in "/[a-zA-Z0-9./%~_\\-;*]{0,64}") {
            if let Ok(out) = normalize(&s) {
                let out = out.into_owned();
                prop_assert!(out.starts_with('/'));
                prop_assert!(!out.contains("//"));
                prop_assert!(!out.contains('\\'));
                for seg in out.split('/') {
                    prop_assert!(seg != "." && seg != "..");
                }
                // Idempotent: the path that was authorized is the path that is served.
                let again = normalize(&out).map(Cow::into_owned);
                prop_assert_eq!(again, Ok(out.clone()));
                // No escape of an unreserved byte, '/' or '\' survives.
                let lower = out.to_ascii_lowercase();
                prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"));
            }
        }
    }
}
