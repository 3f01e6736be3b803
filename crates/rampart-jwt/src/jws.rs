//! Compact JWS parsing (RFC 7515 §7.1) and the header policy.
//!
//! Parsing does only what a verifier must do before it can pick a key: bounded size,
//! three strict base64url parts, a strict JSON header. The claims are decoded but not
//! read until the signature holds, so a forged token costs no more than a genuine one.
//!
//! Header policy (everything else in the header is ignored):
//! - `alg` must be a string; `none` in any spelling is refused before anything else;
//!   an unknown name is refused (the allowlist is applied by the verifier).
//! - `jku`, `x5u`, `jwk`, `x5c`: a token that names or carries its own key is refused,
//!   and the URL is never fetched: trust comes only from the configured key set.
//! - `crit`: rampart understands no extension, so any `crit` is refused (RFC 7515
//!   §4.1.11), as is `b64` (RFC 7797), which changes what is signed.
//! - `enc`/`zip`: a JWE or a compressed payload is not a JWS.
//! - `kid`, when present, is a string of at most [`MAX_KID_BYTES`].

use serde_json::Value;

use crate::alg::Alg;
use crate::b64;
use crate::json::{self, JsonError};
use crate::reason::{self, Reason};

/// Longest `kid` accepted (they are short identifiers or thumbprints in practice).
pub const MAX_KID_BYTES: usize = 256;

/// Members that would make the token carry or point at its own key.
const EMBEDDED_KEY_MEMBERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// The header members rampart acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
}

/// A compact JWS split and decoded; the signature is not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub header: Header,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    /// Decoded payload (for a JWT, the claims set), unread so far.
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

fn json_reason(e: JsonError) -> Reason {
    match e {
        JsonError::Duplicate => reason::DUPLICATE_MEMBER,
        JsonError::Malformed | JsonError::NotObject => reason::BAD_JSON,
    }
}

/// Splits, decodes and checks a compact JWS of at most `max_bytes`.
pub fn parse(token: &str, max_bytes: usize) -> Result<Parsed<'_>, Reason> {
    let bytes = token.as_bytes();
    if bytes.len() > max_bytes {
        return Err(reason::TOO_LARGE);
    }
    let mut parts = bytes.splitn(4, |&b| b == b'.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reason::MALFORMED);
    };
    if h64.is_empty() {
        return Err(reason::MALFORMED);
    }
    let header_bytes = b64::decode(h64).ok_or(reason::BAD_BASE64)?;
    let header_obj = json::parse_object(&header_bytes).map_err(json_reason)?;
    let header = header_policy(&header_obj)?;
    if s64.is_empty() {
        return Err(reason::MISSING_SIGNATURE);
    }
    let payload = b64::decode(p64).ok_or(reason::BAD_BASE64)?;
    let signature = b64::decode(s64).ok_or(reason::BAD_BASE64)?;
    let signing_input = bytes
        .get(..h64.len() + 1 + p64.len())
        .ok_or(reason::MALFORMED)?;
    Ok(Parsed {
        header,
        signing_input,
        payload,
        signature,
    })
}

fn header_policy(h: &serde_json::Map<String, Value>) -> Result<Header, Reason> {
    let alg_name = match h.get("alg") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(reason::BAD_HEADER),
    };
    if alg_name.trim().eq_ignore_ascii_case("none") {
        return Err(reason::ALG_NONE);
    }
    let alg = Alg::from_name(alg_name).ok_or(reason::ALG_NOT_ALLOWED)?;
    if EMBEDDED_KEY_MEMBERS.iter().any(|m| h.contains_key(*m)) {
        return Err(reason::EMBEDDED_KEY);
    }
    if h.contains_key("crit") || h.contains_key("b64") {
        return Err(reason::UNKNOWN_CRIT);
    }
    if h.contains_key("enc") || h.contains_key("zip") {
        return Err(reason::BAD_HEADER);
    }
    let kid = match h.get("kid") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_KID_BYTES => Some(s.clone()),
        Some(_) => return Err(reason::BAD_HEADER),
    };
    Ok(Header { alg, kid })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    fn tok(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64::encode(header.as_bytes()),
            b64::encode(payload.as_bytes()),
            b64::encode(sig)
        )
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = tok(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
            r#"{"a":1}"#,
            b"sig",
        );
        let p = parse(&t, 8192).unwrap();
        assert_eq!(p.header.alg, Alg::ES256);
        assert_eq!(p.header.kid.as_deref(), Some("k1"));
        assert_eq!(p.payload, br#"{"a":1}"#);
        assert_eq!(p.signature, b"sig");
        assert_eq!(p.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn header_policy_refusals() {
        let cases: &[(&str, Reason)] = &[
            (r#"{"alg":"none"}"#, reason::ALG_NONE),
            (r#"{"alg":"None"}"#, reason::ALG_NONE),
            (r#"{"alg":"NONE"}"#, reason::ALG_NONE),
            (r#"{"alg":"nOnE"}"#, reason::ALG_NONE),
            (r#"{"alg":"none "}"#, reason::ALG_NONE),
            (r#"{"alg":"rs256"}"#, reason::ALG_NOT_ALLOWED),
            (r#"{"alg":"ES512"}"#, reason::ALG_NOT_ALLOWED),
            (r#"{"alg":5}"#, reason::BAD_HEADER),
            (r#"{"kid":"a"}"#, reason::BAD_HEADER),
            (
                r#"{"alg":"RS256","jku":"http://127.0.0.1/x"}"#,
                reason::EMBEDDED_KEY,
            ),
            (
                r#"{"alg":"RS256","x5u":"http://127.0.0.1/x"}"#,
                reason::EMBEDDED_KEY,
            ),
            (
                r#"{"alg":"RS256","jwk":{"kty":"oct","k":"AA"}}"#,
                reason::EMBEDDED_KEY,
            ),
            (r#"{"alg":"RS256","x5c":["MII"]}"#, reason::EMBEDDED_KEY),
            (
                r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
                reason::UNKNOWN_CRIT,
            ),
            (r#"{"alg":"RS256","crit":[]}"#, reason::UNKNOWN_CRIT),
            (r#"{"alg":"RS256","b64":false}"#, reason::UNKNOWN_CRIT),
            (r#"{"alg":"RS256","enc":"A128GCM"}"#, reason::BAD_HEADER),
            (r#"{"alg":"RS256","kid":7}"#, reason::BAD_HEADER),
            (r#"{"alg":"RS256","kid":""}"#, reason::BAD_HEADER),
            (r#"{"alg":"RS256","alg":"RS256"}"#, reason::DUPLICATE_MEMBER),
            (r#"{"alg":"RS256""#, reason::BAD_JSON),
            (r#"["RS256"]"#, reason::BAD_JSON),
        ];
        for (h, want) in cases {
            assert_eq!(parse(&tok(h, "{}", b"s"), 8192), Err(*want), "{h}");
        }
        let long_kid = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(257));
        assert_eq!(
            parse(&tok(&long_kid, "{}", b"s"), 8192),
            Err(reason::BAD_HEADER)
        );
    }

    #[test]
    fn structure_refusals() {
        let good = tok(r#"{"alg":"RS256"}"#, "{}", b"s");
        assert_eq!(parse(&good, good.len() - 1), Err(reason::TOO_LARGE));
        assert!(parse(&good, good.len()).is_ok());
        let (hp, _) = good.rsplit_once('.').unwrap();
        assert_eq!(
            parse(&format!("{hp}."), 8192),
            Err(reason::MISSING_SIGNATURE)
        );
        assert_eq!(parse(hp, 8192), Err(reason::MALFORMED));
        assert_eq!(parse(&format!("{good}.x"), 8192), Err(reason::MALFORMED));
        assert_eq!(parse(&format!(".{good}"), 8192), Err(reason::MALFORMED));
        assert_eq!(parse(&format!("{good}="), 8192), Err(reason::BAD_BASE64));
        assert_eq!(parse(&format!("{hp}.a+b"), 8192), Err(reason::BAD_BASE64));
        assert_eq!(parse("", 8192), Err(reason::MALFORMED));
    }

    proptest! {
        #[test]
        fn never_panics(s in "[ -~]{0,200}") {
            let _ = parse(&s, 8192);
        }

        #[test]
        fn never_panics_on_dotted_base64(
            a in "[A-Za-z0-9_-]{0,40}", b in "[A-Za-z0-9_-]{0,40}", c in "[A-Za-z0-9_-]{0,40}"
        ) {
            let _ = parse(&format!("{a}.{b}.{c}"), 8192);
        }

        #[test]
        fn round_trips(
            kid in proptest::option::of("[a-zA-Z0-9._-]{1,40}"),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            sig in proptest::collection::vec(any::<u8>(), 1..200),
            alg in proptest::sample::select(Alg::ALL.to_vec()),
        ) {
            let mut h = serde_json::Map::new();
            h.insert("alg".into(), Value::String(alg.name().into()));
            if let Some(k) = &kid {
                h.insert("kid".into(), Value::String(k.clone()));
            }
            let header = serde_json::to_vec(&h).unwrap();
            let t = format!("{}.{}.{}", b64::encode(&header), b64::encode(&payload), b64::encode(&sig));
            let p = parse(&t, usize::MAX).unwrap();
            prop_assert_eq!(p.header.alg, alg);
            prop_assert_eq!(p.header.kid, kid);
            prop_assert_eq!(p.payload, payload);
            prop_assert_eq!(p.signature, sig);
        }
    }
}
