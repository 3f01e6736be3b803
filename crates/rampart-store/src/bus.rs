//! Redis fan-out of revocations between gateways.
//!
//! A revocation is written to the store first (the source of truth, polled by every
//! gateway), then sent to Redis twice in one `MULTI`: `SADD <ns>:revocations <json>`
//! (the set late starters read at start) and `PUBLISH <ns>:revocations <json>` (the
//! channel running gateways subscribe to). The JSON is
//! `{"kind":"jti|subject|cert|apikey","value":"…","until":UNIX_SECONDS|null}`.
//!
//! What Redis can do to a gateway: add revocations (deny requests), never grant
//! anything. Messages are size-capped and validated like any other revocation; the set
//! is read with `SSCAN` up to [`MAX_REDIS_ENTRIES`] members.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};

use crate::StoreError;
use crate::cache::ApiKeyCache;
use crate::revocation::{Revocation, RevocationKind, RevocationSet};
use crate::when::now_unix;

/// Largest message accepted from the channel or the set.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Most set members read at start.
pub const MAX_REDIS_ENTRIES: usize = 1_000_000;
/// Most messages applied as one batch.
const MAX_BATCH: usize = 1024;
/// A publish that takes longer is abandoned (the store poll still delivers it).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis URL (it may hold a password: never printed) and the key namespace.
#[derive(Clone)]
pub struct RedisUrl {
    client: redis::Client,
    namespace: String,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("url", &"[redacted]")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl RedisUrl {
    /// `redis://…` or `rediss://…` (TLS). Namespace `rampart`.
    pub fn new(url: &str) -> Result<RedisUrl, StoreError> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(StoreError::Config(
                "redis.url must start with redis:// or rediss://".into(),
            ));
        }
        // The parser's message may quote the URL: keep it out.
        let client = redis::Client::open(url)
            .map_err(|_| StoreError::Config("redis.url is not a valid Redis URL".into()))?;
        Ok(RedisUrl {
            client,
            namespace: "rampart".into(),
        })
    }

    pub fn from_secret(s: &rampart_config::secret::Secret) -> Result<RedisUrl, StoreError> {
        let u = s
            .expose_str()
            .ok_or_else(|| StoreError::Config("redis.url is not UTF-8".into()))?;
        RedisUrl::new(u)
    }

    /// Keys and channels are `<namespace>:revocations` (several deployments, or test
    /// runs, can share one Redis).
    #[must_use]
    pub fn with_namespace(mut self, ns: &str) -> RedisUrl {
        ns.clone_into(&mut self.namespace);
        self
    }

    pub fn channel(&self) -> String {
        format!("{}:revocations", self.namespace)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    kind: RevocationKind,
    value: String,
    until: Option<i64>,
}

pub(crate) fn encode(r: &Revocation) -> Result<String, StoreError> {
    serde_json::to_string(&Wire {
        kind: r.kind,
        value: r.value.clone(),
        until: r.until,
    })
    .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// A message from Redis, validated like an operator's entry.
pub(crate) fn decode(payload: &[u8]) -> Option<Revocation> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let w: Wire = serde_json::from_slice(payload).ok()?;
    let value = crate::revocation::check_value(w.kind, &w.value).ok()?;
    Some(Revocation {
        kind: w.kind,
        value,
        until: w.until,
        created: now_unix(),
        reason: None,
    })
}

/// The publishing side, held by a [`crate::Store`].
pub(crate) struct Bus {
    url: RedisUrl,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Bus {
    pub fn new(url: RedisUrl) -> Bus {
        Bus {
            url,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn publish(&self, r: &Revocation) -> Result<(), StoreError> {
        let payload = encode(r)?;
        let key = self.url.channel();
        let fut = async {
            let mut guard = self.conn.lock().await;
            let mut conn = match guard.take() {
                Some(c) => c,
                None => self.url.client.get_multiplexed_async_connection().await?,
            };
            redis::pipe()
                .atomic()
                .cmd("SADD")
                .arg(&key)
                .arg(&payload)
                .ignore()
                .cmd("PUBLISH")
                .arg(&key)
                .arg(&payload)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            *guard = Some(conn);
            Ok::<(), redis::RedisError>(())
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Redis(redis_reason(&e))),
            Err(_) => Err(StoreError::Redis("timed out".into())),
        }
    }
}

/// A Redis error without anything that could come from the URL.
pub(crate) fn redis_reason(e: &redis::RedisError) -> String {
    format!("{:?}", e.kind())
}

/// Reads the set (late starters see every live revocation), dropping expired members.
async fn read_set(
    url: &RedisUrl,
    revs: &RevocationSet,
    keys: &ApiKeyCache,
) -> redis::RedisResult<usize> {
    let mut conn = url.client.get_multiplexed_async_connection().await?;
    let key = url.channel();
    let now = now_unix();
    let mut cursor: u64 = 0;
    let mut seen = 0usize;
    let mut live = Vec::new();
    let mut expired: Vec<Vec<u8>> = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SSCAN")
            .arg(&key)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        for m in batch {
            seen += 1;
            match decode(&m) {
                Some(r) if r.until.is_some_and(|u| u <= now) => expired.push(m),
                Some(r) => live.push(r),
                None => tracing::warn!("ignoring a malformed member of the Redis revocation set"),
            }
        }
        cursor = next;
        if cursor == 0 || seen >= MAX_REDIS_ENTRIES {
            break;
        }
    }
    if seen >= MAX_REDIS_ENTRIES {
        tracing::error!(
            max = MAX_REDIS_ENTRIES,
            "Redis revocation set too large; read only the first members (the store poll still covers the rest)"
        );
    }
    for r in &live {
        if r.kind == RevocationKind::ApiKey {
            keys.mark_revoked(&r.value, now);
        }
    }
    let n = live.len();
    revs.insert_many(live);
    if !expired.is_empty() {
        redis::cmd("SREM")
            .arg(&key)
            .arg(expired)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(n)
}

/// Subscribes, then reads the set (in that order, so nothing published in between is
/// lost), then applies every message until the connection drops.
async fn subscribe_once(
    url: &RedisUrl,
    revs: &RevocationSet,
    keys: &ApiKeyCache,
) -> redis::RedisResult<()> {
    let mut ps = url.client.get_async_pubsub().await?;
    ps.subscribe(url.channel()).await?;
    let n = read_set(url, revs, keys).await?;
    revs.set_redis_subscribed(true);
    tracing::info!(entries = n, "subscribed to Redis revocation fan-out");
    let mut stream = ps.on_message();
    while let Some(first) = stream.next().await {
        // A burst is applied as one batch: one snapshot copy, not one per message.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match stream.next().now_or_never() {
                Some(Some(m)) => batch.push(m),
                _ => break,
            }
        }
        let mut list = Vec::with_capacity(batch.len());
        for msg in &batch {
            match decode(msg.get_payload_bytes()) {
                Some(r) => {
                    if r.kind == RevocationKind::ApiKey {
                        keys.mark_revoked(&r.value, now_unix());
                    }
                    list.push(r);
                }
                None => tracing::warn!("ignoring a malformed Redis revocation message"),
            }
        }
        revs.insert_many(list);
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Io,
        "subscription closed",
    )))
}

/// Runs the subscription forever, reconnecting with backoff (0.5 s doubling to 10 s).
pub(crate) async fn subscribe_loop(
    url: RedisUrl,
    revs: Arc<RevocationSet>,
    keys: Arc<ApiKeyCache>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = tokio::time::Instant::now();
        let result = subscribe_once(&url, &revs, &keys).await;
        revs.set_redis_subscribed(false);
        if let Err(e) = result {
            tracing::warn!(reason = %redis_reason(&e), "Redis revocation subscription failed; retrying");
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
