//! Reading an evidence bundle (`rampart evidence verify`): a `.tar.gz` holding
//! `files/<path>`, `statement.json` and `envelope.dsse.json`.
//!
//! Guards against hostile archives: only regular files are accepted (no links, devices or
//! directories that could point elsewhere), names under `files/` must be plain relative
//! paths (no `..`, no absolute path), each name at most once, at most [`MAX_FILES`]
//! entries, at most [`MAX_TOTAL_BYTES`] decompressed (a gzip bomb stops there) and
//! [`MAX_META_BYTES`] per metadata file. Nothing is written to disk; file contents are only
//! hashed. Trusts nothing in the bundle: the caller checks the signature against its own
//! keyring and every digest against the signed statement.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

use aws_lc_rs::digest::SHA256;
use flate2::read::GzDecoder;

/// Most entries in a bundle.
pub const MAX_FILES: usize = 100_000;
/// Most decompressed bytes read from a bundle.
pub const MAX_TOTAL_BYTES: u64 = 4 << 30;
/// Largest `statement.json` or `envelope.dsse.json`.
pub const MAX_META_BYTES: u64 = 64 << 20;

/// What a bundle holds: each file's SHA-256 (lower-case hex) by relative path, and the
/// two metadata files as bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub files: BTreeMap<String, String>,
    pub statement: Option<Vec<u8>>,
    pub envelope: Option<Vec<u8>>,
}

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(
            H.get(usize::from(x >> 4)).copied().unwrap_or(b'0'),
        ));
        s.push(char::from(
            H.get(usize::from(x & 15)).copied().unwrap_or(b'0'),
        ));
    }
    s
}

/// Reads a `.tar.gz` bundle from `input`. Errors are messages for the operator (they
/// name entries, never file contents).
pub fn read_bundle(input: impl Read) -> Result<Bundle, String> {
    let mut ar = tar::Archive::new(GzDecoder::new(input).take(MAX_TOTAL_BYTES));
    let mut b = Bundle::default();
    let entries = ar
        .entries()
        .map_err(|e| format!("not a .tar.gz bundle: {e}"))?;
    let mut count = 0usize;
    for e in entries {
        let mut e = e.map_err(|e| format!("not a .tar.gz bundle: {e}"))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            return Err("the bundle holds an entry that is not a regular file".into());
        }
        let name = e
            .path()
            .map_err(|_| "an entry name is not valid".to_owned())?
            .to_str()
            .ok_or("an entry name is not UTF-8")?
            .to_owned();
        count += 1;
        if count > MAX_FILES {
            return Err(format!("more than {MAX_FILES} entries"));
        }
        match name.as_str() {
            "statement.json" | "envelope.dsse.json" => {
                let mut v = Vec::new();
                (&mut e)
                    .take(MAX_META_BYTES)
                    .read_to_end(&mut v)
                    .map_err(|e| format!("{name}: {e}"))?;
                let slot = if name == "statement.json" {
                    &mut b.statement
                } else {
                    &mut b.envelope
                };
                if slot.replace(v).is_some() {
                    return Err(format!("{name} appears twice"));
                }
            }
            n => {
                let rel = n
                    .strip_prefix("files/")
                    .filter(|r| {
                        !r.is_empty()
                            && Path::new(r)
                                .components()
                                .all(|c| matches!(c, Component::Normal(_)))
                    })
                    .ok_or_else(|| format!("unexpected entry `{n}`"))?
                    .to_owned();
                let mut ctx = aws_lc_rs::digest::Context::new(&SHA256);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let k = e.read(&mut buf).map_err(|e| format!("{n}: {e}"))?;
                    let Some(chunk) = buf.get(..k).filter(|c| !c.is_empty()) else {
                        break;
                    };
                    ctx.update(chunk);
                }
                if b.files.insert(rel, hex(ctx.finish().as_ref())).is_some() {
                    return Err(format!("`{n}` appears twice"));
                }
            }
        }
    }
    Ok(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    fn tgz(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let mut t = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, data, kind) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(*kind);
            // Bypass the builder's own path checks: a hostile bundle is made by hand.
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            t.append(&h, *data).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap()
    }

    const R: tar::EntryType = tar::EntryType::Regular;

    #[test]
    fn reads_files_and_metadata() {
        let b = read_bundle(
            tgz(&[
                ("files/a/b.txt", b"hello", R),
                ("statement.json", b"{}", R),
                ("envelope.dsse.json", b"[]", R),
            ])
            .as_slice(),
        )
        .unwrap();
        assert_eq!(
            b.files["a/b.txt"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(b.statement.as_deref(), Some(&b"{}"[..]));
        assert_eq!(b.envelope.as_deref(), Some(&b"[]"[..]));
    }

    #[test]
    fn refuses_hostile_entries() {
        for bad in [
            tgz(&[("files/../x", b"", R)]),
            tgz(&[("/etc/passwd", b"", R)]),
            tgz(&[("files/", b"", R)]),
            tgz(&[("other.txt", b"", R)]),
            tgz(&[("files/l", b"", tar::EntryType::Symlink)]),
            tgz(&[("files/a", b"1", R), ("files/a", b"2", R)]),
            tgz(&[("statement.json", b"1", R), ("statement.json", b"2", R)]),
            b"not gzip".to_vec(),
        ] {
            assert!(read_bundle(bad.as_slice()).is_err());
        }
    }
}
