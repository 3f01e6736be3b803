//! The PostgreSQL sink: several gateways write their audit chains into one database, one
//! chain per node (`audit.node_id`), so an auditor verifies every gateway from one place.
//!
//! The writer thread inserts each batch (the very record lines of the segment files) in
//! one transaction after the batch's `write(2)` and before any record of it is
//! acknowledged: a record whose response completed is committed in PostgreSQL too. When
//! the commit fails the batch is refused as a whole (and cut from the segment file), so
//! `on_failure` applies as for a full disk. Signed checkpoints go to a second table.
//!
//! Guards against: a record acknowledged but missing from the database (commit before
//! ack; records of a crash between the file write and the commit are re-inserted from the
//! segment files at the next start); a gateway whose files and database chain disagree
//! (start refused); a database role that could rewrite history (the role of
//! `deploy/postgres/audit.sql` holds INSERT and SELECT only, and triggers refuse UPDATE,
//! DELETE and TRUNCATE to everyone but a superuser who disables them; what such a
//! superuser changes, `rampart audit verify --postgres` names by `seq`). Trusts: the
//! database to keep what it committed, and the URL's TLS settings. The URL may hold a
//! password: it is never logged or put in an error.
//!
//! Tables (created by an administrator with `deploy/postgres/audit.sql`; the gateway only
//! checks them): `rampart_audit_records (node, seq, ts, record, prev, hash)`, primary key
//! `(node, seq)`, `record` the exact line as text (a `jsonb` column would re-spell it and
//! break its hash; cast `record::jsonb` to query it), and `rampart_audit_checkpoints (node,
//! size, ts, key_id, fingerprint, why, note)`, the members of `checkpoints.jsonl`.

use std::str::FromStr as _;
use std::time::Duration;

use rampart_config::secret::Secret;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection as _, Row as _};

use crate::segment::CheckpointEntry;

/// Upper bound on one database round trip (connect, insert, commit); past it the batch
/// fails like an I/O error.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows read per query by the verifier.
const PAGE: i64 = 10_000;

/// Settings of the sink (`audit.postgres_url`, `audit.node_id`).
#[derive(Debug, Clone)]
pub struct PgSinkConfig {
    /// Redacted in `Debug`; zeroized on drop.
    pub url: Secret,
    pub node: String,
}

/// Why the sink failed. Messages never contain the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgError {
    #[error("audit.postgres_url: not a valid postgres:// URL")]
    Url,
    #[error("PostgreSQL audit sink: {0}")]
    Db(String),
    #[error("PostgreSQL audit sink: no answer within {}s", OP_TIMEOUT.as_secs())]
    Timeout,
    #[error(
        "PostgreSQL audit sink: table {0} is missing or not readable; create it with deploy/postgres/audit.sql"
    )]
    Schema(&'static str),
}

fn db(e: &sqlx::Error) -> PgError {
    // sqlx's messages name the server's error, never the connection URL.
    match e {
        sqlx::Error::Database(d) => PgError::Db(format!(
            "{} (SQLSTATE {})",
            d.message(),
            d.code().unwrap_or_default()
        )),
        other => PgError::Db(other.to_string()),
    }
}

fn options(url: &Secret) -> Result<PgConnectOptions, PgError> {
    let s = url.expose_str().ok_or(PgError::Url)?;
    PgConnectOptions::from_str(s)
        .map(|o| o.application_name("rampart-audit"))
        .map_err(|_| PgError::Url)
}

fn runtime() -> Result<tokio::runtime::Runtime, PgError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PgError::Db(format!("runtime: {e}")))
}

async fn within<T>(
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, PgError> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| db(&e)),
        Err(_) => Err(PgError::Timeout),
    }
}

/// One record row: the segment line and the columns derived from it.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: u64,
    pub ts: String,
    pub line: String,
    pub prev: String,
    pub hash: String,
}

/// The writer's connection. Blocking: used from the writer thread (never from an async
/// context). A failed operation drops the connection; the next one reconnects.
pub struct PgSink {
    rt: tokio::runtime::Runtime,
    opts: PgConnectOptions,
    conn: Option<PgConnection>,
    node: String,
}

impl std::fmt::Debug for PgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSink")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn to_i64(n: u64) -> Result<i64, PgError> {
    i64::try_from(n).map_err(|_| PgError::Db(format!("{n} is out of range")))
}

impl PgSink {
    /// Connects and checks that both tables exist and are readable.
    pub fn connect(cfg: &PgSinkConfig) -> Result<Self, PgError> {
        let mut s = Self {
            rt: runtime()?,
            opts: options(&cfg.url)?,
            conn: None,
            node: cfg.node.clone(),
        };
        s.with_conn(|c| {
            Box::pin(async move {
                for (t, q) in [
                    (
                        "rampart_audit_records",
                        "SELECT 1 FROM rampart_audit_records LIMIT 0",
                    ),
                    (
                        "rampart_audit_checkpoints",
                        "SELECT 1 FROM rampart_audit_checkpoints LIMIT 0",
                    ),
                ] {
                    within(sqlx::query(q).execute(&mut *c))
                        .await
                        .map_err(|e| match e {
                            PgError::Timeout => PgError::Timeout,
                            _ => PgError::Schema(t),
                        })?;
                }
                Ok(())
            })
        })?;
        Ok(s)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn with_conn<T>(
        &mut self,
        f: impl for<'c> FnOnce(
            &'c mut PgConnection,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, PgError>> + 'c>,
        >,
    ) -> Result<T, PgError> {
        let opts = self.opts.clone();
        let conn = &mut self.conn;
        let r = self.rt.block_on(async move {
            if conn.is_none() {
                *conn = Some(within(PgConnection::connect_with(&opts)).await?);
            }
            match conn.as_mut() {
                Some(c) => f(c).await,
                None => Err(PgError::Db("not connected".into())),
            }
        });
        if r.is_err() {
            // Whatever state the connection is in, start afresh next time.
            self.conn = None;
        }
        r
    }

    /// The next seq of this node's chain in the database and the hash of its last record.
    pub fn head(&mut self) -> Result<(u64, Option<String>), PgError> {
        let node = self.node.clone();
        self.with_conn(|c| {
            Box::pin(async move {
                let row = within(
                    sqlx::query(
                        "SELECT seq, hash FROM rampart_audit_records WHERE node = $1 ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(node)
                    .fetch_optional(&mut *c),
                )
                .await?;
                match row {
                    None => Ok((0, None)),
                    Some(r) => {
                        let seq: i64 = r.try_get(0).map_err(|e| db(&e))?;
                        let hash: String = r.try_get(1).map_err(|e| db(&e))?;
                        let next = u64::try_from(seq)
                            .map_err(|_| PgError::Db(format!("negative seq {seq}")))?
                            + 1;
                        Ok((next, Some(hash)))
                    }
                }
            })
        })
    }

    /// Inserts `rows` (consecutive seqs) in one transaction.
    pub fn insert(&mut self, rows: Vec<Row>) -> Result<(), PgError> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let (mut seqs, mut ts, mut lines, mut prevs, mut hashes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for r in rows {
            seqs.push(to_i64(r.seq)?);
            ts.push(r.ts);
            lines.push(r.line);
            prevs.push(r.prev);
            hashes.push(r.hash);
        }
        let node = self.node.clone();
        self.with_conn(move |c| {
            Box::pin(async move {
                let mut tx = within(c.begin()).await?;
                within(
                    sqlx::query(
                        "INSERT INTO rampart_audit_records (node, seq, ts, record, prev, hash) \
                         SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])",
                    )
                    .bind(node)
                    .bind(seqs)
                    .bind(ts)
                    .bind(lines)
                    .bind(prevs)
                    .bind(hashes)
                    .execute(&mut *tx),
                )
                .await?;
                within(tx.commit()).await
            })
        })
    }

    /// Stores a signed checkpoint (the same entry as in `checkpoints.jsonl`).
    pub fn insert_checkpoint(&mut self, e: &CheckpointEntry) -> Result<(), PgError> {
        let size = to_i64(e.size)?;
        let e = e.clone();
        let node = self.node.clone();
        self.with_conn(move |c| {
            Box::pin(async move {
                within(
                    sqlx::query(
                        "INSERT INTO rampart_audit_checkpoints (node, size, ts, key_id, fingerprint, why, note) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(node)
                    .bind(size)
                    .bind(e.ts)
                    .bind(e.key_id)
                    .bind(e.fingerprint)
                    .bind(e.why)
                    .bind(e.note)
                    .execute(&mut *c),
                )
                .await
                .map(|_| ())
            })
        })
    }
}

/// A read-only view of the sink for `rampart audit verify --postgres`.
pub struct PgReader {
    rt: tokio::runtime::Runtime,
    conn: PgConnection,
}

/// One stored record row as read back.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub seq: i64,
    pub record: String,
    pub prev: String,
    pub hash: String,
}

impl PgReader {
    pub fn connect(url: &Secret) -> Result<Self, PgError> {
        let rt = runtime()?;
        let opts = options(url)?;
        let conn = rt.block_on(within(PgConnection::connect_with(&opts)))?;
        Ok(Self { rt, conn })
    }

    /// Every node with records or checkpoints, sorted.
    pub fn nodes(&mut self) -> Result<Vec<String>, PgError> {
        let c = &mut self.conn;
        self.rt.block_on(async move {
            let rows = within(
                sqlx::query(
                    "SELECT node FROM rampart_audit_records UNION SELECT node FROM rampart_audit_checkpoints ORDER BY 1",
                )
                .fetch_all(&mut *c),
            )
            .await?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(|e| db(&e)))
                .collect()
        })
    }

    /// This node's checkpoints, in insertion order.
    pub fn checkpoints(&mut self, node: &str) -> Result<Vec<CheckpointEntry>, PgError> {
        let c = &mut self.conn;
        self.rt.block_on(async move {
            let rows = within(
                sqlx::query(
                    "SELECT size, ts, key_id, fingerprint, why, note FROM rampart_audit_checkpoints \
                     WHERE node = $1 ORDER BY size, ts",
                )
                .bind(node)
                .fetch_all(&mut *c),
            )
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let size: i64 = r.try_get(0).map_err(|e| db(&e))?;
                out.push(CheckpointEntry {
                    size: u64::try_from(size)
                        .map_err(|_| PgError::Db(format!("negative checkpoint size {size}")))?,
                    ts: r.try_get(1).map_err(|e| db(&e))?,
                    key_id: r.try_get(2).map_err(|e| db(&e))?,
                    fingerprint: r.try_get(3).map_err(|e| db(&e))?,
                    why: r.try_get(4).map_err(|e| db(&e))?,
                    note: r.try_get(5).map_err(|e| db(&e))?,
                });
            }
            Ok(out)
        })
    }

    /// Up to [`PAGE`] records of `node` with a seq above `after` (-1: from the start), by
    /// seq.
    pub fn records_after(&mut self, node: &str, after: i64) -> Result<Vec<StoredRow>, PgError> {
        let c = &mut self.conn;
        self.rt.block_on(async move {
            let rows = within(
                sqlx::query(
                    "SELECT seq, record, prev, hash FROM rampart_audit_records \
                     WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(node)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&mut *c),
            )
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(StoredRow {
                    seq: r.try_get(0).map_err(|e| db(&e))?,
                    record: r.try_get(1).map_err(|e| db(&e))?,
                    prev: r.try_get(2).map_err(|e| db(&e))?,
                    hash: r.try_get(3).map_err(|e| db(&e))?,
                });
            }
            Ok(out)
        })
    }
}
