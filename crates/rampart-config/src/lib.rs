//! rampart's configuration: TOML files overlaid in order, `RAMPART_SECTION__KEY`
//! environment overrides, `env:`/`file:` secret references, one strict schema, profile
//! rules, and the data-root and secret-file checks behind `rampart check`.
//!
//! # What it guards against
//!
//! - **Typos that silently disable a control.** Every table is closed: an unknown key
//!   anywhere (later sections and environment overrides included) is an error naming
//!   the file, the line, the dotted key, the closest valid key and the valid set. All
//!   problems are reported at once.
//! - **Secrets in world-readable files.** A `file:` secret must be a regular file with
//!   mode `& 0o077 == 0`, owned by the process user or root. `server.tls.key` must be a
//!   `file:` or `env:` reference, never the key itself. [`secret::Secret`] is wiped on
//!   drop and prints as `[redacted]`.
//! - **Data under attacker-writable directories.** [`check_data_root`]: a data root must
//!   already exist (it is never created), be a real directory owned by the process user
//!   or root, mode 0750 or narrower, with no group- or world-writable ancestor (a sticky
//!   `/tmp` included); `data_dir` must lie under an allowed root.
//! - **Production deployments with development relaxations.** `profile = "prod"` (the
//!   default) refuses HS256, plain-HTTP JWKS, anonymous `auth.modes`, an empty
//!   `trusted_hosts`, a routable listener without TLS and API keys written into a
//!   configuration file; `profile = "dev"` allows them
//!   with a warning in [`Config::warnings`], logged at every start.
//!
//! # What it trusts
//!
//! The files it is given and the process environment (whoever sets them runs the
//! gateway), and the filesystem's reports of owner and mode.
//!
//! # Overlay and environment
//!
//! Later files overlay earlier ones: tables merge key by key; any other value (arrays
//! such as `[[routes]]` and `trusted_hosts` included) is replaced wholesale. Then the
//! environment: `RAMPART_PROFILE` sets `profile`, and every `RAMPART_A__B__C` sets
//! `a.b.c` (segments lower-cased, split on `__`). The value is read as TOML when it is a
//! TOML value (`8443`, `true`, `["a", "b"]`, `{ url = "…" }`), else as a string; a key
//! that wants a string always takes the raw text. Other single-segment variables
//! (`RAMPART_LOG`, `RAMPART_JWT_SECRET`, …) are not overrides and are ignored, so they
//! can hold secrets referenced with `env:`.
//!
//! ```
//! let env = vec![("RAMPART_SERVER__MAX_CONNECTIONS".to_owned(), "64".to_owned())];
//! let cfg = rampart_config::load_from_strs(
//!     &[("a.toml", "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n")],
//!     &env,
//! )
//! .unwrap();
//! assert_eq!(cfg.server.max_connections, 64);
//!
//! let err = rampart_config::load_from_strs(
//!     &[("b.toml", "profile = \"dev\"\n[server]\nlistne = \"127.0.0.1:1\"\n")],
//!     &[],
//! )
//! .unwrap_err();
//! assert!(err.to_string().starts_with("b.toml:3: server.listne: unknown key; did you mean `listen`?"));
//! ```

#![forbid(unsafe_code)]

mod access;
mod check;
mod cx;
mod dataroot;
mod error;
mod model;
mod profile;
pub mod raw;
pub mod secret;
mod tree;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use check::{CheckReport, Finding, Severity, check, check_config, check_with_env};
pub use dataroot::{DataRootError, check_data_root, check_data_roots};
pub use error::{ConfigError, Diagnostic};
pub use model::{
    ClientAuth, Config, CorsConfig, CsrfConfig, HeadersConfig, Profile, RouteConfig, ServerConfig,
    TlsConfig, UpstreamConfig,
};

use cx::Cx;
use tree::Item;
use validate::Hint;

/// The prefix of rampart API keys (`rampart apikey create`): recognisable, so that
/// secret scanners and the `prod` profile rule against keys written into configuration
/// files find them. `rampart lint` uses the same prefix (`rampart_lint::RAMPART_API_KEY_PREFIX`).
pub const API_KEY_PREFIX: &str = "rpk_";

/// Upper bound on one configuration file.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Loads, overlays, applies the process environment, resolves secrets and validates.
pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
    load_with_env(paths, &process_env())
}

/// [`load`] with an explicit environment (for overrides and `env:` secrets).
pub fn load_with_env(paths: &[PathBuf], env: &[(String, String)]) -> Result<Config, ConfigError> {
    load_inner(&read_sources(paths), paths, env).0
}

/// [`load`] from TOML text instead of files (`file:` secrets are still read). Relative
/// `file:` paths are relative to the working directory.
pub fn load_from_strs(
    sources: &[(&str, &str)],
    env: &[(String, String)],
) -> Result<Config, ConfigError> {
    let srcs: Vec<Source> = sources
        .iter()
        .map(|(name, text)| Source {
            name: (*name).to_owned(),
            dir: None,
            text: Ok((*text).to_owned()),
        })
        .collect();
    load_inner(&srcs, &[], env).0
}

fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// One configuration source: its display name, its directory (for relative `file:`
/// references) and its text, or why it could not be read.
pub(crate) struct Source {
    name: String,
    dir: Option<Arc<Path>>,
    text: Result<String, Diagnostic>,
}

pub(crate) fn read_sources(paths: &[PathBuf]) -> Vec<Source> {
    paths
        .iter()
        .map(|p| {
            let name = p.display().to_string();
            let dir = p.parent().map(|d| {
                if d.as_os_str().is_empty() {
                    Arc::from(Path::new("."))
                } else {
                    Arc::from(d)
                }
            });
            let text = read_config_file(p).map_err(|message| Diagnostic {
                file: name.clone(),
                line: None,
                key: String::new(),
                message,
                code: "config-file",
            });
            Source { name, dir, text }
        })
        .collect()
}

fn read_config_file(p: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let meta =
        std::fs::metadata(p).map_err(|e| format!("cannot read the configuration file: {e}"))?;
    if !meta.is_file() {
        return Err("the configuration file is not a regular file".into());
    }
    let f =
        std::fs::File::open(p).map_err(|e| format!("cannot read the configuration file: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the configuration file: {e}"))?;
    if buf.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "the configuration file is larger than {MAX_CONFIG_BYTES} bytes"
        ));
    }
    String::from_utf8(buf).map_err(|_| "the configuration file is not UTF-8".into())
}

/// The key path an environment variable overrides, if it is an override.
fn env_key(var: &str) -> Option<Result<Vec<String>, String>> {
    let rest = var.strip_prefix("RAMPART_")?;
    if rest == "PROFILE" {
        return Some(Ok(vec!["profile".into()]));
    }
    if !rest.contains("__") {
        return None;
    }
    let segs: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if segs.iter().any(String::is_empty) {
        return Some(Err(format!(
            "`{var}` has an empty key segment; write RAMPART_SECTION__KEY (segments joined by `__`)"
        )));
    }
    Some(Ok(segs))
}

pub(crate) fn load_inner(
    sources: &[Source],
    paths: &[PathBuf],
    env: &[(String, String)],
) -> (Result<Config, ConfigError>, Hint) {
    let mut hint = Hint::default();
    let mut diags = Vec::new();
    let mut root: Option<Item> = None;
    for s in sources {
        let text = match &s.text {
            Ok(t) => t,
            Err(d) => {
                diags.push(d.clone());
                continue;
            }
        };
        match tree::parse_file(&s.name, s.dir.clone(), text) {
            Ok(item) => match &mut root {
                Some(r) => tree::merge(r, item),
                None => root = Some(item),
            },
            Err(mut d) => diags.append(&mut d),
        }
    }
    let mut root = root.unwrap_or_else(|| {
        Item::empty_table(tree::Origin {
            file: Arc::from(sources.first().map_or("<none>", |s| s.name.as_str())),
            line: None,
            dir: None,
        })
    });
    // Environment overrides: shorter paths first, so `RAMPART_SERVER__TLS__KEY` wins over
    // a whole-table `RAMPART_SERVER__TLS`.
    let mut overrides: Vec<(Vec<String>, &str, &str)> = Vec::new();
    let mut env_diags = Vec::new();
    for (k, v) in env {
        match env_key(k) {
            None => {}
            Some(Ok(path)) => overrides.push((path, k, v)),
            Some(Err(m)) => env_diags.push(Diagnostic {
                file: format!("env:{k}"),
                line: None,
                key: String::new(),
                message: m,
                code: "unknown-key",
            }),
        }
    }
    overrides.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.1.cmp(b.1)));
    // An unknown key in an override is reported by the schema walk, with a suggestion.
    for (path, var, raw) in overrides {
        tree::set_path(&mut root, &path, tree::parse_env_value(var, raw));
    }
    if !diags.is_empty() {
        // Syntax errors: the merged tree is incomplete, so schema errors would mislead.
        return (Err(ConfigError { errors: diags }), hint);
    }
    let mut cx = Cx::new(env);
    let cfg = validate::validate(&mut cx, &root, paths.to_vec(), &mut hint);
    let mut errors = cx.diags;
    errors.append(&mut env_diags);
    // File order, then line; the environment after the files.
    let rank = |file: &str| {
        sources
            .iter()
            .position(|s| s.name == file)
            .unwrap_or(usize::MAX)
    };
    errors.sort_by_key(|d| (rank(&d.file), d.line.unwrap_or(0)));
    match cfg {
        Some(c) if errors.is_empty() => (Ok(c), hint),
        _ => (Err(ConfigError { errors }), hint),
    }
}
