//! `rampart lint`: hardening conformance of Dockerfiles, Docker Compose files and
//! Kubernetes manifests, the automated check the security documents ask for ("flag
//! services missing required hardening fields").
//!
//! # What it guards against
//!
//! Deployments that quietly give a compromised process more than it needs: containers
//! that may run as root, writable root file systems, kept capabilities, privilege
//! escalation, no seccomp, shared host namespaces, host mounts of `/`, `/proc`, the
//! Docker socket and the like, missing limits and health checks, mutable image
//! references, credentials written into manifests, namespaces without a
//! NetworkPolicy, and fat or unverified Dockerfiles. Each rule has a stable id
//! (`RP001`…, see [`rules::ALL`]) with a rationale and a fix.
//!
//! # What it trusts
//!
//! Nothing in the files: they are parsed with bounds (file size, YAML depth and node
//! count, alias expansion) and never executed, fetched or resolved. Images are judged by
//! their reference, not by pulling them. A finding's message never echoes more than
//! [`secrets::SHOWN_PREFIX`] characters of a detected secret.
//!
//! ```
//! let report = rampart_lint::lint_source("Dockerfile", "FROM alpine:latest\nRUN true\n");
//! let ids: Vec<_> = report.findings.iter().map(|f| (f.rule.id, f.line)).collect();
//! assert!(ids.contains(&("RP013", 1)));
//! assert!(ids.contains(&("RP001", 1)));
//! ```

#![forbid(unsafe_code)]

mod compose;
mod docker;
pub mod dockerfile;
pub mod image;
mod k8s;
pub mod output;
pub mod rules;
pub mod secrets;
mod suppress;
pub mod yaml;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

pub use rules::{Rule, Severity};
pub use secrets::RAMPART_API_KEY_PREFIX;

/// Largest file read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Deepest directory walked.
pub const MAX_WALK_DEPTH: usize = 32;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    /// 1-based; 1 for a finding about a whole file.
    pub line: u32,
    /// 1-based.
    pub column: u32,
    pub rule: &'static Rule,
    pub message: String,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.rule.severity
    }
}

/// An input that could not be linted: missing, unreadable or unparsable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: String,
    pub message: String,
}

/// What kind of file an input is, detected by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dockerfile,
    Compose,
    Kubernetes,
}

/// The result of one run over any number of inputs.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub errors: Vec<InputError>,
    /// Files linted (of a known kind).
    pub files: usize,
}

impl Report {
    /// Exit code (DESIGN.md §2): 2 when an input failed, else 1 when a finding is at or
    /// above `fail_on`, else 0. 2 wins over 1.
    pub fn exit_code(&self, fail_on: Severity) -> u8 {
        if !self.errors.is_empty() {
            2
        } else if self.findings.iter().any(|f| f.severity() >= fail_on) {
            1
        } else {
            0
        }
    }
}

/// Collects findings for one file.
pub(crate) struct Sink {
    file: String,
    pub findings: Vec<Finding>,
}

impl Sink {
    pub fn new(file: &str) -> Self {
        Sink {
            file: file.to_owned(),
            findings: Vec::new(),
        }
    }

    pub fn push(&mut self, rule: &'static Rule, pos: yaml::Pos, message: impl Into<String>) {
        self.findings.push(Finding {
            file: self.file.clone(),
            line: pos.line.max(1),
            column: pos.col.max(1),
            rule,
            message: message.into(),
        });
    }
}

/// A workload or NetworkPolicy seen in a Kubernetes manifest.
#[derive(Debug, Clone)]
pub(crate) struct NsFact {
    pub namespace: String,
    pub file: String,
    pub pos: yaml::Pos,
    pub is_policy: bool,
}

/// The result of linting one text.
struct FileResult {
    kind: Option<Kind>,
    findings: Vec<Finding>,
    facts: Vec<NsFact>,
}

fn is_yaml_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(".yaml") || n.ends_with(".yml")
}

fn is_dockerfile_name(name: &str) -> bool {
    let base = Path::new(name)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
        .to_ascii_lowercase();
    base.starts_with("dockerfile")
        || base.starts_with("containerfile")
        || base.ends_with(".dockerfile")
}

/// Detects the kind of `text` and lints it. `Ok(None)` kind: not a file this linter
/// knows. `Err`: it should have been one (by name or by content) but does not parse.
fn lint_one(name: &str, text: &str) -> Result<FileResult, String> {
    if dockerfile::looks_like(text) || (is_dockerfile_name(name) && !is_yaml_name(name)) {
        match dockerfile::parse(text) {
            Ok(ins) => {
                let mut sink = Sink::new(name);
                docker::check(&ins, &mut sink);
                return Ok(FileResult {
                    kind: Some(Kind::Dockerfile),
                    findings: sink.findings,
                    facts: Vec::new(),
                });
            }
            Err(e) if dockerfile::looks_like(text) || is_dockerfile_name(name) => {
                return Err(format!("not a valid Dockerfile: {e}"));
            }
            Err(_) => {}
        }
    }
    let docs = match yaml::parse_stream(text) {
        Ok(d) => d,
        Err(e) => return Err(format!("not valid YAML: {e}")),
    };
    let mut sink = Sink::new(name);
    let mut facts = Vec::new();
    if docs.iter().any(|d| k8s::is_manifest(&d.root)) {
        for d in &docs {
            k8s::check(&d.root, name, &mut sink, &mut facts);
        }
        return Ok(FileResult {
            kind: Some(Kind::Kubernetes),
            findings: sink.findings,
            facts,
        });
    }
    if let [d] = docs.as_slice()
        && compose::is_compose(&d.root)
    {
        compose::check(&d.root, &mut sink);
        return Ok(FileResult {
            kind: Some(Kind::Compose),
            findings: sink.findings,
            facts,
        });
    }
    Ok(FileResult {
        kind: None,
        findings: Vec::new(),
        facts,
    })
}

/// Lints one text as if it were a named file (kind detected by content), with its
/// suppressions applied and, for Kubernetes, the NetworkPolicy rule evaluated on this
/// text alone.
pub fn lint_source(name: &str, text: &str) -> Report {
    let mut run = Run::default();
    run.add_text(name, text, true);
    run.finish()
}

/// Lints files and directories (recursively; hidden directories, `target` and
/// `node_modules` are not entered, symbolic links are not followed in walks).
pub fn lint_paths(paths: &[PathBuf]) -> Report {
    let mut run = Run::default();
    for p in paths {
        run.add_path(p);
    }
    run.finish()
}

#[derive(Default)]
struct Run {
    report: Report,
    facts: Vec<NsFact>,
    suppressions: BTreeMap<String, Vec<suppress::Directive>>,
}

fn read_limited(p: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(p).map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(buf)
}

impl Run {
    fn error(&mut self, file: &str, message: String) {
        self.report.errors.push(InputError {
            file: file.to_owned(),
            message,
        });
    }

    fn add_path(&mut self, p: &Path) {
        let name = p.display().to_string();
        match std::fs::metadata(p) {
            Err(e) => self.error(&name, format!("cannot read: {e}")),
            Ok(m) if m.is_dir() => self.walk(p, 0),
            Ok(_) => self.add_file(p, true),
        }
    }

    fn walk(&mut self, dir: &Path, depth: usize) {
        let name = dir.display().to_string();
        if depth > MAX_WALK_DEPTH {
            self.error(
                &name,
                format!("nested deeper than {MAX_WALK_DEPTH} directories"),
            );
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.error(&name, format!("cannot read directory: {e}"));
                return;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let base = p
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            if meta.is_dir() {
                if base.starts_with('.') || base == "target" || base == "node_modules" {
                    continue;
                }
                self.walk(&p, depth + 1);
            } else if meta.is_file() {
                self.add_file(&p, false);
            }
        }
    }

    fn add_file(&mut self, p: &Path, named: bool) {
        let name = p.display().to_string();
        // In a walk, only files that may be ours are read at all: large binaries and
        // the like are skipped without opening them.
        let bytes = match read_limited(p) {
            Ok(b) => b,
            Err(e) if named || is_yaml_name(&name) || is_dockerfile_name(&name) => {
                self.error(&name, e);
                return;
            }
            Err(_) => return,
        };
        match String::from_utf8(bytes) {
            Ok(text) => self.add_text(&name, &text, named),
            Err(_) if named || is_yaml_name(&name) || is_dockerfile_name(&name) => {
                self.error(&name, "not UTF-8 text".into());
            }
            Err(_) => {}
        }
    }

    fn add_text(&mut self, name: &str, text: &str, named: bool) {
        match lint_one(name, text) {
            Ok(FileResult {
                kind: Some(_),
                findings,
                facts,
            }) => {
                self.report.files += 1;
                let (directives, bad) = suppress::parse(name, text);
                self.report.findings.extend(findings);
                self.report.findings.extend(bad);
                self.suppressions.insert(name.to_owned(), directives);
                self.facts.extend(facts);
            }
            Ok(FileResult { kind: None, .. }) => {
                if named {
                    self.error(
                        name,
                        "not a Dockerfile, Compose file or Kubernetes manifest".into(),
                    );
                }
            }
            Err(e) => {
                if named || is_yaml_name(name) || is_dockerfile_name(name) {
                    self.error(name, e);
                }
            }
        }
    }

    fn finish(mut self) -> Report {
        k8s::network_policies(&self.facts, &mut self.report.findings);
        let sup = &self.suppressions;
        self.report
            .findings
            .retain(|f| !suppress::suppressed(sup.get(&f.file).map(Vec::as_slice), f));
        // By file, then position; duplicates (one pod-level setting seen through
        // several containers) once.
        self.report.findings.sort_by(|a, b| {
            (
                a.file.as_str(),
                a.line,
                a.column,
                a.rule.id,
                a.message.as_str(),
            )
                .cmp(&(
                    b.file.as_str(),
                    b.line,
                    b.column,
                    b.rule.id,
                    b.message.as_str(),
                ))
        });
        self.report.findings.dedup();
        self.report
    }
}
