//! The merged configuration tree: every value remembers the file and line it came from,
//! so a problem found after overlaying several files and the environment still points at
//! the line that set it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::Diagnostic;

/// Where a value was written.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// File name as given, or `env:RAMPART_…`.
    pub file: Arc<str>,
    pub line: Option<usize>,
    /// Directory of the file, for relative `file:` references.
    pub dir: Option<Arc<Path>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Str(String),
    /// `None` when the literal does not fit in an `i128`.
    Int(Option<i128>),
    Float,
    Bool(bool),
    Datetime,
    Array(Vec<Item>),
    Table(BTreeMap<String, Item>),
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Str(_) => "string",
            Node::Int(_) => "integer",
            Node::Float => "float",
            Node::Bool(_) => "boolean",
            Node::Datetime => "datetime",
            Node::Array(_) => "array",
            Node::Table(_) => "table",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub node: Node,
    /// Where the value is.
    pub at: Origin,
    /// Line of the key that introduced the value (for "unknown key").
    pub key_line: Option<usize>,
    /// The raw text of an environment override, so a key that wants a string can take
    /// `RAMPART_AUTH__JWT__ISSUER=true` literally.
    pub env_raw: Option<String>,
}

impl Item {
    pub fn empty_table(at: Origin) -> Self {
        Item {
            node: Node::Table(BTreeMap::new()),
            key_line: at.line,
            at,
            env_raw: None,
        }
    }
}

/// Byte offset → 1-based line.
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    pub fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

struct Conv<'a> {
    lines: &'a Lines,
    file: Arc<str>,
    dir: Option<Arc<Path>>,
}

impl Conv<'_> {
    fn origin(&self, offset: usize) -> Origin {
        Origin {
            file: Arc::clone(&self.file),
            line: Some(self.lines.line(offset)),
            dir: self.dir.clone(),
        }
    }

    fn value(&self, v: &Spanned<DeValue<'_>>, key_line: Option<usize>) -> Item {
        let at = self.origin(v.span().start);
        let key_line = key_line.or(at.line);
        let node = match v.get_ref() {
            DeValue::String(s) => Node::Str(s.to_string()),
            DeValue::Integer(i) => Node::Int(i128::from_str_radix(i.as_str(), i.radix()).ok()),
            DeValue::Float(_) => Node::Float,
            DeValue::Boolean(b) => Node::Bool(*b),
            DeValue::Datetime(_) => Node::Datetime,
            DeValue::Array(a) => Node::Array(a.iter().map(|e| self.value(e, None)).collect()),
            DeValue::Table(t) => Node::Table(self.table(t)),
        };
        Item {
            node,
            at,
            key_line,
            env_raw: None,
        }
    }

    fn table(&self, t: &DeTable<'_>) -> BTreeMap<String, Item> {
        t.iter()
            .map(|(k, v)| {
                let kl = self.lines.line(k.span().start);
                (k.get_ref().to_string(), self.value(v, Some(kl)))
            })
            .collect()
    }
}

/// Parses one TOML document into a tree, or reports every syntax error in it.
pub(crate) fn parse_file(
    name: &str,
    dir: Option<Arc<Path>>,
    text: &str,
) -> Result<Item, Vec<Diagnostic>> {
    let lines = Lines::new(text);
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| Diagnostic {
                file: name.to_owned(),
                line: e.span().map(|s| lines.line(s.start)),
                key: String::new(),
                message: format!("TOML syntax error: {}", e.message().trim_end()),
                code: "syntax",
            })
            .collect());
    }
    let conv = Conv {
        lines: &lines,
        file: Arc::from(name),
        dir,
    };
    let at = conv.origin(0);
    Ok(Item {
        node: Node::Table(conv.table(doc.get_ref())),
        key_line: at.line,
        at,
        env_raw: None,
    })
}

/// Parses an environment value: TOML if it is a TOML value, else the raw string.
pub(crate) fn parse_env_value(var: &str, raw: &str) -> Item {
    let at = Origin {
        file: Arc::from(format!("env:{var}")),
        line: None,
        dir: None,
    };
    let (v, errors) = DeValue::parse_recoverable(raw);
    let node = if errors.is_empty() {
        let lines = Lines::new(raw);
        let conv = Conv {
            lines: &lines,
            file: Arc::clone(&at.file),
            dir: None,
        };
        strip_lines(conv.value(&v, None), &at)
    } else {
        Node::Str(raw.to_owned())
    };
    Item {
        node,
        at,
        key_line: None,
        env_raw: Some(raw.to_owned()),
    }
}

/// An environment value has no lines: give every nested item the variable's origin.
fn strip_lines(item: Item, at: &Origin) -> Node {
    match item.node {
        Node::Array(a) => Node::Array(
            a.into_iter()
                .map(|i| Item {
                    at: at.clone(),
                    key_line: None,
                    env_raw: None,
                    node: strip_lines(i, at),
                })
                .collect(),
        ),
        Node::Table(t) => Node::Table(
            t.into_iter()
                .map(|(k, i)| {
                    let node = strip_lines(i, at);
                    (
                        k,
                        Item {
                            at: at.clone(),
                            key_line: None,
                            env_raw: None,
                            node,
                        },
                    )
                })
                .collect(),
        ),
        other => other,
    }
}

/// Overlays `over` on `base`: tables merge key by key; anything else (arrays included)
/// is replaced wholesale.
pub(crate) fn merge(base: &mut Item, over: Item) {
    match (&mut base.node, over.node) {
        (Node::Table(b), Node::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (_, node) => {
            *base = Item {
                node,
                at: over.at,
                key_line: over.key_line,
                env_raw: over.env_raw,
            };
        }
    }
}

/// Sets `path` (non-empty) in `root` to `value`, creating tables on the way.
pub(crate) fn set_path(root: &mut Item, path: &[String], value: Item) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for seg in parents {
        if !matches!(cur.node, Node::Table(_)) {
            *cur = Item::empty_table(value.at.clone());
        }
        let Node::Table(t) = &mut cur.node else {
            return;
        };
        cur = t
            .entry(seg.clone())
            .or_insert_with(|| Item::empty_table(value.at.clone()));
    }
    if !matches!(cur.node, Node::Table(_)) {
        *cur = Item::empty_table(value.at.clone());
    }
    if let Node::Table(t) = &mut cur.node {
        match t.get_mut(last) {
            Some(existing) => merge(existing, value),
            None => {
                t.insert(last.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn get<'a>(i: &'a Item, k: &str) -> &'a Item {
        match &i.node {
            Node::Table(t) => &t[k],
            _ => panic!("not a table"),
        }
    }

    #[test]
    fn lines_from_offsets() {
        let l = Lines::new("a\nbb\n\nc");
        assert_eq!(l.line(0), 1);
        assert_eq!(l.line(1), 1);
        assert_eq!(l.line(2), 2);
        assert_eq!(l.line(5), 3);
        assert_eq!(l.line(6), 4);
    }

    #[test]
    fn key_and_value_lines() {
        let t = parse_file(
            "x.toml",
            None,
            "a = 1\n[server]\n\nlisten = \"x\"\n[[routes]]\nid = \"r\"\n",
        )
        .unwrap();
        let s = get(&t, "server");
        let l = get(s, "listen");
        assert_eq!(l.key_line, Some(4));
        assert_eq!(l.at.line, Some(4));
        let Node::Array(r) = &get(&t, "routes").node else {
            panic!()
        };
        assert_eq!(get(&r[0], "id").key_line, Some(6));
    }

    #[test]
    fn merge_tables_replace_arrays() {
        let mut a = parse_file("a", None, "[s]\nx = 1\ny = [1, 2]\n").unwrap();
        let b = parse_file("b", None, "[s]\ny = [3]\nz = true\n").unwrap();
        merge(&mut a, b);
        let s = get(&a, "s");
        assert!(matches!(get(s, "x").node, Node::Int(Some(1))));
        assert!(matches!(&get(s, "y").node, Node::Array(v) if v.len() == 1));
        assert_eq!(&*get(s, "y").at.file, "b");
        assert!(matches!(get(s, "z").node, Node::Bool(true)));
    }

    #[test]
    fn env_values() {
        assert!(matches!(
            parse_env_value("V", "8443").node,
            Node::Int(Some(8443))
        ));
        assert!(matches!(
            parse_env_value("V", "0.0.0.0:1").node,
            Node::Str(_)
        ));
        assert!(matches!(
            parse_env_value("V", "[\"a\"]").node,
            Node::Array(_)
        ));
    }
}
