//! Configuration diagnostics: every problem names the file, the line, the dotted key and
//! what would have been valid, and all of them are reported at once.

use std::fmt;

/// One problem found while loading or validating configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (as given), or `env:RAMPART_…` for an environment override.
    pub file: String,
    /// 1-based line in `file`, when known.
    pub line: Option<usize>,
    /// Dotted key, e.g. `server.tls.client_auth` or `routes[2].methods`; empty for a
    /// syntax error that belongs to no key.
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
    /// Stable check name, e.g. `unknown-key`, `syntax`, `profile`, `secret-file-mode`.
    pub code: &'static str,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Every problem that stopped a configuration from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for d in &self.errors {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Levenshtein distance, bounded by the short key names it is used on.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        if let Some(c0) = cur.first_mut() {
            *c0 = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(usize::MAX / 2) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX / 2) + 1;
            let ins = cur.get(j).copied().unwrap_or(usize::MAX / 2) + 1;
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = sub.min(del).min(ins);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

/// The closest of `valid` to `got`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(got: &str, valid: &[&'a str]) -> Option<&'a str> {
    let got_l = got.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (edit_distance(&got_l, &v.to_ascii_lowercase()), *v))
        .filter(|(d, v)| *d <= (v.len().max(got_l.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// `; did you mean `x`? (valid: a, b, c)` for an unknown name.
pub(crate) fn valid_hint(got: &str, valid: &[&str]) -> String {
    let mut s = String::new();
    if let Some(m) = suggest(got, valid) {
        s.push_str(&format!("; did you mean `{m}`?"));
    }
    if !valid.is_empty() {
        s.push_str(&format!(" (valid: {})", valid.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn distance_and_suggestion() {
        assert_eq!(edit_distance("listne", "listen"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            suggest("listne", &["listen", "admin_listen"]),
            Some("listen")
        );
        assert_eq!(suggest("zzzzzzzz", &["listen"]), None);
        assert_eq!(
            suggest("trusted_host", &["trusted_hosts", "trusted_proxies"]),
            Some("trusted_hosts")
        );
    }

    #[test]
    fn display_line() {
        let d = Diagnostic {
            file: "cfg.toml".into(),
            line: Some(12),
            key: "server.listne".into(),
            message: "unknown key".into(),
            code: "unknown-key",
        };
        assert_eq!(d.to_string(), "cfg.toml:12: server.listne: unknown key");
    }
}
