//! The operator toolkit through the real binary: `rampart lint` (exit codes, formats,
//! SARIF validated against the SARIF 2.1.0 schema), `deploy/` linting clean, the systemd
//! unit's sandboxing, and `rampart sbom` validated against the CycloneDX 1.5 schema.
//! Schemas are read in place from `../shared/corpus/schemas`; validation is by the PyPI
//! `jsonschema` package (`scripts/test` installs it), an implementation independent of
//! ours.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rampart")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn rampart(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// Validates `doc` against `schemas[0]` (the others registered by `$id`).
fn validate(doc: &[u8], schemas: &[PathBuf]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/validate_json.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(schemas)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs jsonschema)");
    child.stdin.take().unwrap().write_all(doc).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "schema validation failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deploy_lints_clean() {
    let deploy = repo().join("deploy");
    let out = rampart(&["lint", &path_str(&deploy)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = rampart(&["lint", "--format", "json", &path_str(&deploy)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    // Only rampart's own release-tagged image (Compose and Kubernetes) is not pinned
    // by digest; every third-party image is.
    assert_eq!(findings.len(), 2, "{findings:#?}");
    for f in findings {
        assert_eq!(f["rule"], "RP014");
        assert_eq!(f["severity"], "warning");
        assert!(
            f["message"].as_str().unwrap().contains("rampart:0.1.0"),
            "{f}"
        );
    }
    // With warnings failing, the release digest is what is missing.
    let out = rampart(&["lint", "--fail-on", "warning", &path_str(&deploy)]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0() {
    let corpus = shared().join("corpus/lint");
    let out = rampart(&["lint", "--format", "sarif", &path_str(&corpus)]);
    assert_eq!(out.status.code(), Some(1));
    let schema = shared().join("corpus/schemas/sarif-schema-2.1.0.json");
    validate(&out.stdout, std::slice::from_ref(&schema));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() > 200);
    let r = results
        .iter()
        .find(|r| {
            r["ruleId"] == "RP018"
                && r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap()
                    .ends_with("nginx-proxy-2017/Dockerfile")
        })
        .unwrap();
    let region = &r["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (region["startLine"].as_u64(), region["startColumn"].as_u64()),
        (Some(17), Some(1))
    );
    assert_eq!(r["level"], "error");
    assert_eq!(
        v["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    // An input error still yields valid SARIF, reported as a notification.
    let missing = shared().join("corpus/lint/no-such-file.yaml");
    let out = rampart(&["lint", "--format", "sarif", &path_str(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    validate(&out.stdout, &[schema]);
}

#[test]
fn exit_codes_json_and_rule_listing() {
    let corpus = shared().join("corpus/lint");
    let good = corpus.join("k8s/website/network-policy-default-deny-all.yaml");
    let bad = corpus.join("k8s/website/cronjob.yaml");
    assert_eq!(rampart(&["lint", &path_str(&good)]).status.code(), Some(0));
    assert_eq!(rampart(&["lint", &path_str(&bad)]).status.code(), Some(1));
    // 2 wins over 1, and the readable input is still reported.
    let out = rampart(&[
        "lint",
        "--format",
        "json",
        &path_str(&bad),
        "/nonexistent/rampart-lint-input",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["findings"][0];
    for k in ["file", "line", "column", "rule", "severity", "message"] {
        assert!(!f[k].is_null(), "{k} missing in {f}");
    }
    assert!(
        v["errors"][0]["file"]
            .as_str()
            .unwrap()
            .contains("rampart-lint-input")
    );
    // --fail-on note: a warning-only file fails.
    let warn_only = corpus.join("docker/metrics-server/Dockerfile");
    assert_eq!(
        rampart(&["lint", &path_str(&warn_only)]).status.code(),
        Some(0)
    );
    assert_eq!(
        rampart(&["lint", "--fail-on", "note", &path_str(&warn_only)])
            .status
            .code(),
        Some(1)
    );
    // No path: usage error.
    assert_eq!(rampart(&["lint"]).status.code(), Some(2));
    let out = rampart(&["lint", "--list-rules"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("RP001 error (run-as-non-root)"), "{text}");
    assert!(text.contains("RP020 warning"));
    let out = rampart(&["lint", "--list-rules", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 20);
    for r in rules {
        for k in ["id", "severity", "title", "rationale", "fix"] {
            assert!(r[k].as_str().is_some_and(|s| !s.is_empty()), "{k} in {r}");
        }
    }
}

/// The sandboxing directives the issue requires, read from the unit file; and
/// `systemd-analyze security` where systemd is installed.
#[test]
fn systemd_unit_is_sandboxed() {
    let unit_path = repo().join("deploy/systemd/rampart.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let directives: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |k: &str, v: &str| directives.iter().any(|(dk, dv)| *dk == k && *dv == v);
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallFilter", "@system-service"),
        ("StateDirectory", "rampart"),
        ("StateDirectoryMode", "0750"),
    ] {
        assert!(has(k, v), "{k}={v} missing from {}", unit_path.display());
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&unit_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| {
                panic!(
                    "no exposure level in:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        assert!(line.contains("OK") || line.contains("SAFE"), "{line}");
        assert!(score < 2.0, "{line}");
    }
}

/// `docker compose config` accepts the Compose file where the Compose plugin exists.
#[test]
fn compose_file_is_accepted_by_docker_compose() {
    let has_compose = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let file = repo().join("deploy/compose/compose.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    // Without Docker: the services and hardening keys are where Compose expects them.
    let v = rampart_lint::yaml::parse_stream(&text).unwrap();
    let services = v[0].root.get("services").unwrap();
    for name in ["rampart", "redis", "postgres"] {
        let s = services.get(name).unwrap();
        assert_eq!(s.get("read_only").and_then(|n| n.as_bool()), Some(true));
        assert!(s.get("networks").is_some());
    }
    if has_compose {
        let out = Command::new("docker")
            .args(["compose", "-f"])
            .arg(&file)
            .args(["config", "-q"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn sbom_is_valid_cyclonedx_1_5() {
    let out = rampart(&["sbom"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = shared().join("corpus/schemas/cyclonedx");
    validate(
        &out.stdout,
        &[
            dir.join("bom-1.5.schema.json"),
            dir.join("spdx.schema.json"),
            dir.join("jsf-0.82.schema.json"),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bomFormat"], "CycloneDX");
    assert_eq!(v["specVersion"], "1.5");
    let me = &v["metadata"]["component"];
    assert_eq!(me["name"], "rampart");
    assert_eq!(
        me["purl"],
        format!("pkg:cargo/rampart@{}", env!("CARGO_PKG_VERSION"))
    );
    let comps = v["components"].as_array().unwrap();
    let names: Vec<&str> = comps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in [
        "tokio",
        "hyper",
        "rustls",
        "aws-lc-rs",
        "saphyr-parser",
        "rampart-lint",
    ] {
        assert!(names.contains(&n), "{n} missing");
    }
    // Banned and unused: ring is in Cargo.lock as an inactive optional dependency only.
    assert!(!names.contains(&"ring"));
    // Dev-dependencies are not part of the binary.
    assert!(!names.contains(&"rcgen") && !names.contains(&"tempfile"));
    for c in comps {
        let name = c["name"].as_str().unwrap();
        let version = c["version"].as_str().unwrap();
        assert_eq!(c["purl"], format!("pkg:cargo/{name}@{version}"));
        assert!(
            c["licenses"].as_array().is_some_and(|l| !l.is_empty()),
            "{c}"
        );
    }
    // Registry crates carry the SHA-256 checksum from Cargo.lock.
    let tokio = comps.iter().find(|c| c["name"] == "tokio").unwrap();
    assert_eq!(tokio["hashes"][0]["alg"], "SHA-256");
    assert_eq!(tokio["hashes"][0]["content"].as_str().unwrap().len(), 64);
    // Proc-macros run at build time only.
    let derive = comps.iter().find(|c| c["name"] == "serde_derive").unwrap();
    assert_eq!(derive["scope"], "excluded");
}

/// The configurations shipped in `deploy/` use only keys rampart knows: checked on this
/// machine, the only findings are about files that exist only where they are deployed
/// (TLS material, the data root).
#[test]
fn deploy_configurations_use_known_keys() {
    let compose = repo().join("deploy/compose/rampart.toml");
    let cm = std::fs::read_to_string(repo().join("deploy/k8s/configmap.yaml")).unwrap();
    let docs = rampart_lint::yaml::parse_stream(&cm).unwrap();
    let toml = docs[0]
        .root
        .path(&["data", "rampart.toml"])
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("k8s.toml");
    std::fs::write(&k8s, toml).unwrap();
    for cfg in [compose, k8s] {
        let out = rampart(&["check", "--format", "json", "--config", &path_str(&cfg)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for f in v["findings"].as_array().unwrap() {
            let code = f["code"].as_str().unwrap();
            assert!(
                matches!(
                    code,
                    "file-missing" | "secret-file-missing" | "tls-material"
                ) || code.starts_with("data-root-")
                    || code.starts_with("secret-file-")
                    || code.starts_with("tls-cert-")
                    || code == "crypto-disabled",
                "{}: {f}",
                cfg.display()
            );
        }
    }
}

/// The linter finds rampart API keys by the prefix the configuration's prod rule uses.
#[test]
fn api_key_prefix_is_shared() {
    assert_eq!(
        rampart_lint::RAMPART_API_KEY_PREFIX,
        rampart_config::API_KEY_PREFIX
    );
}
