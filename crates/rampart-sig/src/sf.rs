//! Structured Field Values (RFC 8941, RFC 9651) for the three fields this crate reads.
//!
//! Why not the `sfv` crate: RFC 9421 verification needs `@signature-params` exactly as the
//! sender wrote the `Signature-Input` member, and `sfv` returns parsed values only, so the
//! member would have to be serialized again; any difference between that serialization and
//! the received bytes (spacing, parameter spelling, a signer that is not byte-canonical) turns
//! into a verification failure or, worse, into two parties disagreeing on what was signed.
//! This parser is small, keeps the byte range of each dictionary member, has bounds on every
//! collection it builds, and never indexes out of range (it is fuzzed: `fuzz/`).
//!
//! Departures from RFC 8941, all of them refusals: a dictionary key or a parameter name that
//! appears twice is an error (the RFC keeps the last one; for signatures and digests two
//! values are an ambiguity an attacker could use), collections are bounded (see the
//! `MAX_*` constants), and RFC 9651 Display Strings are not supported (no field we read
//! uses them).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};

/// Most members accepted in one dictionary.
pub const MAX_MEMBERS: usize = 64;
/// Most items accepted in one inner list.
pub const MAX_ITEMS: usize = 64;
/// Most parameters accepted on one item or inner list.
pub const MAX_PARAMS: usize = 32;
/// Longest field value parsed at all (the gateway bounds headers well below this).
pub const MAX_INPUT: usize = 64 * 1024;

const MAX_INTEGER: i64 = 999_999_999_999_999;

/// Why a structured field did not parse. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed structured field at byte {at}: {what}")]
pub struct SfError {
    /// Byte offset into the input where parsing stopped.
    pub at: usize,
    /// What was expected there.
    pub what: &'static str,
}

/// A bare item (RFC 9651 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem {
    /// `-?[0-9]{1,15}`
    Integer(i64),
    /// A decimal, in thousandths (`1.5` is `1500`).
    Decimal(i64),
    /// `"..."`, printable ASCII.
    String(String),
    /// A token such as `sha-256` or `*foo/bar`.
    Token(String),
    /// `:base64:`
    ByteSeq(Vec<u8>),
    /// `?0` / `?1` (and a parameter written without a value).
    Boolean(bool),
    /// `@1659578233` (RFC 9651).
    Date(i64),
}

/// Parameters in the order received; names are unique (duplicates refused).
pub type Params = Vec<(String, BareItem)>;

/// An item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value.
    pub bare: BareItem,
    /// Its parameters.
    pub params: Params,
}

/// An inner list with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerList {
    /// The items, in order.
    pub items: Vec<Item>,
    /// Parameters of the whole list.
    pub params: Params,
}

/// A dictionary or list member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// A single item.
    Item(Item),
    /// An inner list.
    InnerList(InnerList),
}

/// One dictionary member, with the text of its value exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictMember {
    /// The key.
    pub key: String,
    /// The parsed value.
    pub value: Member,
    /// The value's bytes as received (after `=`, through its parameters); for a member
    /// written without `=`, its parameters alone.
    pub raw: String,
}

/// A dictionary (RFC 8941 §3.2), members in received order, keys unique.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dictionary {
    /// The members.
    pub members: Vec<DictMember>,
}

impl Dictionary {
    /// The member under `key`.
    pub fn get(&self, key: &str) -> Option<&DictMember> {
        self.members.iter().find(|m| m.key == key)
    }
}

/// Look a parameter up by name.
pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a BareItem> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Parse a dictionary field value (the field lines already joined with `", "`).
pub fn parse_dictionary(input: &[u8]) -> Result<Dictionary, SfError> {
    let mut p = Parser::new(input)?;
    p.skip_sp();
    let mut dict = Dictionary::default();
    if p.at_end() {
        return Ok(dict);
    }
    loop {
        let key = p.key()?;
        if dict.members.iter().any(|m| m.key == key) {
            return Err(p.err("duplicate dictionary key"));
        }
        if dict.members.len() >= MAX_MEMBERS {
            return Err(p.err("too many dictionary members"));
        }
        let (value, raw) = if p.peek() == Some(b'=') {
            p.pos += 1;
            let start = p.pos;
            let v = p.item_or_inner_list()?;
            (v, p.text(start))
        } else {
            let start = p.pos;
            let params = p.params()?;
            let v = Member::Item(Item {
                bare: BareItem::Boolean(true),
                params,
            });
            (v, p.text(start))
        };
        dict.members.push(DictMember { key, value, raw });
        p.skip_ows();
        if p.at_end() {
            return Ok(dict);
        }
        p.expect(b',', "',' between members")?;
        p.skip_ows();
        if p.at_end() {
            return Err(p.err("trailing ','"));
        }
    }
}

/// Parse an item field value (e.g. one component identifier).
pub fn parse_item(input: &[u8]) -> Result<Item, SfError> {
    let mut p = Parser::new(input)?;
    p.skip_sp();
    let item = p.item()?;
    p.skip_sp();
    if !p.at_end() {
        return Err(p.err("end of field"));
    }
    Ok(item)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn lenient_base64() -> GeneralPurpose {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Result<Self, SfError> {
        if input.len() > MAX_INPUT {
            return Err(SfError {
                at: 0,
                what: "field too long",
            });
        }
        Ok(Parser { input, pos: 0 })
    }

    fn err(&self, what: &'static str) -> SfError {
        SfError { at: self.pos, what }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn text(&self, start: usize) -> String {
        // Every byte the grammar accepts is ASCII, so this is lossless.
        String::from_utf8_lossy(self.input.get(start..self.pos).unwrap_or_default()).into_owned()
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), SfError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn key(&mut self) -> Result<String, SfError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.pos += 1,
            _ => return Err(self.err("key")),
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(self.text(start))
    }

    fn item_or_inner_list(&mut self) -> Result<Member, SfError> {
        if self.peek() == Some(b'(') {
            self.inner_list().map(Member::InnerList)
        } else {
            self.item().map(Member::Item)
        }
    }

    fn inner_list(&mut self) -> Result<InnerList, SfError> {
        self.expect(b'(', "'('")?;
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.peek() == Some(b')') {
                self.pos += 1;
                let params = self.params()?;
                return Ok(InnerList { items, params });
            }
            if items.len() >= MAX_ITEMS {
                return Err(self.err("too many inner-list items"));
            }
            items.push(self.item()?);
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(self.err("' ' or ')' after an inner-list item")),
            }
        }
    }

    fn item(&mut self) -> Result<Item, SfError> {
        let bare = self.bare_item()?;
        let params = self.params()?;
        Ok(Item { bare, params })
    }

    fn params(&mut self) -> Result<Params, SfError> {
        let mut params: Params = Vec::new();
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            if params.iter().any(|(k, _)| *k == key) {
                return Err(self.err("duplicate parameter"));
            }
            if params.len() >= MAX_PARAMS {
                return Err(self.err("too many parameters"));
            }
            params.push((key, value));
        }
        Ok(params)
    }

    fn bare_item(&mut self) -> Result<BareItem, SfError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string().map(BareItem::String),
            Some(b':') => self.byte_seq().map(BareItem::ByteSeq),
            Some(b'?') => self.boolean().map(BareItem::Boolean),
            Some(b'@') => {
                self.pos += 1;
                match self.number()? {
                    BareItem::Integer(i) => Ok(BareItem::Date(i)),
                    _ => Err(self.err("integer date")),
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => self.token().map(BareItem::Token),
            _ => Err(self.err("bare item")),
        }
    }

    fn number(&mut self) -> Result<BareItem, SfError> {
        let negative = if self.peek() == Some(b'-') {
            self.pos += 1;
            true
        } else {
            false
        };
        let mut int_part: i64 = 0;
        let mut int_digits = 0usize;
        let mut frac: i64 = 0;
        let mut frac_digits: Option<usize> = None;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                let d = i64::from(c - b'0');
                match frac_digits.as_mut() {
                    None => {
                        int_digits += 1;
                        if int_digits > 15 {
                            return Err(self.err("integer too long"));
                        }
                        int_part = int_part * 10 + d;
                    }
                    Some(n) => {
                        *n += 1;
                        if *n > 3 {
                            return Err(self.err("decimal fraction too long"));
                        }
                        frac = frac * 10 + d;
                    }
                }
                self.pos += 1;
            } else if c == b'.' && frac_digits.is_none() {
                if int_digits == 0 || int_digits > 12 {
                    return Err(self.err("decimal integer part"));
                }
                frac_digits = Some(0);
                self.pos += 1;
            } else {
                break;
            }
        }
        if int_digits == 0 {
            return Err(self.err("digit"));
        }
        let sign = if negative { -1 } else { 1 };
        match frac_digits {
            None => Ok(BareItem::Integer(sign * int_part)),
            Some(0) => Err(self.err("decimal fraction digit")),
            Some(n) => {
                let scale = match n {
                    1 => 100,
                    2 => 10,
                    _ => 1,
                };
                Ok(BareItem::Decimal(sign * (int_part * 1000 + frac * scale)))
            }
        }
    }

    fn string(&mut self) -> Result<String, SfError> {
        self.expect(b'"', "'\"'")?;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("closing '\"'"));
            };
            self.pos += 1;
            match c {
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.pos += 1;
                        out.push(char::from(e));
                    }
                    _ => return Err(self.err("escape of '\"' or '\\'")),
                },
                b'"' => return Ok(out),
                0x20..=0x7e => out.push(char::from(c)),
                _ => return Err(self.err("printable ASCII in string")),
            }
        }
    }

    fn token(&mut self) -> Result<String, SfError> {
        let start = self.pos;
        self.pos += 1;
        while let Some(c) = self.peek() {
            if is_tchar(c) || c == b':' || c == b'/' {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(self.text(start))
    }

    fn byte_seq(&mut self) -> Result<Vec<u8>, SfError> {
        self.expect(b':', "':'")?;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let b64 = self.input.get(start..self.pos).unwrap_or_default();
        self.expect(b':', "closing ':'")?;
        lenient_base64()
            .decode(b64)
            .map_err(|_| self.err("base64 in byte sequence"))
    }

    fn boolean(&mut self) -> Result<bool, SfError> {
        self.expect(b'?', "'?'")?;
        let v = match self.peek() {
            Some(b'0') => false,
            Some(b'1') => true,
            _ => return Err(self.err("'0' or '1'")),
        };
        self.pos += 1;
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------
// Serialization (RFC 8941 §4.1), for what this crate writes: Accept-Signature, the test
// signer's Signature-Input and Signature, and Content-Digest.

/// Serialize a bare item. Returns `None` for a value that has no serialization (a string
/// with a non-printable character, a token with a character tokens cannot hold, an
/// out-of-range number).
pub fn serialize_bare(item: &BareItem, out: &mut String) -> Option<()> {
    match item {
        BareItem::Integer(i) | BareItem::Date(i) => {
            if i.unsigned_abs() > MAX_INTEGER.unsigned_abs() {
                return None;
            }
            if matches!(item, BareItem::Date(_)) {
                out.push('@');
            }
            write!(out, "{i}").ok()?;
        }
        BareItem::Decimal(milli) => {
            if milli.unsigned_abs() / 1000 > 999_999_999_999 {
                return None;
            }
            if *milli < 0 {
                out.push('-');
            }
            let abs = milli.unsigned_abs();
            write!(out, "{}.", abs / 1000).ok()?;
            let frac = format!("{:03}", abs % 1000);
            let trimmed = frac.trim_end_matches('0');
            out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        }
        BareItem::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    ' '..='~' => out.push(c),
                    _ => return None,
                }
            }
            out.push('"');
        }
        BareItem::Token(t) => {
            let mut bytes = t.bytes();
            match bytes.next() {
                Some(c) if c.is_ascii_alphabetic() || c == b'*' => {}
                _ => return None,
            }
            if !bytes.all(|c| is_tchar(c) || c == b':' || c == b'/') {
                return None;
            }
            out.push_str(t);
        }
        BareItem::ByteSeq(b) => {
            out.push(':');
            out.push_str(&general_purpose::STANDARD.encode(b));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
    Some(())
}

fn valid_key(k: &str) -> bool {
    let mut bytes = k.bytes();
    matches!(bytes.next(), Some(c) if c.is_ascii_lowercase() || c == b'*')
        && bytes.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
}

/// Serialize parameters (`;k=v`, `;k` for `true`).
pub fn serialize_params(params: &Params, out: &mut String) -> Option<()> {
    for (k, v) in params {
        if !valid_key(k) {
            return None;
        }
        out.push(';');
        out.push_str(k);
        if *v != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare(v, out)?;
        }
    }
    Some(())
}

/// Serialize an item with its parameters.
pub fn serialize_item(item: &Item, out: &mut String) -> Option<()> {
    serialize_bare(&item.bare, out)?;
    serialize_params(&item.params, out)
}

/// Serialize an inner list with its parameters.
pub fn serialize_inner_list(list: &InnerList, out: &mut String) -> Option<()> {
    out.push('(');
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_item(item, out)?;
    }
    out.push(')');
    serialize_params(&list.params, out)
}

/// Serialize a dictionary.
pub fn serialize_dictionary(dict: &Dictionary) -> Option<String> {
    let mut out = String::new();
    for (i, m) in dict.members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if !valid_key(&m.key) {
            return None;
        }
        out.push_str(&m.key);
        match &m.value {
            Member::Item(item) if item.bare == BareItem::Boolean(true) => {
                serialize_params(&item.params, &mut out)?;
            }
            Member::Item(item) => {
                out.push('=');
                serialize_item(item, &mut out)?;
            }
            Member::InnerList(list) => {
                out.push('=');
                serialize_inner_list(list, &mut out)?;
            }
        }
    }
    Some(out)
}

/// Base64 (with padding) as byte sequences are written.
pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests;
