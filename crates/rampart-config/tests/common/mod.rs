#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rampart_config::{Config, ConfigError};

pub const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
pub const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

/// A fresh owner-only directory whose ancestors are not group/world-writable, so it can
/// serve as a data root wherever the repository was cloned (see
/// `rampart_test_support::private_dir`).
pub fn clean_dir(name: &str) -> PathBuf {
    rampart_test_support::private_dir(env!("CARGO_TARGET_TMPDIR"), name)
}

/// A scratch directory (any location; tempfile under /tmp is fine for non-root checks).
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A minimal valid dev config; `extra` is appended.
pub fn dev(extra: &str) -> String {
    format!(
        "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n\n[[routes]]\nid = \"r\"\npath = \"/r\"\nupstream = \"app\"\n{extra}"
    )
}

/// A minimal valid prod config (loopback, trusted host); `server_extra` goes in [server].
pub fn prod(server_extra: &str, extra: &str) -> String {
    format!(
        "profile = \"prod\"\n[server]\ntrusted_hosts = [\"api.example.com\"]\n{server_extra}\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n\n[[routes]]\nid = \"r\"\npath = \"/r\"\nupstream = \"app\"\nscopes = [\"jobs\"]\n{extra}"
    )
}

pub fn load(text: &str) -> Result<Config, ConfigError> {
    rampart_config::load_from_strs(&[("cfg.toml", text)], &[])
}

pub fn load_env(text: &str, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    rampart_config::load_from_strs(&[("cfg.toml", text)], &env(e))
}

pub fn errors(text: &str) -> ConfigError {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

/// The diagnostic for `key`, or a panic listing all of them.
pub fn diag<'a>(e: &'a ConfigError, key: &str) -> &'a rampart_config::Diagnostic {
    e.errors
        .iter()
        .find(|d| d.key == key)
        .unwrap_or_else(|| panic!("no diagnostic for {key}:\n{e}"))
}
