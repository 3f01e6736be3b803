//! Dockerfile front end: instructions with their line and column, continuation lines
//! joined, comments and parser directives skipped, heredocs (`RUN <<EOF … EOF`)
//! consumed so their bodies are never read as instructions.

use std::fmt;

/// Instructions of the Dockerfile reference; anything else is a parse error.
pub const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// Most instructions accepted in one file.
pub const MAX_INSTRUCTIONS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Upper-case keyword.
    pub keyword: String,
    /// Arguments, continuation lines joined with a space, heredoc bodies left out.
    pub args: String,
    /// 1-based line and column of the keyword.
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: u32,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

fn line_no(i: usize) -> u32 {
    u32::try_from(i.saturating_add(1)).unwrap_or(u32::MAX)
}

/// The escape character from a `# escape=` parser directive at the top, else `\`.
fn escape_char(lines: &[&str]) -> char {
    for l in lines {
        let t = l.trim();
        let Some(d) = t.strip_prefix('#') else {
            break;
        };
        let d = d.trim();
        if let Some((k, v)) = d.split_once('=') {
            if k.trim().eq_ignore_ascii_case("escape") {
                let v = v.trim();
                if v == "`" {
                    return '`';
                }
                return '\\';
            }
            continue;
        }
        break;
    }
    '\\'
}

/// Heredoc delimiters opened by `<<WORD`, `<<-WORD`, `<<"WORD"`, `<<'WORD'` in `args`,
/// with whether leading tabs are stripped (`<<-`).
fn heredocs(args: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some(i) = rest.find("<<") {
        rest = rest.get(i + 2..).unwrap_or("");
        let (strip, r) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let r = r.trim_start_matches(['"', '\'']);
        let word: String = r
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            out.push((word, strip));
        }
    }
    out
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Vec<Instruction>, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let escape = escape_char(&lines);
    let mut out = Vec::new();
    let mut i = 0usize;
    while let Some(raw) = lines.get(i) {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let col = u32::try_from(raw.len() - trimmed.len() + 1).unwrap_or(u32::MAX);
        let kw_len = trimmed
            .find(|c: char| c.is_whitespace())
            .unwrap_or(trimmed.len());
        let keyword = trimmed.get(..kw_len).unwrap_or("").to_ascii_uppercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(ParseError {
                line: line_no(start),
                message: format!(
                    "unknown instruction `{}`",
                    keyword.chars().take(32).collect::<String>()
                ),
            });
        }
        let mut args = String::new();
        let mut cur = trimmed.get(kw_len..).unwrap_or("").to_owned();
        loop {
            let t = cur.trim_end();
            if let Some(body) = t.strip_suffix(escape) {
                args.push_str(body.trim());
                args.push(' ');
                i += 1;
                // Comment and empty lines inside a continuation are skipped.
                loop {
                    match lines.get(i) {
                        Some(l) if l.trim_start().starts_with('#') => i += 1,
                        Some(l) if l.trim().is_empty() => i += 1,
                        _ => break,
                    }
                }
                match lines.get(i) {
                    Some(l) => cur = (*l).to_owned(),
                    None => break,
                }
            } else {
                args.push_str(t.trim());
                i += 1;
                break;
            }
        }
        let docs = if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            heredocs(&args)
        } else {
            Vec::new()
        };
        for (word, strip) in docs {
            loop {
                let Some(l) = lines.get(i) else {
                    return Err(ParseError {
                        line: line_no(start),
                        message: format!("heredoc `{word}` is not closed"),
                    });
                };
                i += 1;
                let l = if strip { l.trim_start_matches('\t') } else { l };
                if l.trim_end() == word {
                    break;
                }
            }
        }
        out.push(Instruction {
            keyword,
            args: args.trim().to_owned(),
            line: line_no(start),
            col,
        });
        if out.len() > MAX_INSTRUCTIONS {
            return Err(ParseError {
                line: line_no(start),
                message: format!("more than {MAX_INSTRUCTIONS} instructions"),
            });
        }
    }
    Ok(out)
}

/// Whether `text` reads as a Dockerfile: its first instruction is `FROM` or `ARG`
/// (comments, directives and blank lines before it are fine) and it has a `FROM`.
pub fn looks_like(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    let Some(first) = first else {
        return false;
    };
    let kw = first.split_whitespace().next().unwrap_or("");
    let kw_ok = kw.eq_ignore_ascii_case("FROM") || kw.eq_ignore_ascii_case("ARG");
    kw_ok
        && text.lines().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        })
}

/// Splits leading `--flag[=value]` words off an instruction's arguments.
pub fn split_flags(args: &str) -> (Vec<&str>, Vec<&str>) {
    let mut flags = Vec::new();
    let mut rest = Vec::new();
    for w in args.split_whitespace() {
        if rest.is_empty() && w.starts_with("--") {
            flags.push(w);
        } else {
            rest.push(w);
        }
    }
    (flags, rest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn continuations_comments_and_heredocs() {
        let text = "# syntax=docker/dockerfile:1\nFROM alpine:3 AS b\nRUN a \\\n# inside\n  && b\nRUN <<EOF\nFROM not-an-instruction\nEOF\n  user 10001\n";
        let ins = parse(text).unwrap();
        let kws: Vec<_> = ins.iter().map(|i| (i.keyword.as_str(), i.line)).collect();
        assert_eq!(kws, [("FROM", 2), ("RUN", 3), ("RUN", 6), ("USER", 9)]);
        assert_eq!(ins[1].args, "a && b");
        assert_eq!(ins[3].col, 3);
    }

    #[test]
    fn escape_directive() {
        let text = "# escape=`\nFROM scratch\nCOPY a `\n  b\n";
        let ins = parse(text).unwrap();
        assert_eq!(ins[1].args, "a b");
    }

    #[test]
    fn unknown_instruction_and_open_heredoc() {
        assert_eq!(parse("FROM a\nFROOM b\n").unwrap_err().line, 2);
        assert!(parse("FROM a\nRUN <<EOF\nx\n").is_err());
    }

    #[test]
    fn detection() {
        assert!(looks_like("# c\n\nARG X=1\nFROM a\n"));
        assert!(!looks_like("apiVersion: v1\nkind: Pod\n"));
        assert!(!looks_like("ARG only\n"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "(FROM|RUN|USER|ADD|#|<<EOF|EOF|\\\\|\n| |[a-z])*") {
            let _ = parse(&s);
        }
    }
}
