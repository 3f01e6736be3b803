//! `rampart check`: configuration errors, profile rules, data roots and secret files as
//! one list of findings, and the exit code that follows from them.

use std::fmt;
use std::path::PathBuf;

use crate::model::Config;
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warn,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
            Severity::Info => "info",
        })
    }
}

/// One result of `rampart check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// Stable name of the check, e.g. `unknown-key`, `data-root-mode`, `secret-file-mode`.
    pub code: &'static str,
    /// What the finding is about: `file:line` for a configuration error, a filesystem path
    /// for a data-root or secret-file check, a dotted key otherwise.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: [{}] {}: {}",
            self.severity, self.code, self.path, self.message
        )
    }
}

/// Checks on the machine rather than on the configuration text: failing one of these is a
/// finding (exit 1), not a configuration error (exit 2).
fn is_machine_check(code: &str) -> bool {
    code.starts_with("data-root-")
        || code.starts_with("data-dir-")
        || code.starts_with("secret-file-")
}

/// What `rampart check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// The configuration, when it loaded and validated.
    pub config: Option<Config>,
}

impl CheckReport {
    /// DESIGN §2 exit codes:
    /// - `2`: the configuration cannot be used as written: a syntax, schema or profile
    ///   error (an unknown key, a wrong type, HS256 in prod, …);
    /// - `1`: the configuration is well-formed but the machine fails a check: a data root
    ///   (missing, owner, mode, writable ancestor, symlink, `data_dir` outside the roots)
    ///   or a secret file (group/world-readable, wrong owner, missing), or any other
    ///   `Error` finding added by the caller (e.g. key material that does not load);
    /// - `0`: no `Error` finding (warnings and infos do not fail the check).
    pub fn exit_code(&self) -> i32 {
        let mut machine = false;
        for f in self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
        {
            if self.config.is_none() && !is_machine_check(f.code) {
                return 2;
            }
            machine = true;
        }
        if self.config.is_none() && !machine {
            // Nothing specific was reported, yet the configuration did not load.
            return 2;
        }
        i32::from(machine)
    }
}

fn secret_findings(label: &str, s: Option<&Secret>, out: &mut Vec<Finding>) {
    let Some(path) = s.and_then(Secret::source_file) else {
        return;
    };
    if let Err(e) = crate::secret::check_secret_file(path) {
        out.push(Finding {
            severity: Severity::Error,
            code: e.code,
            path: path.display().to_string(),
            message: format!("{label}: {}", e.message),
        });
    }
}

/// Findings for a configuration that loaded: its warnings (dev relaxations and the
/// like), the data-root checks, and a fresh look at every `file:` secret (the file may
/// have changed since it was read).
pub fn check_config(cfg: &Config) -> Vec<Finding> {
    let mut out: Vec<Finding> = cfg
        .warnings
        .iter()
        .map(|w| Finding {
            severity: Severity::Warn,
            code: "config-warning",
            path: "config".into(),
            message: w.clone(),
        })
        .collect();
    out.extend(crate::dataroot::check_data_roots(cfg));
    let tls_key = cfg.server.tls.as_ref().map(|t| &t.key_pem);
    secret_findings("server.tls.key", tls_key, &mut out);
    let l = &cfg.later;
    let hs = l
        .auth
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .and_then(|j| j.hs256_secret.as_ref());
    secret_findings("auth.jwt.hs256_secret", hs, &mut out);
    let kek = l.crypto.as_ref().and_then(|c| c.kek.as_ref());
    secret_findings("crypto.kek", kek, &mut out);
    let pepper = l
        .auth
        .as_ref()
        .and_then(|a| a.api_key.as_ref())
        .and_then(|k| k.pepper.as_ref());
    secret_findings("auth.api_key.pepper", pepper, &mut out);
    let store_url = l.store.as_ref().and_then(|s| s.url_secret.as_ref());
    secret_findings("store.url", store_url, &mut out);
    let redis_url = l.redis.as_ref().and_then(|r| r.url.as_ref());
    secret_findings("redis.url", redis_url, &mut out);
    if kek.is_none() {
        out.push(Finding {
            severity: Severity::Info,
            code: "crypto-disabled",
            path: "crypto.kek".into(),
            message: "no key-encryption key configured: envelope encryption is disabled".into(),
        });
    }
    out
}

/// Everything `rampart check` does on the configuration files: load and validate
/// (process environment overrides included), then [`check_config`]. When the
/// configuration does not load, its errors become findings and the data-root checks
/// still run on whatever `data_dir`/`allowed_data_roots` could be read.
pub fn check(paths: &[PathBuf]) -> CheckReport {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    check_with_env(paths, &env)
}

/// [`check`] with an explicit environment.
pub fn check_with_env(paths: &[PathBuf], env: &[(String, String)]) -> CheckReport {
    let (result, hint) = crate::load_inner(&crate::read_sources(paths), paths, env);
    match result {
        Ok(cfg) => CheckReport {
            findings: check_config(&cfg),
            config: Some(cfg),
        },
        Err(e) => {
            let mut findings: Vec<Finding> = e
                .errors
                .iter()
                .map(|d| Finding {
                    severity: Severity::Error,
                    code: d.code,
                    path: match d.line {
                        Some(l) => format!("{}:{l}", d.file),
                        None => d.file.clone(),
                    },
                    message: if d.key.is_empty() {
                        d.message.clone()
                    } else {
                        format!("{}: {}", d.key, d.message)
                    },
                })
                .collect();
            findings.extend(crate::dataroot::check_paths(
                hint.data_dir.as_deref(),
                &hint.roots,
            ));
            CheckReport {
                findings,
                config: None,
            }
        }
    }
}
