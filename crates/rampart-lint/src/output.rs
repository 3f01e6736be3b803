//! Report formats: text for people, JSON for scripts, SARIF 2.1.0 for code-scanning
//! tools; and the rule listing.

use serde_json::{Value, json};

use crate::rules::{ALL, Rule};
use crate::{Finding, Report};

/// `file:line:col: severity[RPnnn] message`, one line per finding (input errors are
/// the caller's to print, on stderr).
pub fn text(report: &Report) -> String {
    let mut s = String::new();
    for f in &report.findings {
        s.push_str(&format!(
            "{}:{}:{}: {}[{}] {}\n",
            f.file, f.line, f.column, f.rule.severity, f.rule.id, f.message
        ));
    }
    s
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "file": f.file,
        "line": f.line,
        "column": f.column,
        "rule": f.rule.id,
        "severity": f.rule.severity.as_str(),
        "message": f.message,
    })
}

/// `{"findings": [{"file","line","column","rule","severity","message"}], "errors":
/// [{"file","message"}]}`.
pub fn json(report: &Report) -> Value {
    json!({
        "findings": report.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "errors": report.errors.iter().map(|e| json!({"file": e.file, "message": e.message})).collect::<Vec<_>>(),
    })
}

/// A relative or absolute file path as a URI reference (RFC 3986): unreserved
/// characters and `/` kept, everything else percent-encoded; absolute paths get
/// `file://`.
pub fn path_uri(path: &str) -> String {
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn rule_json_sarif(r: &Rule) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": r.rationale},
        "help": {"text": r.fix},
        "defaultConfiguration": {"level": r.severity.as_str()},
    })
}

/// SARIF 2.1.0: one run, the whole rule table as the driver's rules, one result per
/// finding with file, line and column; input errors as tool execution notifications.
pub fn sarif(report: &Report) -> Value {
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let index = ALL.iter().position(|r| r.id == f.rule.id).unwrap_or(0);
            json!({
                "ruleId": f.rule.id,
                "ruleIndex": index,
                "level": f.rule.severity.as_str(),
                "message": {"text": f.message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": path_uri(&f.file)},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }],
            })
        })
        .collect();
    let notes: Vec<Value> = report
        .errors
        .iter()
        .map(|e| {
            json!({
                "level": "error",
                "message": {"text": format!("{}: {}", e.file, e.message)},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": path_uri(&e.file)}}}],
            })
        })
        .collect();
    json!({
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "rampart-lint",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": ALL.iter().map(rule_json_sarif).collect::<Vec<_>>(),
            }},
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "toolExecutionNotifications": notes,
            }],
            "results": results,
        }],
    })
}

/// Every rule: id, severity, title, rationale, fix.
pub fn rules_text() -> String {
    let mut s = String::new();
    for r in ALL {
        s.push_str(&format!(
            "{} {} ({}): {}\n    why: {}\n    fix: {}\n",
            r.id, r.severity, r.name, r.title, r.rationale, r.fix
        ));
    }
    s
}

/// `{"rules": [{"id","name","severity","title","rationale","fix"}]}`.
pub fn rules_json() -> Value {
    json!({
        "rules": ALL.iter().map(|r| json!({
            "id": r.id,
            "name": r.name,
            "severity": r.severity.as_str(),
            "title": r.title,
            "rationale": r.rationale,
            "fix": r.fix,
        })).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(path_uri("deploy/k8s/a b.yaml"), "deploy/k8s/a%20b.yaml");
        assert_eq!(path_uri("/abs/x"), "file:///abs/x");
    }
}
