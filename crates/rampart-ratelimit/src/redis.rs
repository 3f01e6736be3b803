//! The shared backend: GCRA state in Redis, so several gateways enforce one budget.
//!
//! - One atomic Lua script per decision evaluates the identity and the tenant budgets
//!   together (one round trip) and charges both or neither.
//! - Time is Redis server time (`TIME` inside the script): gateways with skewed clocks
//!   still agree.
//! - Keys carry a hash tag (`{…}`) so both keys of one decision land in one Redis
//!   Cluster slot: a tenant's callers share the tag `{t:<tenant hash>}`, callers without
//!   a tenant have their own. Identities and tenants are stored as truncated SHA-256
//!   hashes (128 bits), never as raw subjects or addresses. Every key expires once its
//!   budget is whole again, so Redis memory follows the number of active callers.
//! - A small pool of multiplexed connections, opened lazily and reopened after a
//!   failure (with a short back-off so a dead Redis is not hammered); every decision is
//!   bounded by a per-call timeout.
//!
//! When Redis cannot decide, the layer applies `on_backend_error`; this module reports
//! the failure as a `warn` health reason and in `rampart_ratelimit_backend_errors_total`,
//! and clears the reason by itself once a decision (or the background probe, which pings
//! every second while Redis is down) succeeds again. The URL (it may hold a password)
//! never appears in logs, errors or metrics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rampart_config::secret::Secret;
use rampart_http::health::{Reason, Severity};
use redis::aio::MultiplexedConnection;

use crate::gcra::{Check, Limit, Verdict};
use crate::metrics::RateLimitMetrics;
use crate::{Backend, BackendError, Decision, Query};

/// The decision script. KEYS[1] = identity, KEYS[2] = tenant (optional); ARGV = the
/// identity's emission interval and window in microseconds, then the tenant's. Returns
/// per key: allowed (0/1), remaining, retry-after (µs), reset (µs).
const SCRIPT: &str = r"
-- Redis < 5 replicates scripts verbatim unless told otherwise, and refuses writes after
-- TIME; 5+ replicates effects always (the call is a no-op there).
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function check(key, em, win)
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  local base = math.max(tat, now)
  local new_tat = base + em
  local ahead = new_tat - now
  if ahead > win then
    return {0, tat, 0, ahead - win, base - now}
  end
  return {1, new_tat, math.floor((win - ahead) / em), 0, ahead}
end
local a = check(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local b = nil
if #KEYS > 1 then
  b = check(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
end
if a[1] == 1 and (b == nil or b[1] == 1) then
  redis.call('SET', KEYS[1], string.format('%.0f', a[2]), 'PX', math.floor((a[2] - now) / 1000) + 1)
  if b ~= nil then
    redis.call('SET', KEYS[2], string.format('%.0f', b[2]), 'PX', math.floor((b[2] - now) / 1000) + 1)
  end
end
if b == nil then
  return {a[1], a[3], a[4], a[5]}
end
return {a[1], a[3], a[4], a[5], b[1], b[3], b[4], b[5]}
";

/// Tunables of the Redis backend.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Multiplexed connections, used round-robin.
    pub pool_size: usize,
    /// Upper bound on one decision (connecting included).
    pub timeout: Duration,
    /// After a failed connect, a slot answers "unavailable" at once for this long.
    pub reconnect_backoff: Duration,
    /// How often the background probe pings a Redis that is down.
    pub probe_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pool_size: 4,
            timeout: Duration::from_millis(250),
            reconnect_backoff: Duration::from_millis(200),
            probe_every: Duration::from_secs(1),
        }
    }
}

/// Why a Redis backend could not be built from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedisConfigError {
    /// Configuration: `backend = "redis"` without `rate_limit.redis_url` or `[redis] url`.
    #[error("rate_limit.backend = \"redis\" needs rate_limit.redis_url or [redis] url")]
    NoUrl,
    /// Configuration: the URL does not parse (never echoed: it may hold a password).
    #[error("rate_limit Redis URL is not a valid redis:// or rediss:// URL")]
    BadUrl,
    /// Bug: a poisoned lock.
    #[error("rate limiter internal error")]
    Internal,
}

#[derive(Default)]
struct Slot {
    conn: Option<MultiplexedConnection>,
    down_until: Option<Instant>,
}

struct Inner {
    client: redis::Client,
    /// SHA-1 of [`SCRIPT`], hex (`EVALSHA`; the script is sent whole only after
    /// `NOSCRIPT`, e.g. once per Redis restart).
    script_sha: String,
    slots: Box<[tokio::sync::Mutex<Slot>]>,
    next: AtomicUsize,
    settings: Settings,
    metrics: Arc<RateLimitMetrics>,
    /// Whether the last attempt succeeded (starts true: no reason before a failure).
    up: AtomicBool,
    /// What failed last (a fixed word, never the URL).
    last_error: Mutex<&'static str>,
    probe_running: AtomicBool,
    decisions: AtomicU64,
}

/// GCRA state in Redis (see the module docs).
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// A fixed description of a Redis error: its category, nothing from the URL.
fn error_kind(e: &redis::RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection lost"
    } else {
        "error reply"
    }
}

/// First 16 bytes of SHA-256, hex: stable across gateways, never the raw value.
fn digest(out: &mut String, s: &[u8]) {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s);
    for b in d.as_ref().iter().take(16) {
        let _ = write!(out, "{b:02x}");
    }
}

/// The Redis keys of one decision: identity, and tenant when there is one.
pub fn keys(q: &Query<'_>) -> (String, Option<String>) {
    let mut id = String::with_capacity(80);
    match q.tenant {
        Some((tenant, _)) => {
            let mut tag = String::with_capacity(40);
            tag.push_str("rampart:rl:{t:");
            digest(&mut tag, tenant.as_bytes());
            tag.push('}');
            id.push_str(&tag);
            id.push_str(":id:");
            digest(&mut id, q.identity);
            tag.push_str(":tenant");
            (id, Some(tag))
        }
        None => {
            id.push_str("rampart:rl:{i:");
            digest(&mut id, q.identity);
            id.push('}');
            (id, None)
        }
    }
}

/// The limit in the script's units: (emission interval, window) in microseconds.
fn micros(l: &Limit) -> (u64, u64) {
    let em = (l.emission_ns() / 1_000).max(1);
    (em, em.saturating_mul(l.burst()))
}

fn check_of(v: &[i64]) -> Option<Check> {
    let ns = |us: i64| u64::try_from(us).unwrap_or(0).saturating_mul(1_000);
    Some(Check {
        allowed: *v.first()? == 1,
        new_tat: 0,
        remaining: u64::try_from(*v.get(1)?).unwrap_or(0),
        retry_after_ns: ns(*v.get(2)?),
        reset_ns: ns(*v.get(3)?),
    })
}

fn script_sha() -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        SCRIPT.as_bytes(),
    );
    let mut out = String::with_capacity(40);
    for b in d.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `numkeys key… arg…` of the script.
fn args(
    cmd: &mut redis::Cmd,
    id_key: &str,
    tenant_key: Option<&str>,
    id: (u64, u64),
    tenant: Option<(u64, u64)>,
) {
    match (tenant_key, tenant) {
        (Some(k), Some(t)) => {
            cmd.arg(2)
                .arg(id_key)
                .arg(k)
                .arg(id.0)
                .arg(id.1)
                .arg(t.0)
                .arg(t.1);
        }
        _ => {
            cmd.arg(1).arg(id_key).arg(id.0).arg(id.1);
        }
    }
}

impl RedisBackend {
    /// Builds the backend; connects lazily (nothing here waits on the network).
    pub fn new(
        url: &Secret,
        settings: Settings,
        metrics: Arc<RateLimitMetrics>,
    ) -> Result<Self, RedisConfigError> {
        let url = url.expose_str().ok_or(RedisConfigError::BadUrl)?;
        let client = redis::Client::open(url).map_err(|_| RedisConfigError::BadUrl)?;
        let pool = settings.pool_size.clamp(1, 64);
        let inner = Arc::new(Inner {
            client,
            script_sha: script_sha(),
            slots: (0..pool)
                .map(|_| tokio::sync::Mutex::new(Slot::default()))
                .collect(),
            next: AtomicUsize::new(0),
            settings,
            metrics,
            up: AtomicBool::new(true),
            last_error: Mutex::new(""),
            probe_running: AtomicBool::new(false),
            decisions: AtomicU64::new(0),
        });
        inner.metrics.set_backend_up(Some(true));
        Ok(Self { inner })
    }

    /// Whether the last attempt to reach Redis succeeded.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// Decisions Redis answered.
    pub fn decisions(&self) -> u64 {
        self.inner.decisions.load(Ordering::Relaxed)
    }

    /// The `warn` reason while Redis is unreachable.
    pub fn reasons(&self, out: &mut Vec<Reason>) {
        if self.is_up() {
            return;
        }
        let what = self.inner.last_error.lock().map(|e| *e).unwrap_or("error");
        out.push(Reason::new(
            "ratelimit_backend",
            Severity::Warn,
            format!(
                "rate limit backend (Redis) cannot decide ({what}); rate_limit.on_backend_error applies"
            ),
        ));
    }

    /// Decides `q` against Redis (identity and tenant in one script run).
    pub async fn decide_remote(&self, q: &Query<'_>) -> Result<Verdict, BackendError> {
        let (id_key, tenant_key) = keys(q);
        let (em, win) = micros(&q.limit);
        let tenant = q.tenant.map(|(_, l)| micros(&l));
        Inner::decide(&self.inner, id_key, tenant_key, (em, win), tenant).await
    }
}

impl Inner {
    async fn decide(
        this: &Arc<Self>,
        id_key: String,
        tenant_key: Option<String>,
        id: (u64, u64),
        tenant: Option<(u64, u64)>,
    ) -> Result<Verdict, BackendError> {
        let timeout = this.settings.timeout;
        let r = tokio::time::timeout(
            timeout,
            this.run(&id_key, tenant_key.as_deref(), id, tenant),
        )
        .await
        .unwrap_or(Err("timeout"));
        match r {
            Ok(v) => {
                this.decisions.fetch_add(1, Ordering::Relaxed);
                this.mark_up();
                Ok(v)
            }
            Err(what) => {
                this.mark_down(what);
                Err(BackendError::Unavailable)
            }
        }
    }

    /// A connection from the pool, opening it when needed.
    async fn conn(&self) -> Result<(usize, MultiplexedConnection), &'static str> {
        let n = self.slots.len().max(1);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let slot = self.slots.get(i).ok_or("internal")?;
        let mut s = slot.lock().await;
        if let Some(c) = &s.conn {
            return Ok((i, c.clone()));
        }
        if s.down_until.is_some_and(|t| Instant::now() < t) {
            return Err("connection refused");
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            Ok(c) => {
                s.conn = Some(c.clone());
                s.down_until = None;
                Ok((i, c))
            }
            Err(e) => {
                s.down_until = Some(Instant::now() + self.settings.reconnect_backoff);
                Err(error_kind(&e))
            }
        }
    }

    /// Drops slot `i`'s connection after a connection-level failure.
    async fn discard(&self, i: usize) {
        if let Some(slot) = self.slots.get(i) {
            slot.lock().await.conn = None;
        }
    }

    async fn run(
        &self,
        id_key: &str,
        tenant_key: Option<&str>,
        id: (u64, u64),
        tenant: Option<(u64, u64)>,
    ) -> Result<Verdict, &'static str> {
        let (i, mut c) = self.conn().await?;
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.script_sha);
        args(&mut cmd, id_key, tenant_key, id, tenant);
        let mut r: redis::RedisResult<Vec<i64>> = cmd.query_async(&mut c).await;
        if let Err(e) = &r
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(SCRIPT);
            args(&mut cmd, id_key, tenant_key, id, tenant);
            r = cmd.query_async(&mut c).await;
        }
        let v = match r {
            Ok(v) => v,
            Err(e) => {
                if !matches!(e.kind(), redis::ErrorKind::Server(_)) {
                    self.discard(i).await;
                }
                return Err(error_kind(&e));
            }
        };
        let a = check_of(&v).ok_or("error reply")?;
        let b = match tenant_key {
            Some(_) => Some(check_of(v.get(4..).unwrap_or(&[])).ok_or("error reply")?),
            None => None,
        };
        Ok(Verdict::combine(&a, b.as_ref()))
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("rate limit backend (Redis) reachable again");
            self.metrics.set_backend_up(Some(true));
        }
    }

    fn mark_down(self: &Arc<Self>, what: &'static str) {
        self.metrics.backend_error();
        if let Ok(mut e) = self.last_error.lock() {
            *e = what;
        }
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = what, "rate limit backend (Redis) cannot decide");
            self.metrics.set_backend_up(Some(false));
        }
        self.start_probe();
    }

    /// While Redis is down, pings it every `probe_every` so health recovers without
    /// traffic. One probe task at a time; it ends when Redis answers or the backend is
    /// dropped.
    fn start_probe(self: &Arc<Self>) {
        if self.probe_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.probe_running.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.settings.probe_every;
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else { return };
                if this.up.load(Ordering::Relaxed) {
                    this.probe_running.store(false, Ordering::Release);
                    return;
                }
                let ok = tokio::time::timeout(this.settings.timeout, this.ping())
                    .await
                    .unwrap_or(Err("timeout"));
                if ok.is_ok() {
                    this.mark_up();
                    this.probe_running.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    async fn ping(&self) -> Result<(), &'static str> {
        let (i, mut c) = self.conn().await?;
        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.discard(i).await;
                Err(error_kind(&e))
            }
        }
    }
}

impl Backend for RedisBackend {
    fn decide(&self, q: &Query<'_>) -> Decision {
        let (id_key, tenant_key) = keys(q);
        let id = micros(&q.limit);
        let tenant = q.tenant.map(|(_, l)| micros(&l));
        let inner = Arc::clone(&self.inner);
        Decision::Pending(Box::pin(async move {
            Inner::decide(&inner, id_key, tenant_key, id, tenant).await
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_tenant_tag_and_hide_raw_values() {
        let l = Limit::new(60, 5).unwrap();
        let q = Query {
            identity: b"default\0id\0jwt\0alice@example.com",
            limit: l,
            tenant: Some(("tenant\0acme", l)),
        };
        let (id, t) = keys(&q);
        let t = t.unwrap();
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&id), tag(&t));
        assert!(!id.contains("alice") && !t.contains("acme"), "{id} {t}");
        let solo = keys(&Query { tenant: None, ..q });
        assert!(solo.1.is_none());
        assert!(solo.0.starts_with("rampart:rl:{i:"));
        assert_ne!(solo.0, id);
    }

    #[test]
    fn limits_in_microseconds() {
        assert_eq!(
            micros(&Limit::new(600, 100).unwrap()),
            (100_000, 10_000_000)
        );
        assert_eq!(micros(&Limit::new(u64::MAX, 3).unwrap()), (1, 3));
    }
}
