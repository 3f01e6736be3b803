//! Revocations: token ids (`jti`), subjects, client-certificate fingerprints and API key
//! ids, each with the time it lapses (when the revoked credential would have expired;
//! `None` = never). [`Revocations`] writes them to the store (and Redis);
//! [`RevocationSet`] is the in-memory snapshot the request path reads without locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use sqlx::Row as _;

use crate::db::{Store, with_pool};
use crate::when::now_unix;
use crate::{StoreError, key};

/// One `revocations` row (a macro: the row type differs per backend).
macro_rules! row_to_revocation {
    ($r:expr) => {{
        let r = $r;
        (|| -> Result<Revocation, StoreError> {
            let kind: String = r.try_get("kind")?;
            let kind = RevocationKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown revocation kind `{kind}`")))?;
            Ok(Revocation {
                kind,
                value: r.try_get("value")?,
                until: r.try_get("until_at")?,
                created: r.try_get("created_at")?,
                reason: r.try_get("reason")?,
            })
        })()
    }};
}

/// Longest revoked value (a subject or token id) accepted.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Longest free-text reason kept with an entry.
pub const MAX_REASON_BYTES: usize = 512;

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RevocationKind {
    /// A JWT `jti`.
    #[serde(rename = "jti")]
    Jti,
    /// A subject (every credential of that identity).
    #[serde(rename = "subject")]
    Subject,
    /// A client certificate, by SHA-256 fingerprint of its DER (lower-case hex).
    #[serde(rename = "cert")]
    Cert,
    /// An API key, by its id.
    #[serde(rename = "apikey")]
    ApiKey,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::Subject => "subject",
            RevocationKind::Cert => "cert",
            RevocationKind::ApiKey => "apikey",
        }
    }

    pub fn parse(s: &str) -> Option<RevocationKind> {
        match s {
            "jti" => Some(RevocationKind::Jti),
            "subject" => Some(RevocationKind::Subject),
            "cert" => Some(RevocationKind::Cert),
            "apikey" => Some(RevocationKind::ApiKey),
            _ => None,
        }
    }
}

/// A revocation to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevocation {
    pub kind: RevocationKind,
    pub value: String,
    /// Unix seconds at which the entry lapses; `None` = never.
    pub until: Option<i64>,
    pub reason: Option<String>,
}

/// A recorded revocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revocation {
    pub kind: RevocationKind,
    pub value: String,
    pub until: Option<i64>,
    pub created: i64,
    pub reason: Option<String>,
}

/// `SHA256:`-prefixed, colon-separated or plain hex of 32 bytes, into lower-case hex.
pub fn normalize_cert_fp(s: &str) -> Option<String> {
    let t = s.trim();
    let t = match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("sha256:") => t.get(7..).unwrap_or(""),
        _ => t,
    };
    let hex: String = t
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Validates (and for certificates normalizes) a revoked value.
pub(crate) fn check_value(kind: RevocationKind, v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "a revoked {} must be 1 to {MAX_VALUE_BYTES} bytes",
            kind.as_str()
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(format!(
            "a revoked {} must not contain control characters",
            kind.as_str()
        ));
    }
    match kind {
        RevocationKind::Cert => normalize_cert_fp(v).ok_or_else(|| {
            "a certificate fingerprint is the SHA-256 of the DER certificate: 64 hex digits \
             (colons and a SHA256: prefix are accepted)"
                .to_owned()
        }),
        RevocationKind::ApiKey if !key::is_key_id(v) => Err(format!(
            "an API key id is {} letters and digits (the part after rpk_)",
            key::ID_LEN
        )),
        _ => Ok(v.to_owned()),
    }
}

/// The later of two lapse times (`None` = never, the latest of all).
fn later(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    }
}

/// Writes and lists revocations.
#[derive(Debug, Clone)]
pub struct Revocations {
    store: Store,
}

impl Revocations {
    pub fn new(store: Store) -> Revocations {
        Revocations { store }
    }

    /// Records a revocation (re-revoking keeps the later lapse time: an entry is never
    /// shortened), then publishes it to Redis when the store has `[redis] url`. A failed
    /// publish is logged and returned as `Ok`: the entry is in the store, which every
    /// gateway polls. Use [`Revocations::add_and_publish`] to learn about it.
    pub async fn add(&self, r: NewRevocation) -> Result<(), StoreError> {
        let (_, published) = self.add_and_publish(r).await?;
        if let Some(Err(e)) = published {
            tracing::warn!(error = %e, "revocation stored but not published to Redis; gateways pick it up by polling");
        }
        Ok(())
    }

    /// [`Revocations::add`], returning the stored entry and the Redis outcome (`None`
    /// without Redis).
    pub async fn add_and_publish(
        &self,
        r: NewRevocation,
    ) -> Result<(Revocation, Option<Result<(), StoreError>>), StoreError> {
        let rev = self.insert(r).await?;
        let published = match &self.store.bus {
            Some(bus) => Some(bus.publish(&rev).await),
            None => None,
        };
        Ok((rev, published))
    }

    async fn insert(&self, r: NewRevocation) -> Result<Revocation, StoreError> {
        let value = check_value(r.kind, &r.value).map_err(StoreError::Invalid)?;
        let reason = r.reason.filter(|s| !s.is_empty());
        if reason.as_ref().is_some_and(|s| s.len() > MAX_REASON_BYTES) {
            return Err(StoreError::Invalid(format!(
                "the reason is longer than {MAX_REASON_BYTES} bytes"
            )));
        }
        let now = now_unix();
        if r.until.is_some_and(|u| u <= now) {
            return Err(StoreError::Invalid("`until` is in the past".into()));
        }
        let rev = Revocation {
            kind: r.kind,
            value,
            until: r.until,
            created: now,
            reason,
        };
        with_pool!(&self.store.pool, |p| {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            sqlx::query(UPSERT_REVOCATION)
                .bind(rev.kind.as_str())
                .bind(&rev.value)
                .bind(rev.until)
                .bind(rev.created)
                .bind(rev.reason.as_deref())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(rev)
    }

    /// Revokes an API key by id: marks its row and records the `apikey` entry (lapsing
    /// when the key would have expired), as [`crate::ApiKeys::revoke`] does, without
    /// needing the pepper. `None`: no such key.
    pub async fn revoke_api_key(
        &self,
        id: &str,
    ) -> Result<Option<(Revocation, Option<Result<(), StoreError>>)>, StoreError> {
        crate::apikeys::revoke_key(&self.store, id).await
    }

    /// Entries that have not lapsed, oldest first.
    pub async fn list(&self) -> Result<Vec<Revocation>, StoreError> {
        let now = now_unix();
        let rows = with_pool!(&self.store.pool, |p| {
            let rows = sqlx::query(
                "SELECT kind, value, until_at, created_at, reason FROM revocations \
                 WHERE until_at IS NULL OR until_at > $1 ORDER BY created_at, kind, value",
            )
            .bind(now)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| row_to_revocation!(r))
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        Ok(rows)
    }

    /// Deletes entries that lapsed before `before` (Unix seconds); returns how many.
    pub async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        let n = with_pool!(&self.store.pool, |p| {
            sqlx::query("DELETE FROM revocations WHERE until_at IS NOT NULL AND until_at <= $1")
                .bind(before)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }
}

pub(crate) const BUMP_SEQ: &str =
    "UPDATE rampart_seq SET value = value + 1 WHERE name = 'changes' RETURNING value";

/// Upsert keeping the later lapse time (NULL = never).
pub(crate) const UPSERT_REVOCATION: &str = "INSERT INTO revocations \
     (kind, value, until_at, created_at, reason, seq) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (kind, value) DO UPDATE SET \
     until_at = CASE WHEN revocations.until_at IS NULL OR excluded.until_at IS NULL THEN NULL \
                     WHEN excluded.until_at > revocations.until_at THEN excluded.until_at \
                     ELSE revocations.until_at END, \
     reason = COALESCE(excluded.reason, revocations.reason), \
     seq = excluded.seq";

/// Revocations with `seq` in `(after, upto]`, for the sync task.
pub(crate) async fn changed(
    store: &Store,
    after: i64,
    upto: i64,
) -> Result<Vec<Revocation>, StoreError> {
    with_pool!(&store.pool, |p| {
        let rows = sqlx::query(
            "SELECT kind, value, until_at, created_at, reason FROM revocations \
             WHERE seq > $1 AND seq <= $2",
        )
        .bind(after)
        .bind(upto)
        .fetch_all(p)
        .await?;
        rows.iter().map(|r| row_to_revocation!(r)).collect()
    })
}

#[derive(Default, Clone)]
struct Snapshot {
    jti: HashMap<Box<str>, Option<i64>>,
    subject: HashMap<Box<str>, Option<i64>>,
    cert: HashMap<Box<str>, Option<i64>>,
    apikey: HashMap<Box<str>, Option<i64>>,
}

impl Snapshot {
    fn map(&self, k: RevocationKind) -> &HashMap<Box<str>, Option<i64>> {
        match k {
            RevocationKind::Jti => &self.jti,
            RevocationKind::Subject => &self.subject,
            RevocationKind::Cert => &self.cert,
            RevocationKind::ApiKey => &self.apikey,
        }
    }

    fn map_mut(&mut self, k: RevocationKind) -> &mut HashMap<Box<str>, Option<i64>> {
        match k {
            RevocationKind::Jti => &mut self.jti,
            RevocationKind::Subject => &mut self.subject,
            RevocationKind::Cert => &mut self.cert,
            RevocationKind::ApiKey => &mut self.apikey,
        }
    }

    fn insert(&mut self, r: Revocation, now: i64) {
        if r.until.is_some_and(|u| u <= now) {
            return;
        }
        let m = self.map_mut(r.kind);
        let until = match m.get(r.value.as_str()) {
            Some(old) => later(*old, r.until),
            None => r.until,
        };
        m.insert(r.value.into_boxed_str(), until);
    }

    fn len(&self) -> usize {
        self.jti.len() + self.subject.len() + self.cert.len() + self.apikey.len()
    }
}

/// The in-memory revocation list. Reads are lock-free (one atomic load of an
/// `Arc`); writers (the sync task, Redis, the admin API) copy and swap.
#[derive(Default)]
pub struct RevocationSet {
    snap: ArcSwap<Snapshot>,
    loaded: AtomicBool,
    redis: AtomicBool,
}

impl std::fmt::Debug for RevocationSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationSet")
            .field("len", &self.len())
            .finish()
    }
}

impl RevocationSet {
    pub fn new() -> RevocationSet {
        RevocationSet::default()
    }

    fn revoked_at(&self, kind: RevocationKind, v: &str, now: i64) -> bool {
        self.snap
            .load()
            .map(kind)
            .get(v)
            .is_some_and(|until| until.is_none_or(|u| u > now))
    }

    /// Whether `value` of `kind` is revoked at `now` (Unix seconds).
    pub fn is_revoked_at(&self, kind: RevocationKind, value: &str, now: i64) -> bool {
        if kind == RevocationKind::Cert
            && !value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return normalize_cert_fp(value).is_some_and(|n| self.revoked_at(kind, &n, now));
        }
        self.revoked_at(kind, value, now)
    }

    pub fn is_revoked_jti(&self, jti: &str) -> bool {
        self.revoked_at(RevocationKind::Jti, jti, now_unix())
    }

    pub fn is_revoked_subject(&self, s: &str) -> bool {
        self.revoked_at(RevocationKind::Subject, s, now_unix())
    }

    /// `fp`: SHA-256 of the certificate's DER, hex (any case, colons allowed).
    pub fn is_revoked_cert(&self, fp: &str) -> bool {
        self.is_revoked_at(RevocationKind::Cert, fp, now_unix())
    }

    pub fn is_revoked_apikey(&self, id: &str) -> bool {
        self.revoked_at(RevocationKind::ApiKey, id, now_unix())
    }

    /// Entries held (lapsed ones are dropped by [`RevocationSet::prune`]).
    pub fn len(&self) -> usize {
        self.snap.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first full load from the store has completed.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub(crate) fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether the Redis subscription is up (subscribed and the set read). `false`
    /// without Redis, and while reconnecting: revocations then arrive by polling only.
    pub fn redis_subscribed(&self) -> bool {
        self.redis.load(Ordering::Acquire)
    }

    pub(crate) fn set_redis_subscribed(&self, up: bool) {
        self.redis.store(up, Ordering::Release);
    }

    /// Adds one entry now (e.g. the admin API on the node that revoked).
    pub fn insert(&self, r: Revocation) {
        self.insert_many(std::iter::once(r));
    }

    pub fn insert_many(&self, rs: impl IntoIterator<Item = Revocation>) {
        let rs: Vec<Revocation> = rs.into_iter().collect();
        if rs.is_empty() {
            return;
        }
        let now = now_unix();
        let mut next = Snapshot::clone(&self.snap.load());
        for r in rs {
            next.insert(r, now);
        }
        self.snap.store(Arc::new(next));
    }

    /// Drops entries that lapsed at or before `now`.
    pub fn prune(&self, now: i64) {
        let cur = self.snap.load();
        let lapsed =
            |m: &HashMap<Box<str>, Option<i64>>| m.values().any(|u| u.is_some_and(|u| u <= now));
        if !(lapsed(&cur.jti) || lapsed(&cur.subject) || lapsed(&cur.cert) || lapsed(&cur.apikey)) {
            return;
        }
        let mut next = Snapshot::clone(&cur);
        for m in [
            &mut next.jti,
            &mut next.subject,
            &mut next.cert,
            &mut next.apikey,
        ] {
            m.retain(|_, u| u.is_none_or(|u| u > now));
        }
        self.snap.store(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rev(kind: RevocationKind, v: &str, until: Option<i64>) -> Revocation {
        Revocation {
            kind,
            value: v.into(),
            until,
            created: 0,
            reason: None,
        }
    }

    #[test]
    fn set_lookups_and_lapse() {
        let s = RevocationSet::new();
        let now = now_unix();
        s.insert(rev(RevocationKind::Jti, "t1", Some(now + 100)));
        s.insert(rev(RevocationKind::Subject, "alice", None));
        s.insert(rev(RevocationKind::Jti, "old", Some(now - 1)));
        assert!(s.is_revoked_jti("t1"));
        assert!(!s.is_revoked_subject("t1"), "kinds are separate");
        assert!(s.is_revoked_subject("alice"));
        assert!(!s.is_revoked_jti("old"), "already lapsed: not even stored");
        assert_eq!(s.len(), 2);
        assert!(!s.is_revoked_at(RevocationKind::Jti, "t1", now + 100));
        // Re-revoking keeps the later time.
        s.insert(rev(RevocationKind::Jti, "t1", Some(now + 10)));
        assert!(s.is_revoked_at(RevocationKind::Jti, "t1", now + 50));
        s.insert(rev(RevocationKind::Jti, "t1", None));
        assert!(s.is_revoked_at(RevocationKind::Jti, "t1", now + 1_000_000));
        s.insert(rev(RevocationKind::Subject, "bob", Some(now + 5)));
        s.prune(now + 10);
        assert!(!s.is_revoked_subject("bob"));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn cert_fingerprints_normalize() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(normalize_cert_fp(&hex).unwrap(), hex);
        assert_eq!(normalize_cert_fp(&colons).unwrap(), hex);
        assert_eq!(normalize_cert_fp(&format!("SHA256:{colons}")).unwrap(), hex);
        assert!(normalize_cert_fp("abc").is_none());
        assert!(normalize_cert_fp(&"zz".repeat(32)).is_none());
        assert!(normalize_cert_fp("sha256é").is_none());
        let s = RevocationSet::new();
        s.insert(rev(RevocationKind::Cert, &hex, None));
        assert!(s.is_revoked_cert(&hex));
        assert!(s.is_revoked_cert(&colons));
        assert!(!s.is_revoked_cert(&"cd".repeat(32)));
    }

    #[test]
    fn values_are_checked() {
        assert!(check_value(RevocationKind::Jti, "").is_err());
        assert!(check_value(RevocationKind::Jti, &"x".repeat(MAX_VALUE_BYTES + 1)).is_err());
        assert!(check_value(RevocationKind::Subject, "a\nb").is_err());
        assert!(check_value(RevocationKind::ApiKey, "short").is_err());
        assert_eq!(
            check_value(RevocationKind::ApiKey, "abcDEF123456").unwrap(),
            "abcDEF123456"
        );
    }
}
