//! rampart's tamper-evident audit trail: one JSON-lines record per request, hash-chained
//! across records and segments, an RFC 9162 Merkle tree over all records whose root is
//! published as C2SP `tlog-checkpoint` signed notes (Ed25519), a writer with group
//! commit, retention with signed prune statements, the offline verifier, inclusion and
//! consistency proofs, and the tower layer that records every request.
//!
//! Guards against: a record edited, deleted, inserted or reordered after the fact (the
//! chain names the first broken `seq`); a rewritten chain (checkpoint roots signed by a
//! key in the keyring); a dropped tail (the shutdown checkpoint covers every record);
//! a request served without its record (the record is in the file before the response
//! head leaves; `on_failure = "deny"` answers 503 otherwise); secrets in the log (only the
//! method, the path with credential-like query parameters masked, and the facts stages
//! put on the response are recorded). Trusts: the keyring file given to the verifier
//! (an auditor should use their own copy), the clock for `ts`, and the file system to
//! keep what `fdatasync` acknowledged. It does not protect against an attacker who
//! deletes the whole log together with its checkpoints: ship checkpoints elsewhere
//! (`checkpoint` is the latest note) for that.

#![forbid(unsafe_code)]

pub mod layer;
pub mod merkle;
pub mod note;
pub mod pg;
pub mod prove;
pub mod record;
pub mod retention;
pub mod segment;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use layer::{Audit, AuditLayer, LayerSettings};
pub use record::{Entry, Record};
pub use writer::{AppendError, AuditHandle, AuditStatus, StartReport, WriterConfig};

/// Settings that make failures happen on purpose, for tests. Never set from
/// configuration.
pub mod danger {
    /// Fail writes with ENOSPC once this many bytes were written since start (the
    /// write that crosses the limit lands partly, as on a full disk); make every
    /// fdatasync of a segment take `sync_delay` longer (a slow disk).
    #[derive(Debug, Clone, Copy)]
    pub struct FaultInjection {
        pub fail_after_bytes: u64,
        pub sync_delay: std::time::Duration,
    }

    impl Default for FaultInjection {
        fn default() -> Self {
            Self {
                fail_after_bytes: u64::MAX,
                sync_delay: std::time::Duration::ZERO,
            }
        }
    }
}

/// Why the audit log cannot be opened or maintained.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The log on disk does not continue where it should: an operator must look.
    #[error("audit log broken at seq {seq}: {what}; run `rampart audit verify`")]
    Broken { seq: u64, what: String },
    #[error(transparent)]
    Key(#[from] rampart_crypto::KeyError),
    #[error("{0}")]
    Config(String),
}

impl AuditError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Default checkpoint origin when `audit.origin` is not set.
pub const DEFAULT_ORIGIN: &str = "rampart/audit";

/// The audit directory and the keyring path of a validated configuration.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub audit_dir: PathBuf,
    pub keys_dir: PathBuf,
    pub keyring: PathBuf,
}

impl Paths {
    pub fn from_config(cfg: &rampart_config::Config) -> Result<Self, AuditError> {
        let data_dir = cfg.server.data_dir.clone().ok_or_else(|| {
            AuditError::Config("[audit] and [signing] need server.data_dir".into())
        })?;
        let dir = cfg
            .later
            .audit
            .as_ref()
            .and_then(|a| a.dir.clone())
            .unwrap_or_else(|| "audit".into());
        let keys_dir = data_dir.join("keys");
        Ok(Self {
            audit_dir: data_dir.join(dir),
            keyring: keys_dir.join("keyring.json"),
            keys_dir,
            data_dir,
        })
    }
}

/// The writer settings of `[audit]`.
pub fn writer_config(dir: PathBuf, a: &rampart_config::raw::AuditSection) -> WriterConfig {
    let mut w = WriterConfig::new(
        dir,
        a.origin.clone().unwrap_or_else(|| DEFAULT_ORIGIN.into()),
    );
    if let Some(n) = a.checkpoint_every_records {
        w.checkpoint_every_records = n;
    }
    if let Some(s) = a.checkpoint_every_s {
        w.checkpoint_every = Duration::from_secs(s);
    }
    if let Some(b) = a.segment_max_bytes {
        w.segment_max_bytes = b;
    }
    if let Some(s) = a.segment_max_age_s {
        w.segment_max_age = Duration::from_secs(s);
    }
    if let Some(ms) = a.sync_interval_ms {
        w.sync_interval = Duration::from_millis(ms);
    }
    if let (Some(url), Some(node)) = (&a.postgres_url, &a.node_id) {
        w.postgres = Some(pg::PgSinkConfig {
            url: url.clone(),
            node: node.clone(),
        });
    }
    w
}

/// Opens the signing keyring of `[signing]` (default provider `env`), creating the
/// keys directory (0700) when missing.
pub fn open_keyring(
    cfg: &rampart_config::Config,
    paths: &Paths,
) -> Result<rampart_crypto::Keyring, AuditError> {
    use rampart_config::raw::SigningProvider;
    ensure_private_dir(&paths.keys_dir)?;
    let signing = cfg.later.signing.clone().unwrap_or_default();
    let keyring = match signing.provider.unwrap_or(SigningProvider::Env) {
        SigningProvider::Env => rampart_crypto::Keyring::open(
            &rampart_crypto::EnvProvider::new(rampart_crypto::ProcessEnv, signing.key_id),
            &paths.keyring,
        )?,
        SigningProvider::File => rampart_crypto::Keyring::open(
            &rampart_crypto::FileProvider::new(&paths.keys_dir),
            &paths.keyring,
        )?,
    };
    Ok(keyring)
}

/// Creates `dir` with mode 0700 when it does not exist (its parent is a checked data
/// root).
pub fn ensure_private_dir(dir: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::DirBuilderExt as _;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| AuditError::io(dir, e))?;
    }
    Ok(())
}
