//! `rampart check`: every configuration, profile, data-root, secret-file and key-material
//! check, without serving.

use std::path::PathBuf;

use rampart_config::{Finding, Severity};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(paths: &[PathBuf], format: Format) -> u8 {
    let mut report = rampart_config::check(paths);
    // Key material: the TLS certificate and key must load into rustls.
    if let Some(tls) = report.config.as_ref().and_then(|c| c.server.tls.as_ref())
        && let Err(e) = rampart_proxy::tls::server_config(tls)
    {
        report.findings.push(Finding {
            severity: Severity::Error,
            code: "tls-material",
            path: "server.tls".into(),
            message: e.to_string(),
        });
    }
    let code = report.exit_code();
    match format {
        Format::Text => {
            for f in &report.findings {
                eprintln!("{}: [{}] {}: {}", f.severity, f.code, f.path, f.message);
            }
            let errors = report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            match code {
                0 => println!(
                    "ok: configuration and data roots pass ({} finding(s))",
                    report.findings.len()
                ),
                1 => println!("FAIL: {errors} check(s) failed"),
                _ => println!("FAIL: the configuration cannot be loaded"),
            }
        }
        Format::Json => {
            let v: Vec<serde_json::Value> = report
                .findings
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "severity": f.severity.to_string(),
                        "code": f.code,
                        "path": f.path,
                        "message": f.message,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({ "exit_code": code, "findings": v })
            );
        }
    }
    u8::try_from(code).unwrap_or(2)
}
