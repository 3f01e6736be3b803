//! Data-root checks (DESIGN §6): every directory rampart writes lies under an
//! `allowed_data_roots` entry that already exists, is a real directory (not a symlink),
//! is owned by the process user or root, has mode 0750 or narrower, and has no group- or
//! world-writable ancestor. The sticky bit does not excuse an ancestor: a root under
//! `/tmp` fails, because anyone may create the path first or fill the directory.
//!
//! Nothing here ever creates a directory.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use crate::check::{Finding, Severity};
use crate::model::Config;

/// A failed data-root check. Each message names the path and the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataRootError {
    #[error("{path}: not an absolute path (check: absolute path)", path = .path.display())]
    NotAbsolute { path: PathBuf },
    #[error("{path}: contains `..` (check: normalized path)", path = .path.display())]
    NotNormalized { path: PathBuf },
    #[error(
        "{path}: does not exist (check: exists; rampart never creates a data root: create it \
         owned by the service user with mode 0750 or narrower)",
        path = .path.display()
    )]
    Missing { path: PathBuf },
    #[error("{path}: is a symbolic link (check: not a symlink; name the real directory)", path = .path.display())]
    Symlink { path: PathBuf },
    #[error("{path}: is not a directory (check: directory)", path = .path.display())]
    NotADirectory { path: PathBuf },
    #[error(
        "{path}: owned by uid {uid}, not by the process user (uid {euid}) or root (check: owner)",
        path = .path.display()
    )]
    WrongOwner { path: PathBuf, uid: u32, euid: u32 },
    #[error(
        "{path}: mode {mode:04o} gives group write or any access to other (check: mode 0750 or narrower; chmod 750)",
        path = .path.display()
    )]
    ModeTooOpen { path: PathBuf, mode: u32 },
    #[error(
        "{root}: ancestor {path} is group- or world-writable (mode {mode:04o}; the sticky bit does not count) \
         (check: no writable ancestor)",
        root = .root.display(),
        path = .path.display()
    )]
    WritableAncestor {
        root: PathBuf,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "{root}: ancestor {path} is owned by uid {uid}, neither root nor the process user (check: ancestor owner)",
        root = .root.display(),
        path = .path.display()
    )]
    UntrustedAncestor {
        root: PathBuf,
        path: PathBuf,
        uid: u32,
    },
    #[error("{path}: cannot be inspected: {message} (check: exists)", path = .path.display())]
    Io { path: PathBuf, message: String },
}

impl DataRootError {
    /// The stable name of the failed check, used as the finding code.
    pub fn code(&self) -> &'static str {
        match self {
            DataRootError::NotAbsolute { .. } | DataRootError::NotNormalized { .. } => {
                "data-root-not-absolute"
            }
            DataRootError::Missing { .. } => "data-root-missing",
            DataRootError::Symlink { .. } => "data-root-symlink",
            DataRootError::NotADirectory { .. } => "data-root-not-directory",
            DataRootError::WrongOwner { .. } => "data-root-owner",
            DataRootError::ModeTooOpen { .. } => "data-root-mode",
            DataRootError::WritableAncestor { .. } => "data-root-ancestor-writable",
            DataRootError::UntrustedAncestor { .. } => "data-root-ancestor-owner",
            DataRootError::Io { .. } => "data-root-io",
        }
    }
}

/// Lexical normalization: drops `.` and repeated separators; `None` if the path has `..`.
pub(crate) fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => return None,
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

fn io_err(path: &Path, e: &std::io::Error) -> DataRootError {
    if e.kind() == std::io::ErrorKind::NotFound {
        DataRootError::Missing {
            path: path.to_owned(),
        }
    } else {
        DataRootError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

fn check_ancestors(root: &Path, start: &Path, euid: u32) -> Result<(), DataRootError> {
    for anc in start.ancestors().skip(1) {
        if anc.as_os_str().is_empty() {
            continue;
        }
        // Follow symlinks: what matters is the directory the name leads to; the link
        // itself can only be replaced by whoever can write its parent, checked next.
        let meta = std::fs::metadata(anc).map_err(|e| io_err(anc, &e))?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(DataRootError::WritableAncestor {
                root: root.to_owned(),
                path: anc.to_owned(),
                mode,
            });
        }
        if meta.uid() != 0 && meta.uid() != euid {
            return Err(DataRootError::UntrustedAncestor {
                root: root.to_owned(),
                path: anc.to_owned(),
                uid: meta.uid(),
            });
        }
    }
    Ok(())
}

/// Checks one data root (or a directory under one) without creating anything.
pub fn check_data_root(path: &Path) -> Result<(), DataRootError> {
    if !path.is_absolute() {
        return Err(DataRootError::NotAbsolute {
            path: path.to_owned(),
        });
    }
    let Some(norm) = normalize(path) else {
        return Err(DataRootError::NotNormalized {
            path: path.to_owned(),
        });
    };
    let meta = std::fs::symlink_metadata(&norm).map_err(|e| io_err(&norm, &e))?;
    if meta.file_type().is_symlink() {
        return Err(DataRootError::Symlink { path: norm });
    }
    if !meta.is_dir() {
        return Err(DataRootError::NotADirectory { path: norm });
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(DataRootError::WrongOwner {
            path: norm,
            uid: meta.uid(),
            euid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o027 != 0 {
        return Err(DataRootError::ModeTooOpen { path: norm, mode });
    }
    check_ancestors(&norm, &norm, euid)?;
    // A symlinked ancestor leads somewhere else: check the real chain too.
    let real = std::fs::canonicalize(&norm).map_err(|e| io_err(&norm, &e))?;
    if real != norm {
        check_ancestors(&norm, &real, euid)?;
    }
    Ok(())
}

fn finding(severity: Severity, code: &'static str, path: &Path, message: String) -> Finding {
    Finding {
        severity,
        code,
        path: path.display().to_string(),
        message,
    }
}

/// Data-root findings for explicit values (used when the full config did not load).
pub(crate) fn check_paths(data_dir: Option<&Path>, roots: &[PathBuf]) -> Vec<Finding> {
    let mut out = Vec::new();
    for root in roots {
        if let Err(e) = check_data_root(root) {
            out.push(finding(Severity::Error, e.code(), root, e.to_string()));
        }
    }
    let Some(dir) = data_dir else {
        return out;
    };
    if roots.is_empty() {
        out.push(finding(
            Severity::Error,
            "data-dir-no-roots",
            dir,
            "server.data_dir is set but server.allowed_data_roots is empty (check: data_dir under an allowed root); \
             list the directory that holds it in allowed_data_roots"
                .into(),
        ));
        return out;
    }
    let Some(norm) = normalize(dir) else {
        out.push(finding(
            Severity::Error,
            "data-dir-outside-roots",
            dir,
            "server.data_dir contains `..` (check: data_dir under an allowed root)".into(),
        ));
        return out;
    };
    let inside = roots
        .iter()
        .filter_map(|r| normalize(r))
        .any(|r| norm.starts_with(&r));
    if !inside {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        out.push(finding(
            Severity::Error,
            "data-dir-outside-roots",
            dir,
            format!(
                "server.data_dir is not under any allowed_data_roots entry ({}) (check: data_dir under an allowed root)",
                list.join(", ")
            ),
        ));
        return out;
    }
    if roots
        .iter()
        .any(|r| normalize(r).as_deref() == Some(norm.as_path()))
    {
        return out;
    }
    match std::fs::symlink_metadata(&norm) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.push(finding(
            Severity::Info,
            "data-dir-missing",
            dir,
            "server.data_dir does not exist yet; it will be created (mode 0700) under its data root when first needed"
                .into(),
        )),
        _ => {
            if let Err(e) = check_data_root(&norm) {
                let code = match e.code() {
                    "data-root-missing" => "data-dir-missing",
                    "data-root-symlink" => "data-dir-symlink",
                    "data-root-owner" => "data-dir-owner",
                    "data-root-mode" => "data-dir-mode",
                    "data-root-not-directory" => "data-dir-not-directory",
                    "data-root-ancestor-writable" => "data-dir-ancestor-writable",
                    "data-root-ancestor-owner" => "data-dir-ancestor-owner",
                    other => other,
                };
                out.push(finding(Severity::Error, code, dir, e.to_string()));
            }
        }
    }
    out
}

/// Every data-root check for a loaded configuration: each `allowed_data_roots` entry,
/// and `data_dir` (inside a root; and, if it exists, the same mode rules).
/// With no roots and no `data_dir` there is nothing to check.
pub fn check_data_roots(cfg: &Config) -> Vec<Finding> {
    check_paths(
        cfg.server.data_dir.as_deref(),
        &cfg.server.allowed_data_roots,
    )
}
