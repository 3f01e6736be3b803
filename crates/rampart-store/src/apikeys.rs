//! API keys in the store: created with a fresh 256-bit secret that is shown once and
//! stored only as `HMAC-SHA256(pepper, "rpk_<id>_<secret>")`; listed as metadata;
//! revoked by id.

use std::fmt;

use aws_lc_rs::hmac;
use sqlx::Row as _;
use zeroize::Zeroizing;

use crate::db::{Store, with_pool};
use crate::revocation::{BUMP_SEQ, Revocation, RevocationKind, UPSERT_REVOCATION};
use crate::when::now_unix;
use crate::{StoreError, key};

/// Longest name, tenant, scope or role accepted.
pub const MAX_FIELD_BYTES: usize = 128;
/// Most scopes or roles on one key.
pub const MAX_LIST: usize = 64;
/// Shortest pepper accepted (the HMAC-SHA256 key).
pub const MIN_PEPPER_BYTES: usize = 32;

/// Optional per-key rate-limit override (all `None` = the route's tier applies). Kept for
/// the rate-limit stage; the store only records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RateLimitOverride {
    pub per_minute: Option<u64>,
    pub burst: Option<u64>,
    pub tier: Option<String>,
}

/// What `create` needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewApiKey {
    pub name: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// Unix seconds; `None` = never expires.
    pub expires: Option<i64>,
    pub rate_limit: RateLimitOverride,
}

/// An API key's metadata. Never holds the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
    pub rate_limit: RateLimitOverride,
}

impl ApiKeyRecord {
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// The full key, shown to the operator once. Wiped on drop; `Debug` is redacted and there
/// is no `Display`.
pub struct ApiKeySecret(Zeroizing<String>);

impl ApiKeySecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret([redacted])")
    }
}

/// The HMAC key built from the configured pepper.
pub(crate) fn pepper_key(pepper: &rampart_config::secret::Secret) -> Result<hmac::Key, StoreError> {
    if pepper.len() < MIN_PEPPER_BYTES {
        return Err(StoreError::Config(format!(
            "auth.api_key.pepper must be at least {MIN_PEPPER_BYTES} bytes"
        )));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, pepper.expose()))
}

/// The pepper from `auth.api_key.pepper`, or a configuration error naming the key.
pub fn pepper_from_config(
    cfg: &rampart_config::Config,
) -> Result<&rampart_config::secret::Secret, StoreError> {
    cfg.later
        .auth
        .as_ref()
        .and_then(|a| a.api_key.as_ref())
        .and_then(|k| k.pepper.as_ref())
        .ok_or_else(|| {
            StoreError::Config(
                "auth.api_key.pepper is not set: API keys are stored as HMAC-SHA256 under it; \
                 set it to env:NAME or file:PATH (at least 32 bytes)"
                    .into(),
            )
        })
}

fn check_token(what: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > MAX_FIELD_BYTES {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1 to {MAX_FIELD_BYTES} bytes"
        )));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(StoreError::Invalid(format!(
            "{what} `{}` must be printable ASCII without spaces, quotes or backslashes",
            s.escape_debug()
        )));
    }
    Ok(())
}

fn check_new(k: &NewApiKey, now: i64) -> Result<(), StoreError> {
    if k.name.trim().is_empty()
        || k.name.len() > MAX_FIELD_BYTES
        || k.name.chars().any(char::is_control)
    {
        return Err(StoreError::Invalid(format!(
            "the name must be 1 to {MAX_FIELD_BYTES} bytes without control characters"
        )));
    }
    check_token("the tenant", &k.tenant)?;
    for (what, list) in [("scope", &k.scopes), ("role", &k.roles)] {
        if list.len() > MAX_LIST {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_LIST} {what}s per key"
            )));
        }
        for s in list {
            check_token(what, s)?;
        }
    }
    if k.expires.is_some_and(|e| e <= now) {
        return Err(StoreError::Invalid("the expiry is in the past".into()));
    }
    if let Some(t) = &k.rate_limit.tier {
        check_token("the rate-limit tier", t)?;
    }
    if k.rate_limit.per_minute == Some(0) || k.rate_limit.burst == Some(0) {
        return Err(StoreError::Invalid(
            "a rate-limit override must be at least 1".into(),
        ));
    }
    Ok(())
}

fn join(list: &[String]) -> String {
    let mut v: Vec<&str> = Vec::with_capacity(list.len());
    for s in list {
        if !v.contains(&s.as_str()) {
            v.push(s);
        }
    }
    v.join(" ")
}

pub(crate) fn split(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn to_i64(v: Option<u64>) -> Result<Option<i64>, StoreError> {
    v.map(|n| {
        i64::try_from(n).map_err(|_| StoreError::Invalid("rate-limit value too large".into()))
    })
    .transpose()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(
            H.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
        ));
        s.push(char::from(
            H.get(usize::from(b & 15)).copied().unwrap_or(b'0'),
        ));
    }
    s
}

/// 32 bytes from 64 hex digits.
pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (nib(*pair.first()?)?, nib(*pair.get(1)?)?);
        *o = (hi << 4) | lo;
    }
    Some(out)
}

/// One `api_keys` row into the record and its stored tag (a macro: the row type
/// differs per backend).
macro_rules! row_to_key {
    ($r:expr) => {{
        let r = $r;
        (|| -> Result<(ApiKeyRecord, [u8; 32]), StoreError> {
            let id: String = r.try_get("id")?;
            let hash: String = r.try_get("key_hash")?;
            let tag = unhex32(&hash)
                .ok_or_else(|| StoreError::Corrupt(format!("api key {id}: malformed key_hash")))?;
            let u = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
            let rec = ApiKeyRecord {
                name: r.try_get("name")?,
                tenant: r.try_get("tenant")?,
                scopes: split(&r.try_get::<String, _>("scopes")?),
                roles: split(&r.try_get::<String, _>("roles")?),
                created: r.try_get("created_at")?,
                expires: r.try_get("expires_at")?,
                revoked: r.try_get("revoked_at")?,
                rate_limit: RateLimitOverride {
                    per_minute: u(r.try_get("rate_per_minute")?),
                    burst: u(r.try_get("rate_burst")?),
                    tier: r.try_get("rate_tier")?,
                },
                id,
            };
            Ok((rec, tag))
        })()
    }};
}

/// Creates, lists and revokes API keys.
#[derive(Clone)]
pub struct ApiKeys {
    store: Store,
    pepper: hmac::Key,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// `pepper`: `auth.api_key.pepper` (at least 32 bytes).
    pub fn new(
        store: Store,
        pepper: &rampart_config::secret::Secret,
    ) -> Result<ApiKeys, StoreError> {
        Ok(ApiKeys {
            store,
            pepper: pepper_key(pepper)?,
        })
    }

    /// [`ApiKeys::new`] with the pepper of `cfg`.
    pub fn from_config(store: Store, cfg: &rampart_config::Config) -> Result<ApiKeys, StoreError> {
        ApiKeys::new(store, pepper_from_config(cfg)?)
    }

    /// Creates a key. The secret is returned once and never stored.
    pub async fn create(&self, req: NewApiKey) -> Result<(ApiKeyRecord, ApiKeySecret), StoreError> {
        let now = now_unix();
        check_new(&req, now)?;
        let per_minute = to_i64(req.rate_limit.per_minute)?;
        let burst = to_i64(req.rate_limit.burst)?;
        // A 71-bit random id practically never repeats; the primary key refuses it if it does.
        let id = key::new_id().map_err(|_| StoreError::Random)?;
        let secret = key::new_key(&id).map_err(|_| StoreError::Random)?;
        let body = secret
            .get(..key::KEY_LEN - key::CHECK_LEN - 1)
            .ok_or(StoreError::Random)?;
        let tag = hmac::sign(&self.pepper, body.as_bytes());
        let rec = ApiKeyRecord {
            id,
            name: req.name.trim().to_owned(),
            tenant: req.tenant,
            scopes: split(&join(&req.scopes)),
            roles: split(&join(&req.roles)),
            created: now,
            expires: req.expires,
            revoked: None,
            rate_limit: req.rate_limit,
        };
        let scopes = rec.scopes.join(" ");
        let roles = rec.roles.join(" ");
        let hash = hex(tag.as_ref());
        with_pool!(&self.store.pool, |p| {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO api_keys (id, name, tenant, scopes, roles, key_hash, created_at, \
                 expires_at, revoked_at, rate_per_minute, rate_burst, rate_tier, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12)",
            )
            .bind(&rec.id)
            .bind(&rec.name)
            .bind(&rec.tenant)
            .bind(&scopes)
            .bind(&roles)
            .bind(&hash)
            .bind(rec.created)
            .bind(rec.expires)
            .bind(per_minute)
            .bind(burst)
            .bind(rec.rate_limit.tier.as_deref())
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok((rec, ApiKeySecret(secret)))
    }

    /// Every key's metadata (revoked and expired ones included), oldest first.
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        list_api_keys(&self.store).await
    }

    /// One key's metadata.
    pub async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        if !key::is_key_id(id) {
            return Ok(None);
        }
        let row = with_pool!(&self.store.pool, |p| {
            let row = sqlx::query(
                "SELECT id, name, tenant, scopes, roles, key_hash, created_at, expires_at, \
                 revoked_at, rate_per_minute, rate_burst, rate_tier FROM api_keys WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?;
            row.map(|r| row_to_key!(&r)).transpose()
        })?;
        Ok(row.map(|(r, _)| r))
    }

    /// Revokes a key: marks its row and records an `apikey` revocation lapsing when the
    /// key would have expired, in one transaction, then publishes the revocation to Redis
    /// when configured. `Ok(false)`: no such key. Revoking twice keeps the first time.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.revoke_detailed(id).await?.is_some())
    }

    /// [`ApiKeys::revoke`], returning the revocation entry and the Redis outcome.
    pub async fn revoke_detailed(
        &self,
        id: &str,
    ) -> Result<Option<(Revocation, Option<Result<(), StoreError>>)>, StoreError> {
        revoke_key(&self.store, id).await
    }
}

/// Marks a key revoked and records its `apikey` revocation in one transaction, then
/// publishes (needs no pepper: `rampart revoke --apikey` uses it too).
pub(crate) async fn revoke_key(
    store: &Store,
    id: &str,
) -> Result<Option<(Revocation, Option<Result<(), StoreError>>)>, StoreError> {
    if !key::is_key_id(id) {
        return Ok(None);
    }
    let now = now_unix();
    let found = with_pool!(&store.pool, |p| async {
        let mut tx = p.begin().await?;
        let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
        let expires = sqlx::query_scalar::<_, Option<i64>>(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1), seq = $2 \
             WHERE id = $3 RETURNING expires_at",
        )
        .bind(now)
        .bind(seq)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(expires) = expires else {
            tx.rollback().await?;
            return Ok::<_, sqlx::Error>(None);
        };
        // An already-expired key needs no list entry; keep a short one anyway so
        // caches that missed the expiry still refuse it.
        let until = expires.map(|e| e.max(now + 60));
        sqlx::query(UPSERT_REVOCATION)
            .bind(RevocationKind::ApiKey.as_str())
            .bind(id)
            .bind(until)
            .bind(now)
            .bind(Some("apikey revoke"))
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(until))
    }
    .await)?;
    let Some(until) = found else {
        return Ok(None);
    };
    let rev = Revocation {
        kind: RevocationKind::ApiKey,
        value: id.to_owned(),
        until,
        created: now,
        reason: Some("apikey revoke".into()),
    };
    let published = match &store.bus {
        Some(bus) => Some(bus.publish(&rev).await),
        None => None,
    };
    Ok(Some((rev, published)))
}

/// Every key's metadata, oldest first ([`ApiKeys::list`] without needing the pepper).
pub async fn list_api_keys(store: &Store) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let rows = all_keys(store).await?;
    Ok(rows.into_iter().map(|(r, _)| r).collect())
}

/// Every key row, oldest first.
pub(crate) async fn all_keys(store: &Store) -> Result<Vec<(ApiKeyRecord, [u8; 32])>, StoreError> {
    with_pool!(&store.pool, |p| {
        let rows = sqlx::query(
            "SELECT id, name, tenant, scopes, roles, key_hash, created_at, expires_at, \
             revoked_at, rate_per_minute, rate_burst, rate_tier FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(p)
        .await?;
        rows.iter().map(|r| row_to_key!(r)).collect()
    })
}

/// Key rows with `seq` in `(after, upto]`, for the sync task.
pub(crate) async fn changed_keys(
    store: &Store,
    after: i64,
    upto: i64,
) -> Result<Vec<(ApiKeyRecord, [u8; 32])>, StoreError> {
    with_pool!(&store.pool, |p| {
        let rows = sqlx::query(
            "SELECT id, name, tenant, scopes, roles, key_hash, created_at, expires_at, \
             revoked_at, rate_per_minute, rate_burst, rate_tier FROM api_keys \
             WHERE seq > $1 AND seq <= $2",
        )
        .bind(after)
        .bind(upto)
        .fetch_all(p)
        .await?;
        rows.iter().map(|r| row_to_key!(r)).collect()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_round_trip() {
        let b: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
        let h = hex(&b);
        assert_eq!(h.len(), 64);
        assert_eq!(unhex32(&h).unwrap().to_vec(), b);
        assert!(unhex32(&h.to_uppercase()).is_none());
        assert!(unhex32("00").is_none());
    }

    #[test]
    fn new_key_checks() {
        let ok = NewApiKey {
            name: "ci deploy".into(),
            tenant: "acme".into(),
            scopes: vec!["jobs".into(), "metrics".into()],
            ..NewApiKey::default()
        };
        assert!(check_new(&ok, 0).is_ok());
        let bad = |f: fn(&mut NewApiKey)| {
            let mut k = ok.clone();
            f(&mut k);
            check_new(&k, 100).is_err()
        };
        assert!(bad(|k| k.name = " ".into()));
        assert!(bad(|k| k.tenant = "a b".into()));
        assert!(bad(|k| k.tenant = String::new()));
        assert!(bad(|k| k.scopes = vec!["x\"y".into()]));
        assert!(bad(|k| k.roles = vec!["r".into(); MAX_LIST + 1]));
        assert!(bad(|k| k.expires = Some(50)));
        assert_eq!(
            split(&join(&["a".into(), "b".into(), "a".into()])),
            ["a", "b"]
        );
    }
}
