//! Data-root checks and `rampart check` (findings and exit codes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::*;
use rampart_config::{DataRootError, Severity, check_data_root, check_with_env};

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn roots_config(data_dir: Option<&Path>, roots: &[&Path]) -> String {
    let roots: Vec<String> = roots
        .iter()
        .map(|r| format!("\"{}\"", r.display()))
        .collect();
    let dd = data_dir
        .map(|d| format!("data_dir = \"{}\"\n", d.display()))
        .unwrap_or_default();
    prod(
        &format!("{dd}allowed_data_roots = [{}]", roots.join(", ")),
        "",
    )
}

/// Runs `check` on `text` written to a config file in `dir`.
fn check_text(dir: &Path, text: &str) -> rampart_config::CheckReport {
    let cfg = dir.join("check.toml");
    write(&cfg, text, 0o600);
    check_with_env(&[cfg], &[])
}

fn codes(r: &rampart_config::CheckReport) -> Vec<&'static str> {
    r.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.code)
        .collect()
}

#[test]
fn good_root_passes() {
    let dir = clean_dir("good");
    let root = dir.join("data");
    std::fs::create_dir(&root).unwrap();
    chmod(&root, 0o750);
    check_data_root(&root).unwrap();
    let inner = root.join("gateway");
    let r = check_text(&dir, &roots_config(Some(&inner), &[&root]));
    assert_eq!(r.exit_code(), 0, "{:?}", r.findings);
    assert!(r.config.is_some());
    // data_dir not created yet: an info finding, and it is still not created.
    assert!(
        r.findings
            .iter()
            .any(|f| f.code == "data-dir-missing" && f.severity == Severity::Info)
    );
    assert!(!inner.exists());
    // data_dir exists but is too open.
    std::fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o775);
    let r = check_text(&dir, &roots_config(Some(&inner), &[&root]));
    assert_eq!(codes(&r), vec!["data-dir-mode"], "{:?}", r.findings);
    assert_eq!(r.exit_code(), 1);
    chmod(&inner, 0o700);
    let r = check_text(&dir, &roots_config(Some(&inner), &[&root]));
    assert_eq!(r.exit_code(), 0, "{:?}", r.findings);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_root_is_refused_and_never_created() {
    let dir = clean_dir("missing");
    let root = dir.join("missing");
    let err = check_data_root(&root).unwrap_err();
    assert!(matches!(err, DataRootError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(err.to_string().contains("never creates"), "{err}");
    let r = check_text(&dir, &roots_config(Some(&root), &[&root]));
    assert_eq!(codes(&r), vec!["data-root-missing"]);
    assert_eq!(r.exit_code(), 1);
    assert!(!root.exists(), "the missing root was created");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn open_mode_is_refused() {
    let dir = clean_dir("mode");
    let root = dir.join("data");
    std::fs::create_dir(&root).unwrap();
    for mode in [0o777, 0o770, 0o751, 0o754] {
        chmod(&root, mode);
        let err = check_data_root(&root).unwrap_err();
        assert_eq!(
            err,
            DataRootError::ModeTooOpen {
                path: root.clone(),
                mode
            }
        );
        assert!(
            err.to_string().contains("check: mode 0750 or narrower"),
            "{err}"
        );
    }
    chmod(&root, 0o777);
    let r = check_text(&dir, &roots_config(None, &[&root]));
    assert_eq!(codes(&r), vec!["data-root-mode"]);
    assert_eq!(r.exit_code(), 1);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "data-root-mode")
        .unwrap();
    assert!(f.to_string().contains("0777"), "{f}");
    for mode in [0o700, 0o750, 0o710] {
        chmod(&root, mode);
        check_data_root(&root).unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn root_under_tmp_fails_the_ancestor_check() {
    let tmp = tempfile::Builder::new()
        .prefix("rampart-root")
        .tempdir_in("/tmp")
        .unwrap();
    chmod(tmp.path(), 0o700);
    let err = check_data_root(tmp.path()).unwrap_err();
    match &err {
        DataRootError::WritableAncestor { path, mode, .. } => {
            assert_eq!(path, Path::new("/tmp"));
            assert_eq!(mode & 0o1000, 0o1000, "sticky /tmp still fails");
        }
        other => panic!("expected WritableAncestor, got {other}"),
    }
    assert!(err.to_string().contains("/tmp"));
    assert_eq!(err.code(), "data-root-ancestor-writable");
}

#[test]
fn writable_ancestor_in_the_middle() {
    let dir = clean_dir("ancestor");
    let mid = dir.join("mid");
    let root = mid.join("data");
    std::fs::create_dir_all(&root).unwrap();
    chmod(&root, 0o700);
    chmod(&mid, 0o777);
    let err = check_data_root(&root).unwrap_err();
    assert!(
        matches!(&err, DataRootError::WritableAncestor { path, .. } if *path == mid),
        "{err}"
    );
    chmod(&mid, 0o755);
    check_data_root(&root).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn root_owned_by_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: chown to another user needs root");
        return;
    }
    let dir = clean_dir("owner");
    let root = dir.join("data");
    std::fs::create_dir(&root).unwrap();
    chmod(&root, 0o750);
    rustix::fs::chown(&root, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
    let err = check_data_root(&root).unwrap_err();
    assert!(
        matches!(err, DataRootError::WrongOwner { uid: 65534, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("check: owner"));
    let r = check_text(&dir, &roots_config(None, &[&root]));
    assert_eq!(codes(&r), vec!["data-root-owner"]);
    assert_eq!(r.exit_code(), 1);
    // An ancestor owned by another user is refused too.
    let inner = root.join("inner");
    std::fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o700);
    let err = check_data_root(&inner).unwrap_err();
    assert!(
        matches!(err, DataRootError::UntrustedAncestor { uid: 65534, .. }),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn symlinked_root_is_refused() {
    let dir = clean_dir("symlink");
    let real = dir.join("real");
    std::fs::create_dir(&real).unwrap();
    chmod(&real, 0o700);
    let link = dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = check_data_root(&link).unwrap_err();
    assert!(matches!(err, DataRootError::Symlink { .. }), "{err}");
    let r = check_text(&dir, &roots_config(None, &[&link]));
    assert_eq!(codes(&r), vec!["data-root-symlink"]);
    // A file is not a directory.
    let file = dir.join("file");
    write(&file, "x", 0o600);
    assert!(matches!(
        check_data_root(&file),
        Err(DataRootError::NotADirectory { .. })
    ));
    // Relative and `..` paths.
    assert!(matches!(
        check_data_root(Path::new("rel")),
        Err(DataRootError::NotAbsolute { .. })
    ));
    assert!(matches!(
        check_data_root(&dir.join("..").join("x")),
        Err(DataRootError::NotNormalized { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn data_dir_must_be_under_an_allowed_root() {
    let dir = clean_dir("outside");
    let root = dir.join("data");
    std::fs::create_dir(&root).unwrap();
    chmod(&root, 0o750);
    // A sibling that shares the root's name as a string prefix is still outside.
    let outside = dir.join("data-other");
    let r = check_text(&dir, &roots_config(Some(&outside), &[&root]));
    assert_eq!(
        codes(&r),
        vec!["data-dir-outside-roots"],
        "{:?}",
        r.findings
    );
    assert_eq!(r.exit_code(), 1);
    // data_dir without any root.
    let r = check_text(&dir, &roots_config(Some(&root), &[]));
    assert_eq!(codes(&r), vec!["data-dir-no-roots"]);
    // No data_dir and no roots: nothing to check.
    let r = check_text(&dir, &prod("", ""));
    assert!(
        r.findings.iter().all(|f| !f.code.starts_with("data-")),
        "{:?}",
        r.findings
    );
    assert_eq!(r.exit_code(), 0);
    // `..` in data_dir is a configuration error.
    let text = roots_config(
        Some(&PathBuf::from(format!("{}/../x", root.display()))),
        &[&root],
    );
    let r = check_text(&dir, &text);
    assert_eq!(r.exit_code(), 2, "{:?}", r.findings);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_reports_secret_file_mode_with_exit_1() {
    let dir = clean_dir("secret");
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    write(&cert, PEM_CERT, 0o644);
    write(&key, PEM_KEY, 0o644);
    let text = prod(
        &format!(
            "tls = {{ cert = \"file:{}\", key = \"file:{}\" }}",
            cert.display(),
            key.display()
        ),
        "",
    );
    let r = check_text(&dir, &text);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "secret-file-mode")
        .expect("secret-file-mode finding");
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message.contains("server.tls.key") && f.message.contains("0644"),
        "{f}"
    );
    assert!(f.path.ends_with("check.toml:4"), "{f}");
    assert_eq!(r.exit_code(), 1);
    assert!(r.config.is_none());
    chmod(&key, 0o600);
    let r = check_text(&dir, &text);
    assert_eq!(r.exit_code(), 0, "{:?}", r.findings);
    // The file changes after loading: check_config looks again.
    let cfg = r.config.unwrap();
    chmod(&key, 0o604);
    let again = rampart_config::check_config(&cfg);
    assert!(
        again
            .iter()
            .any(|f| f.code == "secret-file-mode" && f.severity == Severity::Error),
        "{again:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_errors_exit_2_and_data_roots_still_checked() {
    let dir = clean_dir("exit2");
    let missing = dir.join("missing");
    let text =
        roots_config(Some(&missing), &[&missing]).replace("[server]", "[server]\nlistne = \"x\"");
    let r = check_text(&dir, &text);
    assert_eq!(r.exit_code(), 2);
    let c = codes(&r);
    assert!(
        c.contains(&"unknown-key") && c.contains(&"data-root-missing"),
        "{c:?}"
    );
    let f = r.findings.iter().find(|f| f.code == "unknown-key").unwrap();
    assert!(f.path.ends_with("check.toml:3"), "{f}");
    assert!(
        f.message.contains("server.listne") && f.message.contains("listen"),
        "{f}"
    );
    // Warnings alone pass.
    let r = check_text(&dir, &dev(""));
    assert_eq!(r.exit_code(), 0, "{:?}", r.findings);
    assert!(r.findings.iter().any(|f| f.severity == Severity::Warn));
    // A missing config file is a configuration error.
    let r = check_with_env(&[dir.join("nope.toml")], &[]);
    assert_eq!(r.exit_code(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}
