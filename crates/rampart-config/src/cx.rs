//! The strict schema walker: typed getters over the merged tree that record a
//! [`Diagnostic`] (file, line, dotted key, what is valid) for every problem and keep going,
//! so one run reports everything.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Diagnostic, valid_hint};
use crate::model::Profile;
use crate::secret::{self, Secret};
use crate::tree::{Item, Node, Origin};

/// A table being read, with its dotted key.
#[derive(Clone, Copy)]
pub(crate) struct Tbl<'a> {
    pub map: &'a BTreeMap<String, Item>,
    pub item: &'a Item,
    pub path: &'a str,
}

impl<'a> Tbl<'a> {
    pub fn get(&self, k: &str) -> Option<&'a Item> {
        self.map.get(k)
    }

    pub fn key(&self, k: &str) -> String {
        join(self.path, k)
    }
}

pub(crate) fn join(parent: &str, k: &str) -> String {
    if parent.is_empty() {
        k.to_owned()
    } else {
        format!("{parent}.{k}")
    }
}

pub(crate) struct Cx<'e> {
    pub diags: Vec<Diagnostic>,
    pub warnings: Vec<String>,
    pub env: &'e [(String, String)],
    pub profile: Profile,
}

impl<'e> Cx<'e> {
    pub fn new(env: &'e [(String, String)]) -> Self {
        Cx {
            diags: Vec::new(),
            warnings: Vec::new(),
            env,
            profile: Profile::Prod,
        }
    }

    pub fn error_at(
        &mut self,
        at: &Origin,
        line: Option<usize>,
        key: &str,
        code: &'static str,
        msg: String,
    ) {
        self.diags.push(Diagnostic {
            file: at.file.to_string(),
            line,
            key: key.to_owned(),
            message: msg,
            code,
        });
    }

    /// An error about the value of `item`.
    pub fn error(&mut self, item: &Item, key: &str, msg: impl Into<String>) {
        self.error_code(item, key, "invalid-value", msg);
    }

    pub fn error_code(
        &mut self,
        item: &Item,
        key: &str,
        code: &'static str,
        msg: impl Into<String>,
    ) {
        let at = item.at.clone();
        self.error_at(&at, at.line, key, code, msg.into());
    }

    /// A required key is missing from table `t`.
    pub fn missing(&mut self, t: &Tbl<'_>, k: &str, what: &str) {
        let at = t.item.at.clone();
        self.error_at(
            &at,
            t.item.key_line,
            &t.key(k),
            "missing-key",
            format!("missing required key `{k}` ({what})"),
        );
    }

    pub fn warn(&mut self, msg: impl Into<String>) {
        self.warnings.push(msg.into());
    }

    fn type_error(&mut self, item: &Item, key: &str, expected: &str) {
        let hint = if item.at.file.starts_with("env:") && expected.contains("array") {
            "; write it as a TOML array, e.g. [\"a\", \"b\"]"
        } else {
            ""
        };
        self.error_code(
            item,
            key,
            "wrong-type",
            format!("expected {expected}, found {}{hint}", item.node.type_name()),
        );
    }

    /// `item` as a table whose keys must all be in `allowed`.
    pub fn table<'a>(
        &mut self,
        item: &'a Item,
        path: &'a str,
        allowed: &[&str],
    ) -> Option<Tbl<'a>> {
        let Node::Table(map) = &item.node else {
            self.type_error(item, path, "a table");
            return None;
        };
        for (k, v) in map {
            if !allowed.contains(&k.as_str()) {
                let at = v.at.clone();
                self.error_at(
                    &at,
                    v.key_line,
                    &join(path, k),
                    "unknown-key",
                    format!("unknown key{}", valid_hint(k, allowed)),
                );
            }
        }
        Some(Tbl { map, item, path })
    }

    /// `item` as a table with arbitrary names (e.g. `upstreams`).
    pub fn map<'a>(&mut self, item: &'a Item, path: &'a str) -> Option<&'a BTreeMap<String, Item>> {
        if let Node::Table(map) = &item.node {
            Some(map)
        } else {
            self.type_error(item, path, "a table");
            None
        }
    }

    pub fn str_of(&mut self, item: &Item, key: &str) -> Option<String> {
        match (&item.node, &item.env_raw) {
            (Node::Str(s), _) => Some(s.clone()),
            // An environment value that happened to parse as TOML, wanted as text.
            (Node::Int(_) | Node::Float | Node::Bool(_) | Node::Datetime, Some(raw)) => {
                Some(raw.clone())
            }
            _ => {
                self.type_error(item, key, "a string");
                None
            }
        }
    }

    pub fn opt_str(&mut self, t: &Tbl<'_>, k: &str) -> Option<String> {
        let item = t.get(k)?;
        self.str_of(item, &t.key(k))
    }

    /// A string that must not be empty.
    pub fn opt_nonempty(&mut self, t: &Tbl<'_>, k: &str) -> Option<String> {
        let item = t.get(k)?;
        let s = self.str_of(item, &t.key(k))?;
        if s.trim().is_empty() {
            self.error(item, &t.key(k), "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn int_of(&mut self, item: &Item, key: &str, min: i128, max: i128) -> Option<i128> {
        match item.node {
            Node::Int(Some(v)) if (min..=max).contains(&v) => Some(v),
            Node::Int(_) => {
                self.error_code(
                    item,
                    key,
                    "out-of-range",
                    format!("must be between {min} and {max}"),
                );
                None
            }
            _ => {
                self.type_error(item, key, "an integer");
                None
            }
        }
    }

    pub fn opt_u64(&mut self, t: &Tbl<'_>, k: &str, min: u64, max: u64) -> Option<u64> {
        let item = t.get(k)?;
        let v = self.int_of(item, &t.key(k), i128::from(min), i128::from(max))?;
        u64::try_from(v).ok()
    }

    pub fn opt_bool(&mut self, t: &Tbl<'_>, k: &str) -> Option<bool> {
        let item = t.get(k)?;
        if let Node::Bool(b) = item.node {
            Some(b)
        } else {
            self.type_error(item, &t.key(k), "a boolean (true or false)");
            None
        }
    }

    /// One of `valid`, compared exactly.
    pub fn opt_enum(
        &mut self,
        t: &Tbl<'_>,
        k: &str,
        valid: &[&'static str],
    ) -> Option<&'static str> {
        let item = t.get(k)?;
        let s = self.str_of(item, &t.key(k))?;
        self.enum_of(item, &t.key(k), &s, valid)
    }

    pub fn enum_of(
        &mut self,
        item: &Item,
        key: &str,
        s: &str,
        valid: &[&'static str],
    ) -> Option<&'static str> {
        if let Some(v) = valid.iter().find(|v| **v == s) {
            return Some(v);
        }
        self.error(
            item,
            key,
            format!("`{s}` is not allowed{}", valid_hint(s, valid)),
        );
        None
    }

    /// An array of strings, each with its item (for per-element errors).
    pub fn str_list<'a>(&mut self, item: &'a Item, key: &str) -> Option<Vec<(String, &'a Item)>> {
        let Node::Array(a) = &item.node else {
            self.type_error(item, key, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(a.len());
        let mut ok = true;
        for (i, e) in a.iter().enumerate() {
            match self.str_of(e, &format!("{key}[{i}]")) {
                Some(s) => out.push((s, e)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub fn opt_str_list<'a>(&mut self, t: &Tbl<'a>, k: &str) -> Option<Vec<(String, &'a Item)>> {
        let item = t.get(k)?;
        self.str_list(item, &t.key(k))
    }

    /// A secret reference (`env:`/`file:`; a literal only where `allow_literal`).
    pub fn opt_secret(&mut self, t: &Tbl<'_>, k: &str, allow_literal: bool) -> Option<Secret> {
        let item = t.get(k)?;
        let key = t.key(k);
        let s = self.str_of(item, &key)?;
        let dir = item.at.dir.clone();
        match secret::resolve(&s, dir.as_deref(), self.env, allow_literal) {
            Ok(secret) => {
                if secret.source() == "literal" {
                    self.warn(format!(
                        "{key} is written literally in {}; prefer env:NAME or file:PATH",
                        item.at.file
                    ));
                }
                Some(secret)
            }
            Err(e) => {
                self.error_code(item, &key, e.code, e.message);
                None
            }
        }
    }

    /// A non-secret file, written as `file:PATH` or a plain path.
    pub fn opt_public_file(&mut self, t: &Tbl<'_>, k: &str) -> Option<(Vec<u8>, String)> {
        let item = t.get(k)?;
        let key = t.key(k);
        let s = self.str_of(item, &key)?;
        let raw = s.strip_prefix("file:").unwrap_or(&s);
        if raw.is_empty() {
            self.error(item, &key, "expected a path (`file:PATH` or `/path`)");
            return None;
        }
        if s.starts_with("env:") {
            self.error(
                item,
                &key,
                "expected a path (`file:PATH` or `/path`), not an env: reference",
            );
            return None;
        }
        let path = secret::resolve_path(raw, item.at.dir.as_deref());
        match secret::read_public_file(&path) {
            Ok(b) => Some((b, format!("file:{}", path.display()))),
            Err(e) => {
                self.error_code(item, &key, e.code, e.message);
                None
            }
        }
    }

    /// An absolute path without `..`.
    pub fn abs_path(&mut self, item: &Item, key: &str) -> Option<std::path::PathBuf> {
        let s = self.str_of(item, key)?;
        let p = Path::new(&s);
        if !p.is_absolute() {
            self.error(item, key, format!("`{s}` must be an absolute path"));
            return None;
        }
        match crate::dataroot::normalize(p) {
            Some(n) => Some(n),
            None => {
                self.error(item, key, format!("`{s}` must not contain `..`"));
                None
            }
        }
    }
}

/// A header name as written in config: a valid HTTP token, lower-cased.
pub(crate) fn header_name(cx: &mut Cx<'_>, t: &Tbl<'_>, k: &str) -> Option<String> {
    let item = t.get(k)?;
    let s = cx.str_of(item, &t.key(k))?;
    let lower = s.to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() || lower.is_empty() {
        cx.error(
            item,
            &t.key(k),
            format!("`{s}` is not a valid HTTP header name"),
        );
        return None;
    }
    Some(lower)
}
