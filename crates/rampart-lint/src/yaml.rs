//! YAML front end: a multi-document YAML stream into a small tree whose every node knows
//! its line and column, built on `saphyr-parser`'s event API (a maintained YAML 1.2
//! parser with spans and no `unsafe` of ours on top).
//!
//! Bounds, because a manifest may come from anywhere: nesting deeper than
//! [`MAX_DEPTH`] and more than [`MAX_NODES`] nodes (aliases count as many nodes as they
//! expand to, so a "billion laughs" stream stops early) are parse errors. Merge keys
//! (`<<: *anchor`, common in Compose files) are honoured by [`Node::get`].

use std::collections::BTreeMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted (Kubernetes manifests nest about 15 levels).
pub const MAX_DEPTH: usize = 256;
/// Most nodes in one stream, alias expansions included.
pub const MAX_NODES: usize = 1_000_000;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    fn from_span(s: &Span) -> Self {
        Pos {
            line: u32::try_from(s.start.line()).unwrap_or(u32::MAX).max(1),
            col: u32::try_from(s.start.col())
                .unwrap_or(u32::MAX)
                .saturating_add(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar and whether it was written plain (unquoted), which decides whether
    /// `true`, `null` or `10` are booleans, nulls and numbers.
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// Why a YAML stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.col, self.message)
    }
}

impl std::error::Error for YamlError {}

impl Node {
    fn count(&self) -> usize {
        match &self.value {
            Value::Scalar(..) => 1,
            Value::Seq(v) => 1 + v.iter().map(Node::count).sum::<usize>(),
            Value::Map(v) => 1 + v.iter().map(|(k, v)| k.count() + v.count()).sum::<usize>(),
        }
    }

    /// The scalar's text (any style).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s, true) if matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A YAML 1.2 boolean (plain `true`/`false` in any of the three spellings).
    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Value::Scalar(s, true) => match s.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// An integer (plain, or quoted digits: `runAsUser: "1000"` is still read as 1000 by
    /// people, and by some tools).
    pub fn as_i64(&self) -> Option<i64> {
        self.as_str().and_then(|s| s.trim().parse().ok())
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }

    /// The entry for `key` (key node and value), merge keys (`<<`) included; direct
    /// entries win over merged ones, earlier merges over later ones.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        let Value::Map(entries) = &self.value else {
            return None;
        };
        if let Some((k, v)) = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key) && !is_merge(k))
        {
            return Some((k, v));
        }
        for (k, v) in entries {
            if !is_merge(k) {
                continue;
            }
            let found = match &v.value {
                Value::Map(_) => v.entry(key),
                Value::Seq(items) => items.iter().find_map(|m| m.entry(key)),
                Value::Scalar(..) => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The value for `key` (see [`Node::entry`]).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The value at a path of keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        let mut cur = self;
        for k in keys {
            cur = cur.get(k)?;
        }
        Some(cur)
    }

    /// Every `(key, value)` of a mapping, merged entries included (direct ones first;
    /// a merged key that is also written directly is left out).
    pub fn entries(&self) -> Vec<(&Node, &Node)> {
        let Value::Map(entries) = &self.value else {
            return Vec::new();
        };
        let mut out: Vec<(&Node, &Node)> = entries
            .iter()
            .filter(|(k, _)| !is_merge(k))
            .map(|(k, v)| (k, v))
            .collect();
        let mut seen: std::collections::BTreeSet<Option<&str>> =
            out.iter().map(|(k, _)| k.as_str()).collect();
        for (k, v) in entries {
            if !is_merge(k) {
                continue;
            }
            let merged: Vec<&Node> = match &v.value {
                Value::Map(_) => vec![v],
                Value::Seq(items) => items.iter().collect(),
                Value::Scalar(..) => Vec::new(),
            };
            for m in merged {
                for (mk, mv) in m.entries() {
                    if seen.insert(mk.as_str()) {
                        out.push((mk, mv));
                    }
                }
            }
        }
        out
    }
}

fn is_merge(k: &Node) -> bool {
    matches!(&k.value, Value::Scalar(s, true) if s == "<<")
}

enum Frame {
    Seq(Node, usize),
    /// The mapping, its anchor, and a key waiting for its value.
    Map(Node, usize, Option<Node>),
}

/// One document of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: Node,
}

/// Parses a multi-document YAML stream. Empty documents are left out.
pub fn parse_stream(text: &str) -> Result<Vec<Document>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: BTreeMap<usize, (Node, usize)> = BTreeMap::new();
    let mut nodes: usize = 0;
    let mut last = Pos { line: 1, col: 1 };
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| YamlError {
            pos: Pos {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX).max(1),
                col: u32::try_from(e.marker().col())
                    .unwrap_or(u32::MAX)
                    .saturating_add(1),
            },
            message: e.info().to_owned(),
        })?;
        let pos = Pos::from_span(&span);
        last = pos;
        let done: Option<(Node, usize)> = match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd => None,
            Event::DocumentStart(_) | Event::DocumentEnd => {
                anchors.clear();
                None
            }
            Event::Alias(id) => {
                let (node, size) = anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos,
                    message: "alias to an unknown anchor".into(),
                })?;
                nodes = nodes.saturating_add(size);
                if nodes > MAX_NODES {
                    return Err(too_many(pos));
                }
                Some((node, 0))
            }
            Event::Scalar(s, style, anchor, _tag) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(too_many(pos));
                }
                let node = Node {
                    value: Value::Scalar(s.into_owned(), style == ScalarStyle::Plain),
                    pos,
                };
                Some((node, anchor))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(too_many(pos));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        pos,
                        message: format!("nested deeper than {MAX_DEPTH} levels"),
                    });
                }
                let frame = if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq(
                        Node {
                            value: Value::Seq(Vec::new()),
                            pos,
                        },
                        anchor,
                    )
                } else {
                    Frame::Map(
                        Node {
                            value: Value::Map(Vec::new()),
                            pos,
                        },
                        anchor,
                        None,
                    )
                };
                stack.push(frame);
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(n, a) | Frame::Map(n, a, None)) => Some((n, a)),
                Some(Frame::Map(_, _, Some(_))) | None => {
                    return Err(YamlError {
                        pos,
                        message: "unbalanced YAML events".into(),
                    });
                }
            },
        };
        let Some((node, anchor)) = done else {
            continue;
        };
        if anchor != 0 {
            let size = node.count();
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => docs.push(Document { root: node }),
            Some(Frame::Seq(seq, _)) => {
                if let Value::Seq(v) = &mut seq.value {
                    v.push(node);
                }
            }
            Some(Frame::Map(map, _, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if let Value::Map(v) = &mut map.value {
                        v.push((key, node));
                    }
                }
            },
        }
    }
    if !stack.is_empty() {
        return Err(YamlError {
            pos: last,
            message: "unexpected end of the YAML stream".into(),
        });
    }
    docs.retain(|d| !d.root.is_null());
    Ok(docs)
}

fn too_many(pos: Pos) -> YamlError {
    YamlError {
        pos,
        message: format!("more than {MAX_NODES} nodes (aliases expanded)"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn positions_and_merge_keys() {
        let text =
            "a: 1\nb:\n  - x: &base\n      k: v\n    y: [1, 2]\nc:\n  <<: *base\n  z: true\n";
        let docs = parse_stream(text).unwrap();
        assert_eq!(docs.len(), 1);
        let root = &docs[0].root;
        let (k, v) = root.entry("a").unwrap();
        assert_eq!((k.pos.line, k.pos.col), (1, 1));
        assert_eq!(v.as_i64(), Some(1));
        let b = root.get("b").unwrap().as_seq().unwrap();
        assert_eq!(b[0].pos, Pos { line: 3, col: 5 });
        assert_eq!(root.path(&["c", "k"]).unwrap().as_str(), Some("v"));
        assert_eq!(root.path(&["c", "z"]).unwrap().as_bool(), Some(true));
        assert_eq!(root.get("c").unwrap().entries().len(), 2);
    }

    #[test]
    fn multi_document_and_quoted_booleans() {
        let docs = parse_stream("---\na: \"true\"\n---\n---\nb: false\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].root.get("a").unwrap().as_bool(), None);
        assert_eq!(docs[1].root.get("b").unwrap().as_bool(), Some(false));
        assert_eq!(docs[1].root.pos.line, 5);
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            text.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let err = parse_stream(&text).unwrap_err();
        assert!(err.message.contains("nodes"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(MAX_DEPTH + 10);
        assert!(parse_stream(&text).is_err());
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse_stream("a: b\n c: d\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
    }

    proptest::proptest! {
        /// Block mappings written line by line come back with every key on its line and
        /// column, and every value under its key.
        #[test]
        fn block_mappings_round_trip(
            entries in proptest::collection::btree_map("k[a-z]{0,6}", proptest::option::of("[a-z0-9]{1,8}"), 1..20),
            indent in 0usize..4,
        ) {
            let pad = " ".repeat(indent);
            let mut text = String::from("root:\n");
            for (k, v) in &entries {
                match v {
                    Some(v) => text.push_str(&format!("  {pad}{k}: v{v}\n")),
                    None => text.push_str(&format!("  {pad}{k}:\n  {pad}  inner: [1, {{a: b}}]\n")),
                }
            }
            let docs = parse_stream(&text).unwrap();
            let root = docs[0].root.get("root").unwrap();
            let mut line = 2u32;
            for (k, v) in &entries {
                let (key, value) = root.entry(k).unwrap();
                proptest::prop_assert_eq!(key.pos, Pos { line, col: 3 + indent as u32 });
                match v {
                    Some(v) => {
                        let want = format!("v{v}");
                        proptest::prop_assert_eq!(value.as_str(), Some(want.as_str()));
                        line += 1;
                    }
                    None => {
                        let inner = value.get("inner").unwrap().as_seq().unwrap();
                        proptest::prop_assert_eq!(inner[1].get("a").unwrap().as_str(), Some("b"));
                        line += 2;
                    }
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in "([-:\\[\\]{},&*!|>'\"#?<@` a-z0-9]|\n){0,200}") {
            let _ = parse_stream(&s);
        }
    }
}
