//! Nonce memory, so a captured request cannot be replayed while it is still fresh.
//!
//! A nonce is remembered per device until `created + max_age`; after that the `created`
//! check alone refuses the request, so nothing older needs remembering. Nonces are recorded
//! only after the signature verified, so nobody can fill the store or burn a device's nonces
//! without its key. Keys are SHA-256 of `keyid \0 nonce`: fixed size, and a device's nonces
//! cannot collide with another's.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::digest;

/// What the store said about a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// Not seen before; now remembered.
    Fresh,
    /// Seen before and still remembered: a replay.
    Replay,
}

/// Why the store could not answer. The gateway's side, never the client's; the request is
/// refused (fail closed) either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// The in-memory store holds its maximum of unexpired nonces.
    #[error("nonce store full")]
    Full,
    /// The shared store (Redis) did not answer in time or answered with an error.
    #[error("nonce store unavailable: {0}")]
    Unavailable(String),
}

/// A boxed future, so the trait can be used as `dyn NonceStore`.
pub type NonceFuture<'a> =
    Pin<Box<dyn Future<Output = Result<NonceOutcome, NonceError>> + Send + 'a>>;

/// Remembers nonces until an expiry time; answers whether one was seen.
pub trait NonceStore: Send + Sync {
    /// Record `nonce` of device `keyid` until `until` (Unix seconds), unless it is already
    /// remembered. `now` is the verifier's clock.
    fn remember<'a>(
        &'a self,
        keyid: &'a str,
        nonce: &'a str,
        now: u64,
        until: u64,
    ) -> NonceFuture<'a>;
}

fn nonce_key(keyid: &str, nonce: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(keyid.as_bytes());
    ctx.update(&[0]);
    ctx.update(nonce.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// One gateway's nonces, in memory. Bounded: at `capacity` unexpired nonces it refuses new
/// ones ([`NonceError::Full`]) rather than forget one early, which would allow a replay.
pub struct MemoryNonceStore {
    capacity: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    seen: HashMap<[u8; 32], u64>,
    by_expiry: BinaryHeap<Reverse<(u64, [u8; 32])>>,
}

impl std::fmt::Debug for MemoryNonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNonceStore")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl MemoryNonceStore {
    /// A store holding at most `capacity` unexpired nonces.
    pub fn new(capacity: usize) -> Self {
        MemoryNonceStore {
            capacity,
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    /// Unexpired nonces held (after purging those expired at `now`).
    pub fn len(&self, now: u64) -> usize {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.purge(now);
        g.seen.len()
    }

    /// Whether no nonce is held at `now`.
    pub fn is_empty(&self, now: u64) -> bool {
        self.len(now) == 0
    }

    fn remember_sync(
        &self,
        keyid: &str,
        nonce: &str,
        now: u64,
        until: u64,
    ) -> Result<NonceOutcome, NonceError> {
        let key = nonce_key(keyid, nonce);
        // A poisoned lock only means another thread panicked mid-update; the map is still
        // a valid map, so keep serving rather than refuse every signed request.
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.purge(now);
        if g.seen.contains_key(&key) {
            return Ok(NonceOutcome::Replay);
        }
        if g.seen.len() >= self.capacity {
            return Err(NonceError::Full);
        }
        g.seen.insert(key, until);
        g.by_expiry.push(Reverse((until, key)));
        Ok(NonceOutcome::Fresh)
    }
}

impl MemoryInner {
    fn purge(&mut self, now: u64) {
        while let Some(Reverse((exp, key))) = self.by_expiry.peek().copied() {
            if exp > now {
                break;
            }
            self.by_expiry.pop();
            if self.seen.get(&key) == Some(&exp) {
                self.seen.remove(&key);
            }
        }
    }
}

impl NonceStore for MemoryNonceStore {
    fn remember<'a>(
        &'a self,
        keyid: &'a str,
        nonce: &'a str,
        now: u64,
        until: u64,
    ) -> NonceFuture<'a> {
        let r = self.remember_sync(keyid, nonce, now, until);
        Box::pin(std::future::ready(r))
    }
}

/// Nonces shared by several gateways in Redis: `SET key 1 NX EX ttl`, one round trip.
pub struct RedisNonceStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisNonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("RedisNonceStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisNonceStore {
    /// A store on `client`, keys under `prefix` (e.g. `rampart:sig:nonce:`), each command
    /// bounded by `timeout`. Connects lazily, and again after an error.
    pub fn new(client: redis::Client, prefix: impl Into<String>, timeout: Duration) -> Self {
        RedisNonceStore {
            client,
            prefix: prefix.into(),
            timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_multiplexed_async_connection().await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn remember_async(
        &self,
        keyid: &str,
        nonce: &str,
        now: u64,
        until: u64,
    ) -> Result<NonceOutcome, NonceError> {
        let key = nonce_key(keyid, nonce);
        let mut name = self.prefix.clone();
        for b in key {
            name.push_str(&format!("{b:02x}"));
        }
        let ttl = until.saturating_sub(now).max(1);
        let fut = async {
            let mut conn = self.connection().await?;
            redis::cmd("SET")
                .arg(&name)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(ttl)
                .query_async::<Option<String>>(&mut conn)
                .await
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(Some(_))) => Ok(NonceOutcome::Fresh),
            Ok(Ok(None)) => Ok(NonceOutcome::Replay),
            Ok(Err(e)) => {
                *self.conn.lock().await = None;
                // The category only: the error text can echo connection details.
                Err(NonceError::Unavailable(format!("{:?}", e.kind())))
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err(NonceError::Unavailable("timed out".into()))
            }
        }
    }
}

impl NonceStore for RedisNonceStore {
    fn remember<'a>(
        &'a self,
        keyid: &'a str,
        nonce: &'a str,
        now: u64,
        until: u64,
    ) -> NonceFuture<'a> {
        Box::pin(self.remember_async(keyid, nonce, now, until))
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_refuses_replay_until_expiry_then_forgets() {
        let s = MemoryNonceStore::new(10);
        assert_eq!(
            s.remember("dev", "n1", 100, 400).await,
            Ok(NonceOutcome::Fresh)
        );
        assert_eq!(
            s.remember("dev", "n1", 399, 400).await,
            Ok(NonceOutcome::Replay)
        );
        // Another device's nonce of the same text is its own.
        assert_eq!(
            s.remember("other", "n1", 399, 400).await,
            Ok(NonceOutcome::Fresh)
        );
        assert_eq!(s.len(399), 2);
        assert!(s.is_empty(400));
        assert_eq!(
            s.remember("dev", "n1", 400, 700).await,
            Ok(NonceOutcome::Fresh)
        );
    }

    #[tokio::test]
    async fn memory_is_bounded_and_fails_closed() {
        let s = MemoryNonceStore::new(2);
        assert_eq!(s.remember("d", "a", 0, 50).await, Ok(NonceOutcome::Fresh));
        assert_eq!(s.remember("d", "b", 0, 60).await, Ok(NonceOutcome::Fresh));
        assert_eq!(s.remember("d", "c", 10, 60).await, Err(NonceError::Full));
        // A replay is still recognised when full.
        assert_eq!(s.remember("d", "a", 10, 50).await, Ok(NonceOutcome::Replay));
        // Once one expires there is room again.
        assert_eq!(s.remember("d", "c", 50, 110).await, Ok(NonceOutcome::Fresh));
    }

    #[tokio::test]
    async fn redis_set_nx_shares_nonces_between_stores() {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        // A prefix per run, so reruns never see an earlier run's keys.
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!("rampart:test:sig:{run}:");
        let a = RedisNonceStore::new(client.clone(), prefix.clone(), Duration::from_secs(2));
        let b = RedisNonceStore::new(client.clone(), prefix.clone(), Duration::from_secs(2));
        assert_eq!(
            a.remember("dev", "n", 100, 400).await,
            Ok(NonceOutcome::Fresh)
        );
        assert_eq!(
            b.remember("dev", "n", 101, 400).await,
            Ok(NonceOutcome::Replay)
        );
        assert_eq!(
            b.remember("dev2", "n", 101, 400).await,
            Ok(NonceOutcome::Fresh)
        );
        // The key expires with created + max_age: TTL is until - now.
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 2);
        for k in &keys {
            let ttl: i64 = redis::cmd("TTL")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!((295..=300).contains(&ttl), "ttl {ttl}");
            assert_eq!(k.len(), prefix.len() + 64, "fixed-size hashed key");
        }
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn redis_down_fails_closed() {
        // Port 1 on loopback: nothing listens there.
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let s = RedisNonceStore::new(client, "p:", Duration::from_secs(2));
        assert!(matches!(
            s.remember("d", "n", 0, 10).await,
            Err(NonceError::Unavailable(_))
        ));
    }
}
