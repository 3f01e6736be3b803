//! Rate limiting by trusted identity (DESIGN.md `[rate_limit]`).
//!
//! Guards against: one caller (or one tenant) exhausting the upstream for everyone else,
//! and credential or address rotation used to dodge a budget. Each request is charged to
//! the authenticated subject (`method` + `subject`) or, for anonymous callers, to the
//! client address resolved through `trusted_proxies` (never a raw `X-Forwarded-For`),
//! per route tier; callers with a tenant are also charged to the tenant's budget, and a
//! request passes only if both budgets allow it (a refusal charges neither).
//!
//! Trusts: the [`Permit`](rampart_http::Permit) made by the authorization stage (the
//! identity is whatever authentication decided), [`ClientAddr`] from the client address
//! stage, and the validated configuration. Anonymous IPv6 callers are keyed by their /64
//! (one host usually holds a whole /64, so rotating addresses inside it gains nothing).
//!
//! Backends: [`memory`] (in-process, sharded; memory ceiling: at most 917,504 keys,
//! about 17 MiB of tables and at most about 21.3 MiB of resident memory whatever the
//! number of distinct callers, tested with 1,000,000) and [`redis`] (shared by several
//! gateways: one atomic script per decision on Redis server time; when Redis cannot
//! decide, `on_backend_error` applies, a `warn` health reason and
//! `rampart_ratelimit_backend_errors_total` show it, and it recovers by itself).
//!
//! Responses of a limited route carry `RateLimit-Policy: "tier";q=<per_minute>;w=60`
//! and `RateLimit: "tier";r=<left now>;t=<seconds until the burst is whole>`; a refusal
//! is a 429 problem with `Retry-After`.

#![forbid(unsafe_code)]

pub mod gcra;
mod layer;
pub mod memory;
mod metrics;
pub mod redis;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rampart_config::raw::{LimitSpec, OnFailure, RateLimitBackend, RateLimitSection};
use rampart_config::secret::Secret;
use rampart_http::health::{HealthProbe, Reason};

pub use gcra::{Check, Limit, Verdict};
pub use layer::{RateLimit, RateLimitFuture, RateLimitLayer};
pub use memory::MemoryBackend;
pub use metrics::RateLimitMetrics;
pub use redis::{RedisBackend, RedisConfigError};

/// One decision: the caller's key and budget, and the tenant's when there is one.
/// Keys are opaque bytes chosen by the layer; backends hash them.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub identity: &'a [u8],
    pub limit: Limit,
    pub tenant: Option<(&'a str, Limit)>,
}

/// Why a backend could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// The backend did not answer in time or the connection failed.
    Unavailable,
    /// A poisoned lock or an impossible state.
    Internal,
}

/// A decision that may need a round trip (Redis).
pub type VerdictFuture = Pin<Box<dyn Future<Output = Result<Verdict, BackendError>> + Send>>;

/// The answer of a [`Backend`]: decided in place (memory) or after a round trip.
pub enum Decision {
    Ready(Result<Verdict, BackendError>),
    Pending(VerdictFuture),
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Self::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// Where the GCRA state lives. A decision covers identity and tenant together and is
/// atomic: either both budgets are charged or neither.
pub trait Backend: Send + Sync + 'static {
    fn decide(&self, q: &Query<'_>) -> Decision;
}

/// State that outlives a configuration reload: the memory backend's budgets, the Redis
/// backend (its connections and health) and the decision counters.
#[derive(Debug, Default)]
pub struct Shared {
    pub memory: Arc<MemoryBackend>,
    pub metrics: Arc<RateLimitMetrics>,
    /// The Redis backend and the URL it was built for (kept while the URL is unchanged).
    redis: Mutex<Option<(Secret, Arc<RedisBackend>)>>,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The backend `section` asks for. `global_redis` is `[redis] url`, used when
    /// `rate_limit.redis_url` is absent. A Redis backend is built once per URL and kept
    /// across reloads; it connects lazily, so building it never waits on the network.
    pub fn backend(
        &self,
        section: &RateLimitSection,
        global_redis: Option<&Secret>,
    ) -> Result<Arc<dyn Backend>, RedisConfigError> {
        if section.backend != Some(RateLimitBackend::Redis) {
            return Ok(Arc::clone(&self.memory) as Arc<dyn Backend>);
        }
        let url = section
            .redis_url_secret
            .as_ref()
            .or(global_redis)
            .ok_or(RedisConfigError::NoUrl)?;
        let mut slot = self.redis.lock().map_err(|_| RedisConfigError::Internal)?;
        if let Some((u, b)) = slot.as_ref()
            && u.ct_eq(url.expose())
        {
            return Ok(Arc::clone(b) as Arc<dyn Backend>);
        }
        let b = Arc::new(RedisBackend::new(
            url,
            redis::Settings::default(),
            Arc::clone(&self.metrics),
        )?);
        *slot = Some((url.clone(), Arc::clone(&b)));
        Ok(b as Arc<dyn Backend>)
    }

    /// The Redis backend in use, if any (health reasons).
    pub fn redis(&self) -> Option<Arc<RedisBackend>> {
        self.redis
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|(_, b)| Arc::clone(b)))
    }

    /// Forgets the Redis backend (the configuration no longer uses it).
    pub fn drop_redis(&self) {
        if let Ok(mut s) = self.redis.lock() {
            *s = None;
        }
        self.metrics.set_backend_up(None);
    }
}

impl HealthProbe for Shared {
    fn reasons(&self, out: &mut Vec<Reason>) {
        if let Some(r) = self.redis() {
            r.reasons(out);
        }
    }
}

/// `tiers.default` when not configured.
pub const DEFAULT_TIER: (u64, u64) = (600, 100);
/// `tiers.heavy` when not configured.
pub const HEAVY_TIER: (u64, u64) = (60, 10);

/// The limits of a `[rate_limit]` section.
#[derive(Debug, Clone)]
pub struct Limits {
    pub tiers: BTreeMap<String, Limit>,
    pub tenant: Option<Limit>,
    pub on_backend_error: OnFailure,
}

/// `burst` defaults to ten seconds' worth of `per_minute` (at least 1).
fn limit_of(spec: &LimitSpec, fallback: (u64, u64)) -> Option<Limit> {
    let per_minute = spec.per_minute.unwrap_or(fallback.0);
    let burst = spec.burst.unwrap_or((per_minute / 6).max(1));
    Limit::new(per_minute, burst)
}

impl Limits {
    pub fn from_section(s: &RateLimitSection) -> Self {
        let mut tiers = BTreeMap::new();
        for (name, def) in [("default", DEFAULT_TIER), ("heavy", HEAVY_TIER)] {
            if let Some(l) = Limit::new(def.0, def.1) {
                tiers.insert(name.to_owned(), l);
            }
        }
        for (name, spec) in &s.tiers {
            let fallback = if name == "heavy" {
                HEAVY_TIER
            } else {
                DEFAULT_TIER
            };
            if let Some(l) = limit_of(spec, fallback) {
                tiers.insert(name.clone(), l);
            }
        }
        Self {
            tiers,
            tenant: s.tenant.as_ref().and_then(|t| limit_of(t, DEFAULT_TIER)),
            on_backend_error: s.on_backend_error.unwrap_or(OnFailure::Deny),
        }
    }
}
