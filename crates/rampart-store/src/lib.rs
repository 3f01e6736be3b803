//! rampart's credential store: API keys and revocations on SQLite (one gateway) or
//! PostgreSQL (several), the in-memory views the request path reads, and the sync task
//! that keeps those views current (store polling, plus Redis fan-out between gateways).
//!
//! # What it guards against
//!
//! - **A stolen database.** API keys are stored only as `HMAC-SHA256(pepper, key)`; the
//!   pepper (`auth.api_key.pepper`, `env:`/`file:` only) never enters the database, so
//!   a copy of it holds no usable key and cannot be brute-forced offline (256-bit
//!   secrets besides). The SQLite file is created mode 0600 inside `server.data_dir`
//!   (data-root checks first); an existing file readable by group/other is refused.
//! - **Leaked keys going unnoticed.** Keys have a fixed, documented shape
//!   ([`key::SCANNER_REGEX`]) with a CRC-32 checksum, so secret scanners find them and
//!   can confirm a hit offline; typos are refused before any lookup.
//! - **Timing and load on the request path.** [`ApiKeyCache::verify`] is an O(1) map
//!   lookup in a lock-free snapshot plus one HMAC compared in constant time (also for
//!   unknown ids); [`RevocationSet`] lookups are one atomic load and a hash lookup.
//!   Neither touches the database, blocks or allocates per request (apart from
//!   `verify`'s record copy; `verify_shared` avoids it).
//! - **Revocations that arrive late.** Every write bumps a store-wide change counter in
//!   the same transaction; gateways poll it every second and read only changed rows
//!   (a revocation reaches every gateway within 5 s); with `[redis] url`, a revocation is
//!   also published and applied within a network round trip, and written to a Redis set
//!   that a gateway reads when it starts.
//! - **Secrets at rest.** Secrets that must be usable again (device HMAC keys) are kept
//!   in the `secrets` table only as AES-256-GCM ciphertexts under a data key, bound to
//!   their name; data keys only wrapped under the KEK (`crypto.kek`), which never enters
//!   the database ([`Vault`]). A wrong KEK is found when the vault opens, not later.
//! - **Secrets in output.** [`ApiKeySecret`] is wiped on drop and has no `Display`;
//!   records and errors never carry the secret or its hash; database and Redis URLs
//!   (which may hold passwords) are never printed.
//!
//! # What it trusts
//!
//! The database (whoever can write it can add keys) and the pepper's source. Redis is
//! trusted to add revocations only: a message from it can deny requests, never grant one.
//!
//! # Example
//!
//! ```no_run
//! # async fn f(cfg: rampart_config::Config) -> Result<(), rampart_store::StoreError> {
//! use std::sync::Arc;
//! use rampart_store::*;
//!
//! let store = Store::open(&cfg).await?;
//! let keys = ApiKeys::from_config(store.clone(), &cfg)?;
//! let (record, secret) = keys
//!     .create(NewApiKey { name: "ci".into(), tenant: "acme".into(), scopes: vec!["jobs".into()], ..Default::default() })
//!     .await?;
//! println!("{}", secret.expose()); // shown once
//!
//! let cache = Arc::new(ApiKeyCache::from_config(&cfg)?);
//! let revs = Arc::new(RevocationSet::new());
//! load_once(&store, &cache, &revs).await?;
//! assert_eq!(cache.verify(secret.expose()).unwrap().id, record.id);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod apikeys;
mod bus;
mod cache;
mod db;
mod devices;
pub mod key;
mod revocation;
mod sync;
mod vault;
pub mod when;

pub use apikeys::{
    ApiKeyRecord, ApiKeySecret, ApiKeys, MAX_FIELD_BYTES, MAX_LIST, MIN_PEPPER_BYTES, NewApiKey,
    RateLimitOverride, list_api_keys, pepper_from_config,
};
pub use bus::{MAX_MESSAGE_BYTES, MAX_REDIS_ENTRIES, RedisUrl};
pub use cache::{ApiKeyCache, ApiKeyError};
pub use db::{Backend, DEFAULT_URL, Store};
pub use devices::{
    DeviceAlg, DeviceCredentials, DeviceMaterial, DeviceRecord, DeviceSecret, Devices,
    HMAC_SECRET_BYTES, MAX_DEVICES, MAX_OVERLAP_S, NewDevice, valid_device_name,
};
pub use revocation::{
    MAX_REASON_BYTES, MAX_VALUE_BYTES, NewRevocation, Revocation, RevocationKind, RevocationSet,
    Revocations, normalize_cert_fp,
};
pub use sync::{SyncOptions, load_once, poll_once, spawn_sync, spawn_sync_with};
pub use vault::{KeyStats, MAX_SECRET_BYTES, MAX_SECRET_NAME, SecretMeta, Vault};

/// Store errors. Messages never contain a secret, a key hash or a connection URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operator's configuration: `store.url`, `data_dir`, the pepper, `redis.url`.
    #[error("{0}")]
    Config(String),
    /// The SQLite file or its directory (mode, owner, not a regular file).
    #[error("{0}")]
    File(String),
    /// The database could not be reached or opened.
    #[error("cannot open the credential store: {0}")]
    Open(#[source] sqlx::Error),
    /// A migration failed or an applied one was changed.
    #[error("credential store migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("credential store query failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The caller's input (a name, a scope, an expiry in the past…).
    #[error("{0}")]
    Invalid(String),
    /// A row the store cannot have written (edited by hand?).
    #[error("corrupt credential store row: {0}")]
    Corrupt(String),
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// Envelope encryption: a data key that does not unwrap (the wrong `crypto.kek`), a
    /// ciphertext that does not authenticate, a malformed stored value.
    #[error("{0}")]
    Crypto(rampart_crypto::envelope::EnvelopeError),
    /// Publishing to Redis failed (the store write itself succeeded).
    #[error("redis: {0}")]
    Redis(String),
}

impl StoreError {
    /// Whether the operator must fix the configuration or the command line (CLI exit 2)
    /// rather than a runtime failure (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StoreError::Config(_) | StoreError::File(_) | StoreError::Invalid(_)
        )
    }
}
