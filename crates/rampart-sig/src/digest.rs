//! RFC 9530 `Content-Digest`: parse the field, then check it against a body that arrives in
//! pieces ([`DigestChecker`]), so the gateway can stream a request upstream and abort it when
//! the last chunk shows the digest was wrong.
//!
//! `sha-256` and `sha-512` are supported. Members of other algorithms are ignored (RFC 9530
//! §2 lets a recipient skip algorithms it does not know); a field with no supported member is
//! refused, so a sender cannot get an unchecked body through by naming only `md5` or a
//! made-up algorithm. Every supported member must match.

use aws_lc_rs::digest;

use crate::sf::{self, BareItem, Member};

/// A digest algorithm this crate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    /// `sha-256`
    Sha256,
    /// `sha-512`
    Sha512,
}

impl DigestAlg {
    /// The RFC 9530 registry name.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha-256",
            DigestAlg::Sha512 => "sha-512",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha-256" => Some(DigestAlg::Sha256),
            "sha-512" => Some(DigestAlg::Sha512),
            _ => None,
        }
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            DigestAlg::Sha256 => &digest::SHA256,
            DigestAlg::Sha512 => &digest::SHA512,
        }
    }
}

/// Why a `Content-Digest` was refused. Always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not a structured dictionary of byte sequences of the right length.
    #[error("malformed Content-Digest")]
    Malformed,
    /// No member of a supported algorithm (`sha-256`, `sha-512`).
    #[error("Content-Digest names no supported algorithm")]
    Unsupported,
    /// The body does not hash to the digest.
    #[error("body does not match Content-Digest")]
    Mismatch,
}

/// The `Content-Digest` value for `body` with one algorithm, e.g.
/// `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`.
pub fn content_digest(alg: DigestAlg, body: &[u8]) -> String {
    let d = digest::digest(alg.algorithm(), body);
    format!("{}=:{}:", alg.name(), sf::b64(d.as_ref()))
}

/// Parse a `Content-Digest` value into the digests this crate can check.
pub fn parse_content_digest(value: &[u8]) -> Result<Vec<(DigestAlg, Vec<u8>)>, DigestError> {
    let dict = sf::parse_dictionary(value).map_err(|_| DigestError::Malformed)?;
    if dict.members.is_empty() {
        return Err(DigestError::Malformed);
    }
    let mut out = Vec::new();
    for m in &dict.members {
        let Some(alg) = DigestAlg::from_name(&m.key) else {
            continue;
        };
        match &m.value {
            Member::Item(item) => match &item.bare {
                BareItem::ByteSeq(bytes) if bytes.len() == alg.algorithm().output_len() => {
                    out.push((alg, bytes.clone()));
                }
                _ => return Err(DigestError::Malformed),
            },
            Member::InnerList(_) => return Err(DigestError::Malformed),
        }
    }
    if out.is_empty() {
        return Err(DigestError::Unsupported);
    }
    Ok(out)
}

/// Checks a body, fed in chunks, against a parsed `Content-Digest`.
pub struct DigestChecker {
    expected: Vec<(Vec<u8>, digest::Context)>,
    bytes: u64,
}

impl std::fmt::Debug for DigestChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestChecker")
            .field("algorithms", &self.expected.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl DigestChecker {
    /// A checker for the supported members of a `Content-Digest` field value.
    pub fn from_header(value: &[u8]) -> Result<Self, DigestError> {
        let expected = parse_content_digest(value)?
            .into_iter()
            .map(|(alg, want)| (want, digest::Context::new(alg.algorithm())))
            .collect();
        Ok(DigestChecker { expected, bytes: 0 })
    }

    /// Feed the next piece of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        for (_, ctx) in &mut self.expected {
            ctx.update(chunk);
        }
    }

    /// Body bytes seen so far.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes
    }

    /// After the last chunk: does the body match every supported digest?
    pub fn finish(self) -> Result<(), DigestError> {
        let mut ok = true;
        for (want, ctx) in self.expected {
            let got = ctx.finish();
            // Digests are not secrets, but a constant-time compare costs nothing here.
            ok &= aws_lc_rs::constant_time::verify_slices_are_equal(got.as_ref(), &want).is_ok();
        }
        if ok {
            Ok(())
        } else {
            Err(DigestError::Mismatch)
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn streamed_in_any_split_equals_whole() {
        let body = b"{\"hello\": \"world\"}";
        let header = content_digest(DigestAlg::Sha512, body);
        for split in 0..=body.len() {
            let (a, b) = body.split_at(split);
            let mut c = DigestChecker::from_header(header.as_bytes()).unwrap();
            c.update(a);
            c.update(b);
            assert_eq!(c.bytes_seen(), body.len() as u64);
            assert_eq!(c.finish(), Ok(()));
        }
    }

    #[test]
    fn unsupported_only_is_refused_and_unknown_members_are_skipped() {
        assert_eq!(
            parse_content_digest(b"md5=:AAAAAAAAAAAAAAAAAAAAAA==:").unwrap_err(),
            DigestError::Unsupported
        );
        let good = content_digest(DigestAlg::Sha256, b"x");
        let mixed = format!("md5=:AAAAAAAAAAAAAAAAAAAAAA==:, {good}");
        let mut c = DigestChecker::from_header(mixed.as_bytes()).unwrap();
        c.update(b"x");
        assert_eq!(c.finish(), Ok(()));
    }

    #[test]
    fn every_supported_member_must_match() {
        let a = content_digest(DigestAlg::Sha256, b"x");
        let b = content_digest(DigestAlg::Sha512, b"y");
        let mut c = DigestChecker::from_header(format!("{a}, {b}").as_bytes()).unwrap();
        c.update(b"x");
        assert_eq!(c.finish(), Err(DigestError::Mismatch));
    }

    #[test]
    fn wrong_length_or_type_is_malformed() {
        assert_eq!(
            parse_content_digest(b"sha-256=:AAAA:").unwrap_err(),
            DigestError::Malformed
        );
        assert_eq!(
            parse_content_digest(b"sha-256=\"abc\"").unwrap_err(),
            DigestError::Malformed
        );
        assert_eq!(
            parse_content_digest(b"").unwrap_err(),
            DigestError::Malformed
        );
    }
}
