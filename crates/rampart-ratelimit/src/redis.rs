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
//!   failure or a timeout (with a short back-off after a failed connect so a dead Redis
//!   is not hammered); every decision is bounded by a per-call timeout (one timer,
//!   connecting included).
//! - The request path allocates little per decision: keys are built on the stack, the
//!   command in one sized buffer, and the reply is one bulk string read in one pass.
//!
//! When Redis cannot decide, the layer applies `on_backend_error`; this module reports
//! the failure as a `warn` health reason and in `rampart_ratelimit_backend_errors_total`,
//! and clears the reason by itself once a decision (or the background probe, which pings
//! every second while Redis is down) succeeds again. The URL (it may hold a password)
//! never appears in logs, errors or metrics.

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
/// per key: allowed (0/1), remaining, retry-after (µs), reset (µs), as one string of
/// decimal numbers separated by spaces (one bulk reply is much cheaper for the client
/// to parse than an array of integers).
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
local f = '%.0f %.0f %.0f %.0f'
if b == nil then
  return string.format(f, a[1], a[3], a[4], a[5])
end
return string.format(f .. ' ' .. f, a[1], a[3], a[4], a[5], b[1], b[3], b[4], b[5])
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
struct SlotState {
    conn: Option<MultiplexedConnection>,
    down_until: Option<Instant>,
}

/// One pooled connection.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held while (re)connecting, so one task per slot opens the connection.
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The open connection (a cheap handle), or "refused" during the back-off after a
    /// failed connect, or `None` when one should be opened.
    fn ready(&self) -> Result<Option<MultiplexedConnection>, &'static str> {
        let s = self.state.lock().map_err(|_| "internal")?;
        if let Some(c) = &s.conn {
            return Ok(Some(c.clone()));
        }
        if s.down_until.is_some_and(|t| Instant::now() < t) {
            return Err("connection refused");
        }
        Ok(None)
    }
}

struct Inner {
    client: redis::Client,
    /// SHA-1 of [`SCRIPT`], hex (`EVALSHA`; the script is sent whole only after
    /// `NOSCRIPT`, e.g. once per Redis restart).
    script_sha: String,
    slots: Box<[Slot]>,
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

const HEX: &[u8; 16] = b"0123456789abcdef";
/// Hex characters of a key's hashed part: the first 16 bytes of SHA-256.
const DIGEST_HEX: usize = 32;
/// `rampart:rl:{t:<tenant>}:id:<identity>`, the longest key.
const KEY_MAX: usize = 14 + DIGEST_HEX + 5 + DIGEST_HEX;
/// `rampart:rl:{t:<tenant>}:tenant`.
const TENANT_KEY_LEN: usize = 14 + DIGEST_HEX + 8;

/// A key assembled on the stack (no allocation per decision); ASCII.
#[derive(Clone, Copy)]
struct KeyBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> KeyBuf<N> {
    const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `s`; the sizes above make every key fit (pinned by a test), so the
    /// overflow branch is never taken.
    fn push(&mut self, s: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + s.len()) {
            dst.copy_from_slice(s);
            self.len += s.len();
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// First 16 bytes of SHA-256, hex: stable across gateways, never the raw value.
fn digest(s: &[u8]) -> [u8; DIGEST_HEX] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s);
    let mut out = [0u8; DIGEST_HEX];
    for (pair, b) in out.chunks_exact_mut(2).zip(d.as_ref()) {
        for (o, nibble) in pair.iter_mut().zip([b >> 4, b & 0x0f]) {
            *o = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
        }
    }
    out
}

/// The Redis keys of one decision: identity, and tenant when there is one.
#[derive(Clone, Copy)]
pub struct Keys {
    id: KeyBuf<KEY_MAX>,
    tenant: Option<KeyBuf<TENANT_KEY_LEN>>,
}

impl Keys {
    /// `rampart:rl:{t:<sha256(tenant)>}:id:<sha256(identity)>` and
    /// `rampart:rl:{t:<sha256(tenant)>}:tenant` for a caller with a tenant,
    /// `rampart:rl:{i:<sha256(identity)>}` otherwise (hashes: first 16 bytes, hex).
    pub fn of(q: &Query<'_>) -> Self {
        let mut id = KeyBuf::new();
        match q.tenant {
            Some((tenant, _)) => {
                let mut t = KeyBuf::new();
                t.push(b"rampart:rl:{t:");
                t.push(&digest(tenant.as_bytes()));
                t.push(b"}");
                id.push(t.as_bytes());
                id.push(b":id:");
                id.push(&digest(q.identity));
                t.push(b":tenant");
                Self {
                    id,
                    tenant: Some(t),
                }
            }
            None => {
                id.push(b"rampart:rl:{i:");
                id.push(&digest(q.identity));
                id.push(b"}");
                Self { id, tenant: None }
            }
        }
    }

    /// The identity's key.
    pub fn identity(&self) -> &[u8] {
        self.id.as_bytes()
    }

    /// The tenant's key, when the caller has a tenant.
    pub fn tenant(&self) -> Option<&[u8]> {
        self.tenant.as_ref().map(KeyBuf::as_bytes)
    }
}

/// The Redis keys of one decision as strings: identity, and tenant when there is one.
pub fn keys(q: &Query<'_>) -> (String, Option<String>) {
    let k = Keys::of(q);
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (s(k.identity()), k.tenant().map(s))
}

/// The limit in the script's units: (emission interval, window) in microseconds.
fn micros(l: &Limit) -> (u64, u64) {
    let em = (l.emission_ns() / 1_000).max(1);
    (em, em.saturating_mul(l.burst()))
}

/// The numbers of the script's reply: `N` decimal numbers separated by single spaces,
/// nothing else (a negative number, never sent, reads as 0). One pass, no allocation.
fn numbers<const N: usize>(reply: &[u8]) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    let mut fields = out.iter_mut();
    let mut field = fields.next()?;
    // Digits seen in the current field, and whether it started with '-'.
    let (mut digits, mut negative) = (0usize, false);
    for &b in reply {
        match b {
            b'0'..=b'9' => {
                *field = field.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b'-' if digits == 0 && !negative => negative = true,
            b' ' if digits > 0 => {
                if negative {
                    *field = 0;
                }
                field = fields.next()?;
                (digits, negative) = (0, false);
            }
            _ => return None,
        }
    }
    if digits == 0 || fields.next().is_some() {
        return None;
    }
    if negative {
        *field = 0;
    }
    Some(out)
}

/// One key's part of the reply: allowed, remaining, retry-after (µs), reset (µs).
fn check_of(n: &[u64]) -> Option<Check> {
    let [allowed, remaining, retry_after_us, reset_us] = *n else {
        return None;
    };
    Some(Check {
        allowed: allowed == 1,
        new_tat: 0,
        remaining,
        retry_after_ns: retry_after_us.saturating_mul(1_000),
        reset_ns: reset_us.saturating_mul(1_000),
    })
}

/// The script's reply: the identity's check, then the tenant's when `tenant`; nothing
/// left over.
fn checks(reply: &[u8], tenant: bool) -> Option<(Check, Option<Check>)> {
    if tenant {
        let n = numbers::<8>(reply)?;
        let (a, b) = n.split_at(4);
        Some((check_of(a)?, Some(check_of(b)?)))
    } else {
        Some((check_of(&numbers::<4>(reply)?)?, None))
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

fn script_sha() -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        SCRIPT.as_bytes(),
    );
    hex(d.as_ref())
}

/// `EVALSHA sha` (or `EVAL script`) `numkeys key… arg…`, sized in one allocation per
/// buffer.
fn script_cmd(
    verb: &str,
    script: &str,
    keys: &Keys,
    id: (u64, u64),
    tenant: Option<(u64, u64)>,
) -> redis::Cmd {
    // Verb, script, numkeys, two keys, four numbers of at most 20 digits each.
    let mut cmd = redis::Cmd::with_capacity(9, verb.len() + script.len() + 1 + 2 * KEY_MAX + 80);
    cmd.arg(verb).arg(script);
    match (keys.tenant(), tenant) {
        (Some(k), Some(t)) => {
            cmd.arg(b"2")
                .arg(keys.identity())
                .arg(k)
                .arg(id.0)
                .arg(id.1)
                .arg(t.0)
                .arg(t.1);
        }
        _ => {
            cmd.arg(b"1").arg(keys.identity()).arg(id.0).arg(id.1);
        }
    }
    cmd
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
            slots: (0..pool).map(|_| Slot::default()).collect(),
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
        let keys = Keys::of(q);
        let id = micros(&q.limit);
        let tenant = q.tenant.map(|(_, l)| micros(&l));
        Inner::decide(&self.inner, keys, id, tenant).await
    }
}

impl Inner {
    async fn decide(
        this: &Arc<Self>,
        keys: Keys,
        id: (u64, u64),
        tenant: Option<(u64, u64)>,
    ) -> Result<Verdict, BackendError> {
        let i = this.pick();
        // The one timer of a decision: it bounds connecting and the round trip(s); the
        // connections themselves have no response timeout.
        let r = match tokio::time::timeout(this.settings.timeout, this.run(i, &keys, id, tenant))
            .await
        {
            Ok(r) => r,
            Err(_) => {
                // A connection that does not answer in time may be dead without an error
                // (a peer gone without a reset): open a fresh one next time.
                this.discard(i);
                Err("timeout")
            }
        };
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

    /// The next pool slot, round-robin.
    fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len().max(1)
    }

    /// Slot `i`'s connection, opening it when needed. The fast path clones the handle
    /// under a short std lock (never held across an await) and awaits nothing;
    /// connecting is serialised per slot by an async lock taken only when there is no
    /// connection, in a future boxed only then (it is large: keeping it out of every
    /// decision's future makes that one cheaper to move).
    async fn conn(&self, i: usize) -> Result<MultiplexedConnection, &'static str> {
        let slot = self.slots.get(i).ok_or("internal")?;
        match slot.ready()? {
            Some(c) => Ok(c),
            None => Box::pin(self.connect(slot)).await,
        }
    }

    /// Opens `slot`'s connection (see [`Self::conn`]).
    async fn connect(&self, slot: &Slot) -> Result<MultiplexedConnection, &'static str> {
        let _connecting = slot.connecting.lock().await;
        // Another task may have connected (or failed) while this one waited.
        if let Some(c) = slot.ready()? {
            return Ok(c);
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(None);
        let r = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await;
        let mut s = slot.state.lock().map_err(|_| "internal")?;
        match r {
            Ok(c) => {
                s.conn = Some(c.clone());
                s.down_until = None;
                Ok(c)
            }
            Err(e) => {
                s.down_until = Some(Instant::now() + self.settings.reconnect_backoff);
                Err(error_kind(&e))
            }
        }
    }

    /// Drops slot `i`'s connection after a connection-level failure.
    fn discard(&self, i: usize) {
        if let Some(slot) = self.slots.get(i)
            && let Ok(mut s) = slot.state.lock()
        {
            s.conn = None;
        }
    }

    async fn run(
        &self,
        i: usize,
        keys: &Keys,
        id: (u64, u64),
        tenant: Option<(u64, u64)>,
    ) -> Result<Verdict, &'static str> {
        let mut c = self.conn(i).await?;
        let cmd = script_cmd("EVALSHA", &self.script_sha, keys, id, tenant);
        let mut r = c.send_packed_command(&cmd).await;
        if let Ok(redis::Value::ServerError(e)) = &r
            && e.kind() == Some(redis::ServerErrorKind::NoScript)
        {
            let cmd = script_cmd("EVAL", SCRIPT, keys, id, tenant);
            r = c.send_packed_command(&cmd).await;
        }
        let reply = match r {
            Ok(redis::Value::BulkString(v)) => v,
            // An error reply: the connection itself is fine.
            Ok(_) => return Err("error reply"),
            Err(e) => {
                if !matches!(e.kind(), redis::ErrorKind::Server(_)) {
                    self.discard(i);
                }
                return Err(error_kind(&e));
            }
        };
        let (a, b) = checks(&reply, keys.tenant().is_some()).ok_or("error reply")?;
        Ok(Verdict::combine(&a, b.as_ref()))
    }

    fn mark_up(&self) {
        // A load first: the common case (already up) writes nothing shared.
        if !self.up.load(Ordering::Relaxed) && !self.up.swap(true, Ordering::Relaxed) {
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
                let i = this.pick();
                let ok = match tokio::time::timeout(this.settings.timeout, this.ping(i)).await {
                    Ok(r) => r,
                    Err(_) => {
                        this.discard(i);
                        Err("timeout")
                    }
                };
                if ok.is_ok() {
                    this.mark_up();
                    this.probe_running.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    async fn ping(&self, i: usize) -> Result<(), &'static str> {
        let mut c = self.conn(i).await?;
        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.discard(i);
                Err(error_kind(&e))
            }
        }
    }
}

impl Backend for RedisBackend {
    fn decide(&self, q: &Query<'_>) -> Decision {
        let keys = Keys::of(q);
        let id = micros(&q.limit);
        let tenant = q.tenant.map(|(_, l)| micros(&l));
        let inner = Arc::clone(&self.inner);
        Decision::Pending(Box::pin(async move {
            Inner::decide(&inner, keys, id, tenant).await
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

    /// The key names are shared by every gateway on one Redis (and across versions):
    /// pinned here against SHA-256 computed independently (Python's hashlib).
    #[test]
    fn key_names_are_stable() {
        let l = Limit::new(60, 5).unwrap();
        let q = Query {
            identity: b"default\0id\0jwt\0alice@example.com",
            limit: l,
            tenant: Some(("tenant\0acme", l)),
        };
        let k = Keys::of(&q);
        assert_eq!(
            k.identity(),
            b"rampart:rl:{t:d2e79529ba2c46b2b8496511585b5ed5}:id:3ff7977e68ca64d9049736c1a2f7cab0"
        );
        assert_eq!(
            k.tenant(),
            Some(&b"rampart:rl:{t:d2e79529ba2c46b2b8496511585b5ed5}:tenant"[..])
        );
        assert_eq!(k.identity().len(), KEY_MAX);
        assert_eq!(k.tenant().unwrap().len(), TENANT_KEY_LEN);
        let solo = Keys::of(&Query { tenant: None, ..q });
        assert_eq!(
            solo.identity(),
            b"rampart:rl:{i:3ff7977e68ca64d9049736c1a2f7cab0}"
        );
        assert_eq!(solo.tenant(), None);
        assert_eq!(
            keys(&q),
            (
                String::from_utf8(k.identity().to_vec()).unwrap(),
                Some(String::from_utf8(k.tenant().unwrap().to_vec()).unwrap())
            )
        );
    }

    #[test]
    fn hex_and_script_sha() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let sha = script_sha();
        assert_eq!(sha.len(), 40);
        assert!(sha.bytes().all(|b| HEX.contains(&b)), "{sha}");
    }

    #[test]
    fn script_commands() {
        let l = Limit::new(600, 100).unwrap();
        let q = Query {
            identity: b"k",
            limit: l,
            tenant: Some(("t", Limit::new(60, 10).unwrap())),
        };
        let k = Keys::of(&q);
        let packed = script_cmd(
            "EVALSHA",
            "abc",
            &k,
            (100_000, 10_000_000),
            Some((1_000_000, 10_000_000)),
        )
        .get_packed_command();
        let mut want = b"*9\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n2\r\n$83\r\n".to_vec();
        want.extend_from_slice(k.identity());
        want.extend_from_slice(b"\r\n$54\r\n");
        want.extend_from_slice(k.tenant().unwrap());
        want.extend_from_slice(
            b"\r\n$6\r\n100000\r\n$8\r\n10000000\r\n$7\r\n1000000\r\n$8\r\n10000000\r\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&packed),
            String::from_utf8_lossy(&want)
        );
        let solo = Keys::of(&Query { tenant: None, ..q });
        let packed = script_cmd("EVAL", "s", &solo, (7, 70), None).get_packed_command();
        let mut want = b"*6\r\n$4\r\nEVAL\r\n$1\r\ns\r\n$1\r\n1\r\n$47\r\n".to_vec();
        want.extend_from_slice(solo.identity());
        want.extend_from_slice(b"\r\n$1\r\n7\r\n$2\r\n70\r\n");
        assert_eq!(
            String::from_utf8_lossy(&packed),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn replies_parse_and_malformed_ones_are_refused() {
        let (a, b) = checks(b"1 4 0 2500", false).unwrap();
        assert!(a.allowed && b.is_none());
        assert_eq!(
            (a.remaining, a.retry_after_ns, a.reset_ns),
            (4, 0, 2_500_000)
        );
        let (a, b) = checks(b"1 4 0 2500 0 0 7 -1", true).unwrap();
        let b = b.unwrap();
        assert!(a.allowed && !b.allowed);
        assert_eq!((b.remaining, b.retry_after_ns, b.reset_ns), (0, 7_000, 0));
        for bad in [
            &b""[..],
            b"1 4 0",
            b"1 4 0 2500 1",
            b"1 4 0 2500 ",
            b"1  4 0 2500",
            b"1 4 x 2500",
            b"1 4 0 25.5",
            b"1 4 0 99999999999999999999999",
            b"-",
            b"1 -4- 0 2500",
            b"1 4 0 2500\r\n",
        ] {
            assert!(
                checks(bad, false).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(checks(b"1 4 0 2500", true).is_none());
        assert!(checks(b"1 4 0 2500 1 2 3 4 5", true).is_none());
        // u64::MAX µs saturates to nanoseconds rather than wrapping.
        let (a, _) = checks(b"0 0 18446744073709551615 0", false).unwrap();
        assert_eq!(a.retry_after_ns, u64::MAX);
    }

    #[test]
    fn limits_in_microseconds() {
        assert_eq!(
            micros(&Limit::new(600, 100).unwrap()),
            (100_000, 10_000_000)
        );
        assert_eq!(micros(&Limit::new(u64::MAX, 3).unwrap()), (1, 3));
    }

    proptest::proptest! {
        /// The reply reader never panics on any bytes, and reads back exactly the
        /// numbers the script writes (space-separated integers; a negative one as 0).
        #[test]
        fn reply_numbers_round_trip_and_never_panic(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            v in proptest::array::uniform8(proptest::prelude::any::<i64>()),
        ) {
            let _ = numbers::<4>(&junk);
            let _ = numbers::<8>(&junk);
            let text = v.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
            let want = v.map(|x| u64::try_from(x).unwrap_or(0));
            proptest::prop_assert_eq!(numbers::<8>(text.as_bytes()), Some(want));
            // A count other than the one expected is refused.
            proptest::prop_assert_eq!(numbers::<4>(text.as_bytes()), None);
        }
    }
}
