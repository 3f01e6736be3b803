//! Private test directories that pass the data-root rules of DESIGN.md §6 (owner-only,
//! no group- or world-writable ancestor, the sticky `/tmp` included) wherever the
//! repository was cloned: a clone under `/tmp` has its cargo target dir there, which
//! fails those rules, so the base falls back to `$HOME/.cache` and then `/var/lib`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// True when `p` and every ancestor of it is neither group- nor world-writable.
pub fn ancestors_clean(p: &Path) -> bool {
    p.ancestors().all(|a| {
        std::fs::symlink_metadata(a)
            .map(|m| m.permissions().mode() & 0o022 == 0)
            .unwrap_or(false)
    })
}

/// The base for private test directories: the first of `preferred` (normally the
/// crate's `CARGO_TARGET_TMPDIR`), `$HOME/.cache/rampart-tests` and
/// `/var/lib/rampart-tests` that can be made mode 0700 and whose ancestors pass the
/// rules. Panics, naming the candidates, when none does.
fn base(preferred: &Path) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut bases = vec![preferred.join("rampart-tests")];
        if let Some(home) = std::env::var_os("HOME") {
            bases.push(PathBuf::from(home).join(".cache").join("rampart-tests"));
        }
        bases.push(PathBuf::from("/var/lib/rampart-tests"));
        for b in &bases {
            if std::fs::create_dir_all(b).is_ok()
                && std::fs::set_permissions(b, std::fs::Permissions::from_mode(0o700)).is_ok()
                && ancestors_clean(b)
            {
                return b.clone();
            }
        }
        panic!("no directory passes the data-root rules among {bases:?}");
    })
    .clone()
}

/// A fresh directory (mode 0700) that itself passes the data-root rules, under
/// `preferred` when that qualifies. Pass `env!("CARGO_TARGET_TMPDIR")`.
pub fn private_dir(preferred: &str, name: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let d = base(Path::new(preferred)).join(format!(
        "{name}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(
        ancestors_clean(&d),
        "{} fails the data-root rules",
        d.display()
    );
    d
}
