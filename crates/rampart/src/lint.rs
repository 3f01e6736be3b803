//! `rampart lint PATH…`: hardening conformance of Dockerfiles, Compose files and
//! Kubernetes manifests (the rules live in `rampart-lint`).

use std::io::Write as _;
use std::path::PathBuf;

use rampart_lint::{Severity, output};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Note,
}

impl From<FailOn> for Severity {
    fn from(f: FailOn) -> Self {
        match f {
            FailOn::Error => Severity::Error,
            FailOn::Warning => Severity::Warning,
            FailOn::Note => Severity::Note,
        }
    }
}

fn emit(s: &str) -> u8 {
    // A closed pipe (`rampart lint … | head`) is not a lint failure worth a panic.
    match std::io::stdout().lock().write_all(s.as_bytes()) {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

pub fn run(paths: &[PathBuf], format: Format, fail_on: FailOn, list_rules: bool) -> u8 {
    if list_rules {
        return match format {
            Format::Json | Format::Sarif => emit(&format!("{:#}\n", output::rules_json())),
            Format::Text => emit(&output::rules_text()),
        };
    }
    if paths.is_empty() {
        eprintln!("rampart lint: name at least one file or directory (or --list-rules)");
        return 2;
    }
    let report = rampart_lint::lint_paths(paths);
    let code = report.exit_code(fail_on.into());
    let out = match format {
        Format::Text => {
            for e in &report.errors {
                eprintln!("rampart lint: {}: {}", e.file, e.message);
            }
            let mut s = output::text(&report);
            let count = |sev: Severity| {
                report
                    .findings
                    .iter()
                    .filter(|f| f.severity() == sev)
                    .count()
            };
            s.push_str(&format!(
                "{} file(s): {} error(s), {} warning(s), {} note(s){}\n",
                report.files,
                count(Severity::Error),
                count(Severity::Warning),
                count(Severity::Note),
                if report.errors.is_empty() {
                    String::new()
                } else {
                    format!(", {} input(s) could not be linted", report.errors.len())
                }
            ));
            s
        }
        Format::Json => format!("{:#}\n", output::json(&report)),
        Format::Sarif => format!("{:#}\n", output::sarif(&report)),
    };
    let w = emit(&out);
    code.max(w)
}
