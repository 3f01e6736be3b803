//! JSON for headers, claims and key sets, refusing duplicate members.
//!
//! `serde_json` keeps the last of two members with the same name. Two parsers that
//! disagree on which duplicate wins (one takes the first `sub`, the other the last) let
//! a token mean one thing to the issuer's checks and another to the gateway, so every
//! object at every depth is read through a visitor that refuses a repeated name.
//! Nesting is bounded by `serde_json`'s recursion limit (128).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a JSON text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON, trailing data, or nested too deep.
    Malformed,
    /// An object names one member twice.
    Duplicate,
    /// Valid JSON, but not an object.
    NotObject,
}

const DUPLICATE: &str = "duplicate member";

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses a JSON value, refusing duplicate members at any depth and trailing data.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = match Strict::deserialize(&mut de) {
        Ok(Strict(v)) => v,
        Err(e) if e.to_string().starts_with(DUPLICATE) => return Err(JsonError::Duplicate),
        Err(_) => return Err(JsonError::Malformed),
    };
    de.end().map_err(|_| JsonError::Malformed)?;
    Ok(v)
}

/// Parses a JSON object (a JOSE header, a claims set, a JWK set).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse(bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(JsonError::NotObject),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicates_refused_at_any_depth() {
        assert_eq!(parse(br#"{"a":1,"a":2}"#), Err(JsonError::Duplicate));
        assert_eq!(parse(br#"{"x":{"b":1,"b":1}}"#), Err(JsonError::Duplicate));
        assert_eq!(parse(br#"[{"c":1,"c":1}]"#), Err(JsonError::Duplicate));
        // Escapes spell the same name: still a duplicate.
        assert_eq!(
            parse(br#"{"sub":1,"s\u0075b":2}"#),
            Err(JsonError::Duplicate)
        );
        assert!(parse(br#"{"a":1,"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn malformed_and_trailing() {
        assert_eq!(parse(b"{"), Err(JsonError::Malformed));
        assert_eq!(parse(b"{} x"), Err(JsonError::Malformed));
        assert_eq!(parse(b"{}{}"), Err(JsonError::Malformed));
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotObject));
        assert_eq!(parse(&[b'"', 0xff, b'"']), Err(JsonError::Malformed));
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::Malformed));
        assert!(parse_object(b" {\"a\" : [1, 2.5, null, true, \"x\"]}\r\n").is_ok());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn agrees_with_serde_json_without_duplicates(
            m in proptest::collection::btree_map("[a-z]{1,4}", any::<i64>(), 0..8)
        ) {
            let text = serde_json::to_vec(&m).unwrap();
            let ours = parse(&text).unwrap();
            let theirs: Value = serde_json::from_slice(&text).unwrap();
            prop_assert_eq!(ours, theirs);
        }
    }
}
