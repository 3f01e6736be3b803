//! Inline suppressions: `# rampart-lint: ignore RP004,RP007 reason="…"` on the line
//! above a finding (a comment line of its own) or at the end of the finding's line. A
//! suppression without a non-empty reason suppresses nothing and is itself reported
//! (RP020); so is one naming an unknown rule.

use crate::rules::{self, BAD_SUPPRESSION};
use crate::yaml::Pos;
use crate::{Finding, Sink};

const MARKER: &str = "rampart-lint:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub line: u32,
    /// The directive is the only thing on its line (it may then cover the next line).
    pub own_line: bool,
    pub ids: Vec<String>,
}

/// Parses `ignore ID[,ID…] reason="…"`; `Err` says what is wrong.
fn parse_body(body: &str) -> Result<Vec<String>, String> {
    let body = body.trim();
    let rest = body
        .strip_prefix("ignore")
        .ok_or_else(|| "expected `ignore RPnnn[,RPnnn] reason=\"…\"`".to_owned())?;
    let (ids_part, reason_part) = match rest.find("reason=") {
        Some(i) => (
            rest.get(..i).unwrap_or(""),
            Some(rest.get(i + 7..).unwrap_or("")),
        ),
        None => (rest, None),
    };
    let ids: Vec<String> = ids_part
        .split([',', ' ', '\t'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err("names no rule id".into());
    }
    if let Some(bad) = ids.iter().find(|id| rules::by_id(id).is_none()) {
        return Err(format!(
            "unknown rule id `{}`",
            bad.chars().take(16).collect::<String>()
        ));
    }
    let reason = reason_part.map(str::trim).and_then(|r| {
        let r = r.strip_prefix('"')?;
        let end = r.find('"')?;
        Some(r.get(..end).unwrap_or("").trim().to_owned())
    });
    match reason {
        Some(r) if !r.is_empty() => Ok(ids),
        _ => Err("has no reason=\"…\"; it suppresses nothing".into()),
    }
}

/// The valid directives of a file, and a finding for each invalid one.
pub(crate) fn parse(file: &str, text: &str) -> (Vec<Directive>, Vec<Finding>) {
    let mut ok = Vec::new();
    let mut sink = Sink::new(file);
    for (i, l) in text.lines().enumerate() {
        let Some(m) = l.find(MARKER) else {
            continue;
        };
        let before = l.get(..m).unwrap_or("");
        let Some(hash) = before.rfind('#') else {
            continue;
        };
        if !before.get(hash + 1..).unwrap_or("").trim().is_empty() {
            continue;
        }
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        match parse_body(l.get(m + MARKER.len()..).unwrap_or("")) {
            Ok(ids) => ok.push(Directive {
                line,
                own_line: before.get(..hash).unwrap_or("").trim().is_empty(),
                ids,
            }),
            Err(why) => sink.push(
                &BAD_SUPPRESSION,
                Pos {
                    line,
                    col: u32::try_from(hash + 1).unwrap_or(u32::MAX),
                },
                format!("suppression {why}"),
            ),
        }
    }
    (ok, sink.findings)
}

/// Whether a valid directive covers `f`.
pub(crate) fn suppressed(directives: Option<&[Directive]>, f: &Finding) -> bool {
    if f.rule.id == BAD_SUPPRESSION.id {
        return false;
    }
    directives.unwrap_or_default().iter().any(|d| {
        let covers = d.line == f.line || (d.own_line && d.line.saturating_add(1) == f.line);
        covers && d.ids.iter().any(|id| id == f.rule.id)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn directives() {
        let text = "a\n# rampart-lint: ignore RP004, RP007 reason=\"needs it\"\nimage: x # rampart-lint: ignore RP013 reason=\"ok\"\n# rampart-lint: ignore RP001\n# rampart-lint: ignore RP999 reason=\"x\"\n";
        let (ok, bad) = parse("f", text);
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].ids, ["RP004", "RP007"]);
        assert!(ok[0].own_line);
        assert!(!ok[1].own_line);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].line, 4);
        assert_eq!(bad[0].rule.id, "RP020");
        assert!(bad[1].message.contains("unknown rule id"));
    }
}
