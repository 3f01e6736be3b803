//! Secret values and the `env:NAME` / `file:PATH` references that produce them.
//!
//! A [`Secret`] never prints its bytes (`Debug` and `Display` show `[redacted]`), is wiped
//! when dropped, and compares in constant time. A `file:` secret must be a regular file
//! that neither group nor other can access (mode `& 0o077 == 0`), owned by the process
//! user or root: anyone else who can read or replace it holds the secret.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Upper bound on a secret read from a file or the environment (a PEM key is a few KiB).
pub(crate) const MAX_SECRET_BYTES: u64 = 1 << 20;
/// Upper bound on a public PEM file (certificate chain, CA bundle).
pub(crate) const MAX_PUBLIC_FILE_BYTES: u64 = 8 << 20;

/// Secret bytes: wiped on drop, redacted in `Debug`/`Display`.
#[derive(Clone)]
pub struct Secret {
    bytes: Zeroizing<Vec<u8>>,
    source: String,
}

impl Secret {
    /// A secret with no recorded source (tests, generated material).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self::with_source(bytes, "inline")
    }

    /// A secret that records where it came from (`env:NAME`, `file:PATH`, `literal`); the
    /// source is not secret and appears in messages.
    pub fn with_source(bytes: impl Into<Vec<u8>>, source: impl Into<String>) -> Self {
        Secret {
            bytes: Zeroizing::new(bytes.into()),
            source: source.into(),
        }
    }

    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The secret as UTF-8, if it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// Where the secret came from: `env:NAME`, `file:PATH`, `literal` or `inline`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file a `file:` secret was read from.
    pub fn source_file(&self) -> Option<&Path> {
        self.source.strip_prefix("file:").map(Path::new)
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Constant-time comparison (time depends on the lengths only).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        if self.bytes.len() != other.len() {
            return false;
        }
        let diff = self
            .bytes
            .iter()
            .zip(other)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How a secret value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretRef<'a> {
    Env(&'a str),
    File(&'a str),
    Literal(&'a str),
}

impl<'a> SecretRef<'a> {
    pub fn parse(s: &'a str) -> Self {
        if let Some(name) = s.strip_prefix("env:") {
            SecretRef::Env(name)
        } else if let Some(path) = s.strip_prefix("file:") {
            SecretRef::File(path)
        } else {
            SecretRef::Literal(s)
        }
    }
}

/// Why a reference could not be resolved: a stable check name and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefError {
    pub code: &'static str,
    pub message: String,
}

fn ref_err(code: &'static str, message: String) -> RefError {
    RefError { code, message }
}

/// `dir` joined with `path` when `path` is relative (relative to the config file).
pub(crate) fn resolve_path(path: &str, dir: Option<&Path>) -> PathBuf {
    let p = PathBuf::from(path);
    match dir {
        Some(d) if p.is_relative() => d.join(p),
        _ => p,
    }
}

/// Reads `env:NAME` from `env` (the variable must exist and be non-empty).
pub(crate) fn read_env(name: &str, env: &[(String, String)]) -> Result<Vec<u8>, RefError> {
    if name.is_empty() {
        return Err(ref_err(
            "secret-env",
            "`env:` needs a variable name, e.g. env:RAMPART_KEK".into(),
        ));
    }
    match env.iter().rev().find(|(k, _)| k == name) {
        None => Err(ref_err(
            "secret-env",
            format!("environment variable {name} is not set"),
        )),
        Some((_, v)) if v.is_empty() => Err(ref_err(
            "secret-env",
            format!("environment variable {name} is empty"),
        )),
        Some((_, v)) if v.len() as u64 > MAX_SECRET_BYTES => Err(ref_err(
            "secret-env",
            format!("environment variable {name} is larger than {MAX_SECRET_BYTES} bytes"),
        )),
        Some((_, v)) => Ok(v.as_bytes().to_vec()),
    }
}

/// The mode and owner rules a secret file must meet; `Ok` carries its size.
pub(crate) fn check_secret_file(path: &Path) -> Result<u64, RefError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ref_err(
            "secret-file-missing",
            format!("secret file {shown} does not exist"),
        ),
        _ => ref_err(
            "secret-file-missing",
            format!("secret file {shown} cannot be read: {e}"),
        ),
    })?;
    if !meta.is_file() {
        return Err(ref_err(
            "secret-file-missing",
            format!("secret file {shown} is not a regular file"),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        let what = if mode & 0o044 != 0 {
            "readable"
        } else {
            "accessible"
        };
        return Err(ref_err(
            "secret-file-mode",
            format!("secret file {shown} is {what} by group/other (mode {mode:04o}); chmod 600"),
        ));
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(ref_err(
            "secret-file-owner",
            format!(
                "secret file {shown} is owned by uid {}, not by the process user (uid {euid}) or root",
                meta.uid()
            ),
        ));
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(ref_err(
            "secret-file-missing",
            format!("secret file {shown} is larger than {MAX_SECRET_BYTES} bytes"),
        ));
    }
    Ok(meta.len())
}

fn read_bounded(path: &Path, limit: u64, size_hint: u64) -> Result<Vec<u8>, std::io::Error> {
    let f = std::fs::File::open(path)?;
    let cap = usize::try_from(size_hint.min(limit)).unwrap_or(0);
    let mut buf = Vec::with_capacity(cap);
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(buf)
}

/// Reads a `file:` secret after [`check_secret_file`].
pub(crate) fn read_secret_file(path: &Path) -> Result<Vec<u8>, RefError> {
    let size = check_secret_file(path)?;
    let mut bytes = read_bounded(path, MAX_SECRET_BYTES, size).map_err(|e| {
        ref_err(
            "secret-file-missing",
            format!("secret file {} cannot be read: {e}", path.display()),
        )
    })?;
    // An editor's final newline is not part of the secret.
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

/// Reads a non-secret file (certificate, CA bundle): must exist and be a regular file.
pub(crate) fn read_public_file(path: &Path) -> Result<Vec<u8>, RefError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ref_err("file-missing", format!("file {shown} does not exist"))
        }
        _ => ref_err("file-missing", format!("file {shown} cannot be read: {e}")),
    })?;
    if !meta.is_file() {
        return Err(ref_err(
            "file-missing",
            format!("{shown} is not a regular file"),
        ));
    }
    read_bounded(path, MAX_PUBLIC_FILE_BYTES, meta.len())
        .map_err(|e| ref_err("file-missing", format!("file {shown} cannot be read: {e}")))
}

/// Resolves a secret reference. `allow_literal = false` refuses a value written into the
/// config file itself.
pub(crate) fn resolve(
    value: &str,
    dir: Option<&Path>,
    env: &[(String, String)],
    allow_literal: bool,
) -> Result<Secret, RefError> {
    match SecretRef::parse(value) {
        SecretRef::Env(name) => {
            read_env(name, env).map(|b| Secret::with_source(b, format!("env:{name}")))
        }
        SecretRef::File(p) => {
            if p.is_empty() {
                return Err(ref_err(
                    "secret-file-missing",
                    "`file:` needs a path, e.g. file:/etc/rampart/tls.key".into(),
                ));
            }
            let path = resolve_path(p, dir);
            read_secret_file(&path)
                .map(|b| Secret::with_source(b, format!("file:{}", path.display())))
        }
        SecretRef::Literal(_) if !allow_literal => Err(ref_err(
            "secret-literal",
            "a secret here must be a reference, `file:PATH` or `env:NAME`, never the value itself"
                .into(),
        )),
        SecretRef::Literal("") => Err(ref_err("secret-literal", "empty secret".into())),
        SecretRef::Literal(s) => Ok(Secret::with_source(s.as_bytes().to_vec(), "literal")),
    }
}

/// Resolves an `env:NAME` or `file:PATH` reference given on a command line (e.g.
/// `rampart crypto rewrap --new-kek`) against the process environment, with the same
/// file rules as the configuration. A literal value is refused. The message names the
/// reference, never the value.
pub fn resolve_reference(value: &str) -> Result<Secret, String> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    resolve(value, None, &env, false).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn redacted_and_compared() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.to_string(), "[redacted]");
        assert_eq!(s.expose(), b"hunter2");
        assert_eq!(s.expose_str(), Some("hunter2"));
        assert!(s.ct_eq(b"hunter2"));
        assert!(!s.ct_eq(b"hunter3"));
        assert!(!s.ct_eq(b"hunter"));
        let c = s.clone();
        assert_eq!(c.expose(), s.expose());
    }

    #[test]
    fn refs() {
        assert_eq!(SecretRef::parse("env:X"), SecretRef::Env("X"));
        assert_eq!(SecretRef::parse("file:/a"), SecretRef::File("/a"));
        assert_eq!(SecretRef::parse("abc"), SecretRef::Literal("abc"));
        let env = vec![
            ("X".to_owned(), "v".to_owned()),
            ("E".to_owned(), String::new()),
        ];
        assert_eq!(resolve("env:X", None, &env, false).unwrap().expose(), b"v");
        assert!(
            resolve("env:E", None, &env, false)
                .unwrap_err()
                .message
                .contains("empty")
        );
        assert!(
            resolve("env:Y", None, &env, false)
                .unwrap_err()
                .message
                .contains("not set")
        );
        assert_eq!(
            resolve("abc", None, &env, false).unwrap_err().code,
            "secret-literal"
        );
        assert_eq!(
            resolve("abc", None, &env, true).unwrap().source(),
            "literal"
        );
    }
}
