//! The database behind the store: one SQLite file under `server.data_dir`, or PostgreSQL
//! shared by several gateways. The same migrations and queries run on both (portable
//! SQL, `$n` placeholders, which SQLite binds by number too).

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;
use crate::bus::{Bus, RedisUrl};

/// The default `store.url`: a file under `server.data_dir`.
pub const DEFAULT_URL: &str = "sqlite://rampart.db";

/// Every migration, in order. Append new ones; never edit an applied one (its checksum is
/// recorded and checked at every start).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "credentials",
        include_str!("../migrations/0001_credentials.sql"),
    ),
    (
        2,
        "envelope",
        include_str!("../migrations/0002_envelope.sql"),
    ),
    (3, "devices", include_str!("../migrations/0003_devices.sql")),
];

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    (*d).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store holds (the row and argument
/// types differ per backend, so the body is compiled once for each).
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::db::Pool::Sqlite($p) => $body,
            $crate::db::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A handle on the credential store (cheap to clone: it holds a connection pool).
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) bus: Option<Arc<Bus>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("redis", &self.bus.is_some())
            .finish()
    }
}

/// `store.url`, or the default SQLite file.
fn configured_url(cfg: &rampart_config::Config) -> &str {
    cfg.later
        .store
        .as_ref()
        .and_then(|s| s.resolved_url())
        .unwrap_or(DEFAULT_URL)
}

impl Store {
    /// Opens `store.url` (default `sqlite://rampart.db` under `server.data_dir`) after the
    /// data-root checks, applies pending migrations, and attaches `[redis] url` for
    /// revocation fan-out when it is configured.
    pub async fn open(cfg: &rampart_config::Config) -> Result<Store, StoreError> {
        let url = configured_url(cfg);
        if url.starts_with("sqlite:") {
            let refused: Vec<String> = rampart_config::check_data_roots(cfg)
                .into_iter()
                .filter(|f| f.severity == rampart_config::Severity::Error)
                .map(|f| f.message)
                .collect();
            if !refused.is_empty() {
                return Err(StoreError::Config(refused.join("; ")));
            }
        }
        let mut store = Store::open_url(url, cfg.server.data_dir.as_deref()).await?;
        if let Some(u) = cfg.later.redis.as_ref().and_then(|r| r.url.as_ref()) {
            store = store.with_redis(RedisUrl::from_secret(u)?);
        }
        Ok(store)
    }

    /// [`Store::open`] for a reader that must not create a store: `None` when the
    /// configured SQLite file does not exist yet, or when the store is PostgreSQL and
    /// `network` is false (`rampart check` without `--online`).
    pub async fn open_existing(
        cfg: &rampart_config::Config,
        network: bool,
    ) -> Result<Option<Store>, StoreError> {
        let url = configured_url(cfg);
        if url.starts_with("sqlite:") {
            let path = sqlite_path(url, cfg.server.data_dir.as_deref())?;
            if std::fs::symlink_metadata(&path).is_err() {
                return Ok(None);
            }
        } else if !network {
            return Ok(None);
        }
        Store::open(cfg).await.map(Some)
    }

    /// Opens a store by URL. `sqlite://NAME` is a file under `data_dir` (created mode 0600,
    /// WAL journal); an absolute `sqlite:///PATH` must lie inside `data_dir`.
    /// `postgres://…` connects to PostgreSQL (its URL options, `sslmode` and `options`
    /// such as `-c search_path=…`, apply).
    pub async fn open_url(url: &str, data_dir: Option<&Path>) -> Result<Store, StoreError> {
        let pool = if url.starts_with("sqlite:") {
            let path = sqlite_path(url, data_dir)?;
            prepare_sqlite_file(&path)?;
            let opts = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(false)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(StoreError::Open)?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(|_| {
                // sqlx's message may quote the URL, password included: say what, not the value.
                StoreError::Config("store.url: not a valid postgres:// URL".into())
            })?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(StoreError::Open)?;
            Pool::Postgres(pool)
        } else {
            return Err(StoreError::Config(
                "store.url must start with sqlite:// or postgres://".into(),
            ));
        };
        let store = Store { pool, bus: None };
        store.migrate().await?;
        Ok(store)
    }

    /// Publishes revocations to Redis (channel and set, see [`crate::bus`]) as well.
    #[must_use]
    pub fn with_redis(mut self, url: RedisUrl) -> Store {
        self.bus = Some(Arc::new(Bus::new(url)));
        self
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let m = migrator();
        with_pool!(&self.pool, |p| m.run(p).await).map_err(StoreError::Migrate)
    }

    /// The newest applied migration version.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = with_pool!(&self.pool, |p| {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(p)
                .await
        })?;
        Ok(v.unwrap_or(0))
    }

    /// The store-wide change counter (see the migration): grows with every write.
    pub async fn change_seq(&self) -> Result<i64, StoreError> {
        let v: i64 = with_pool!(&self.pool, |p| {
            sqlx::query_scalar("SELECT value FROM rampart_seq WHERE name = 'changes'")
                .fetch_one(p)
                .await
        })?;
        Ok(v)
    }

    /// Closes the pool (waits for checked-out connections).
    pub async fn close(&self) {
        with_pool!(&self.pool, |p| p.close().await);
    }
}

/// Lexically normalized path, or `None` when it has `..`.
fn normalize(p: &Path) -> Option<PathBuf> {
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

/// The database file a `sqlite://` URL names, which must lie inside `data_dir`.
pub(crate) fn sqlite_path(url: &str, data_dir: Option<&Path>) -> Result<PathBuf, StoreError> {
    let rest = url.strip_prefix("sqlite://").ok_or_else(|| {
        StoreError::Config("store.url: write sqlite://FILE (e.g. sqlite://rampart.db)".into())
    })?;
    if rest.is_empty() || rest.contains(['?', '#']) || rest.contains(":memory:") {
        return Err(StoreError::Config(
            "store.url: sqlite://FILE names a file under server.data_dir, without query options"
                .into(),
        ));
    }
    let dir = data_dir.ok_or_else(|| {
        StoreError::Config(
            "store.url is an SQLite file: set server.data_dir (and allowed_data_roots)".into(),
        )
    })?;
    let dir = normalize(dir).filter(|d| d.is_absolute()).ok_or_else(|| {
        StoreError::Config("server.data_dir must be an absolute path without `..`".into())
    })?;
    let p = Path::new(rest);
    let joined = if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    };
    let path = normalize(&joined)
        .ok_or_else(|| StoreError::Config(format!("store.url `{url}` must not contain `..`")))?;
    if !path.starts_with(&dir) || path == dir {
        return Err(StoreError::Config(format!(
            "store.url `{url}` lies outside server.data_dir ({}); the SQLite file must be inside it",
            dir.display()
        )));
    }
    Ok(path)
}

/// Creates the data directory (0700) and the database file (0600) if missing, and
/// refuses an existing file that is not a regular file of ours or that group/other can
/// read. SQLite gives the `-wal` and `-shm` files the database file's mode.
fn prepare_sqlite_file(path: &Path) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::Config("the SQLite file has no directory".into()))?;
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::File(format!("cannot create {}: {e}", dir.display())))?;
    }
    rampart_config::check_data_root(dir).map_err(|e| StoreError::Config(e.to_string()))?;
    let euid = rustix::process::geteuid().as_raw();
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_file() {
                return Err(StoreError::File(format!(
                    "{} is not a regular file (a symlink or directory is refused)",
                    path.display()
                )));
            }
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(StoreError::File(format!(
                    "{} has mode {mode:04o}: group/other may read the credential store; chmod 600",
                    path.display()
                )));
            }
            if meta.uid() != euid && meta.uid() != 0 {
                return Err(StoreError::File(format!(
                    "{} is owned by uid {}, not by the process user (uid {euid})",
                    path.display(),
                    meta.uid()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(drop)
            .map_err(|e| StoreError::File(format!("cannot create {}: {e}", path.display()))),
        Err(e) => Err(StoreError::File(format!(
            "cannot inspect {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sqlite_paths_stay_inside_data_dir() {
        let d = Path::new("/var/lib/rampart");
        assert_eq!(
            sqlite_path("sqlite://rampart.db", Some(d)).unwrap(),
            Path::new("/var/lib/rampart/rampart.db")
        );
        assert_eq!(
            sqlite_path("sqlite://db/creds.db", Some(d)).unwrap(),
            Path::new("/var/lib/rampart/db/creds.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/rampart/x.db", Some(d)).unwrap(),
            Path::new("/var/lib/rampart/x.db")
        );
        for bad in [
            "sqlite://../x.db",
            "sqlite:///etc/x.db",
            "sqlite:///var/lib/rampart",
            "sqlite:///var/lib/rampart-other/x.db",
            "sqlite://x.db?mode=rwc",
            "sqlite://:memory:",
            "sqlite://",
            "sqlite:x.db",
        ] {
            assert!(
                matches!(sqlite_path(bad, Some(d)), Err(StoreError::Config(_))),
                "{bad}"
            );
        }
        assert!(sqlite_path("sqlite://x.db", None).is_err());
        assert!(sqlite_path("sqlite://x.db", Some(Path::new("rel"))).is_err());
    }
}
