//! C2SP `tlog-checkpoint` bodies in C2SP `signed-note` envelopes, Ed25519 signatures.
//!
//! Body: `<origin>\n<tree size>\n<base64 root hash>\n` (extension lines may follow and
//! are kept). Note: body, an empty line, then one `— <key name> <base64(key hash ‖
//! signature)>` line per signature. Key hash: the first four bytes of SHA-256(key name ‖
//! `\n` ‖ 0x01 ‖ public key). The key name is the signing key's id; a verifier key in the
//! `<name>+<hash hex>+<base64(0x01 ‖ key)>` form is printed by `rampart keys public
//! --format note` for Go's `sumdb/note` and other implementations.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rampart_crypto::{PublicKey, Signature, TrustedKeys};

use crate::record::Hash;

/// Upper bounds on what the parser accepts (notes come from disk, possibly hostile).
pub const MAX_NOTE: usize = 64 * 1024;
const MAX_SIGS: usize = 16;
const ALG_ED25519: u8 = 0x01;

/// A checkpoint: the log's origin, size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines after the root (without newlines).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    pub fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("body must end with a newline"))?
            .split('\n');
        let origin = lines.next().unwrap_or("");
        if origin.is_empty() {
            return Err(NoteError::Malformed("empty origin"));
        }
        let size_s = lines.next().ok_or(NoteError::Malformed("no tree size"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(NoteError::Malformed("tree size is not a decimal number"));
        }
        let size = size_s
            .parse::<u64>()
            .map_err(|_| NoteError::Malformed("tree size out of range"))?;
        let root_s = lines.next().ok_or(NoteError::Malformed("no root hash"))?;
        let root = STANDARD
            .decode(root_s)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or(NoteError::Malformed("root hash is not 32 bytes of base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::Malformed("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// Why a note is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("signed by `{0}`, a key that is not in the keyring")]
    UnknownKey(String),
    #[error("signature by `{0}` does not verify")]
    BadSignature(String),
    #[error("no signature")]
    Unsigned,
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSig {
    pub name: String,
    pub key_hash: u32,
    pub sig: Vec<u8>,
}

/// A parsed signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub body: String,
    pub sigs: Vec<NoteSig>,
}

/// The signed-note key hash of an Ed25519 key.
pub fn key_hash(name: &str, key: &PublicKey) -> u32 {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(key.raw());
    let d = ctx.finish();
    let b = d.as_ref();
    u32::from_be_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
        b.get(2).copied().unwrap_or(0),
        b.get(3).copied().unwrap_or(0),
    ])
}

/// The verifier key string of `sumdb/note`: `<name>+<hash>+<base64(0x01 ‖ key)>`.
pub fn verifier_key(key: &PublicKey) -> String {
    let mut k = vec![ALG_ED25519];
    k.extend_from_slice(key.raw());
    format!(
        "{}+{:08x}+{}",
        key.key_id(),
        key_hash(key.key_id(), key),
        STANDARD.encode(k)
    )
}

/// Signs `body` with `sign` (the keyring's active key) under `key`'s name.
pub fn sign(body: &str, key: &PublicKey, sign: impl FnOnce(&[u8]) -> Signature) -> String {
    let sig = sign(body.as_bytes());
    let mut blob = key_hash(key.key_id(), key).to_be_bytes().to_vec();
    blob.extend_from_slice(sig.as_bytes());
    format!(
        "{body}\n\u{2014} {} {}\n",
        key.key_id(),
        STANDARD.encode(blob)
    )
}

impl Note {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        if text.len() > MAX_NOTE {
            return Err(NoteError::Malformed("note too long"));
        }
        if text.contains('\r') || text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("control characters"));
        }
        let split = text
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let body = text.get(..=split).unwrap_or("");
        let sig_text = text.get(split + 2..).unwrap_or("");
        let sig_text = sig_text
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("must end with a newline"))?;
        let mut sigs = Vec::new();
        for line in sig_text.split('\n') {
            let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "signature line needs a name and a value",
            ))?;
            if name.is_empty() || name.contains('+') || b64.contains(' ') {
                return Err(NoteError::Malformed("bad signer name"));
            }
            let blob = STANDARD
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            let (h, sig) = blob
                .split_at_checked(4)
                .ok_or(NoteError::Malformed("signature too short"))?;
            let key_hash = u32::from_be_bytes([
                h.first().copied().unwrap_or(0),
                h.get(1).copied().unwrap_or(0),
                h.get(2).copied().unwrap_or(0),
                h.get(3).copied().unwrap_or(0),
            ]);
            sigs.push(NoteSig {
                name: name.to_owned(),
                key_hash,
                sig: sig.to_vec(),
            });
            if sigs.len() > MAX_SIGS {
                return Err(NoteError::Malformed("too many signatures"));
            }
        }
        Ok(Self {
            body: body.to_owned(),
            sigs,
        })
    }

    /// Checks the signatures against `trusted`: at least one must come from a known key
    /// and verify, and none from a known key may fail. Returns the key that signed.
    pub fn verify<'k>(&self, trusted: &'k TrustedKeys) -> Result<&'k PublicKey, NoteError> {
        let mut good = None;
        let mut unknown = None;
        for s in &self.sigs {
            let key = trusted
                .find(&s.name)
                .filter(|k| key_hash(&s.name, k) == s.key_hash);
            match key {
                Some(k) => {
                    let ok = Signature::from_slice(&s.sig)
                        .is_some_and(|sig| k.verify(self.body.as_bytes(), &sig));
                    if !ok {
                        return Err(NoteError::BadSignature(s.name.clone()));
                    }
                    good = Some(k);
                }
                None => unknown = Some(s.name.clone()),
            }
        }
        match (good, unknown) {
            (Some(k), _) => Ok(k),
            (None, Some(n)) => Err(NoteError::UnknownKey(n)),
            (None, None) => Err(NoteError::Unsigned),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;
    use rampart_crypto::SigningKey;

    use super::*;

    #[test]
    fn sign_parse_verify() {
        let k = SigningKey::generate("audit-1").unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 42,
            root: [7u8; 32],
            extensions: vec![],
        };
        let text = sign(&cp.body(), k.public(), |m| k.sign(m));
        let note = Note::parse(&text).unwrap();
        assert_eq!(Checkpoint::parse_body(&note.body).unwrap(), cp);
        let trusted = TrustedKeys::new(vec![k.public().clone()]);
        assert_eq!(note.verify(&trusted).unwrap(), k.public());
        let other = SigningKey::generate("audit-1").unwrap();
        let forged = sign(&cp.body(), other.public(), |m| other.sign(m));
        assert_eq!(
            Note::parse(&forged).unwrap().verify(&trusted).unwrap_err(),
            NoteError::UnknownKey("audit-1".into())
        );
        let tampered = text.replacen("42", "43", 1);
        assert_eq!(
            Note::parse(&tampered)
                .unwrap()
                .verify(&trusted)
                .unwrap_err(),
            NoteError::BadSignature("audit-1".into())
        );
    }

    #[test]
    fn body_rules() {
        assert!(Checkpoint::parse_body("o\n01\nAAAA\n").is_err());
        assert!(Checkpoint::parse_body("o\n1\nAAAA\n").is_err());
        assert!(Checkpoint::parse_body("\n1\n").is_err());
        let root = STANDARD.encode([0u8; 32]);
        assert!(Checkpoint::parse_body(&format!("o\n0\n{root}\n")).is_ok());
        assert!(Checkpoint::parse_body(&format!("o\n0\n{root}")).is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,300}") {
            if let Ok(n) = Note::parse(&s) {
                let _ = Checkpoint::parse_body(&n.body);
            }
        }
    }
}
