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
//! stage, and the validated configuration. Memory stays bounded under any number of
//! distinct keys ([`memory`]).

#![forbid(unsafe_code)]

pub mod gcra;
mod layer;
pub mod memory;
mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_config::raw::{LimitSpec, OnFailure, RateLimitSection};

pub use gcra::{Check, Limit, Verdict};
pub use layer::{RateLimit, RateLimitLayer};
pub use memory::MemoryBackend;
pub use metrics::RateLimitMetrics;

/// One decision: the caller's key and budget, and the tenant's when there is one.
/// Keys are opaque strings chosen by the layer; backends hash them.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub identity: &'a str,
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

/// Where the GCRA state lives. A decision covers identity and tenant together and is
/// atomic: either both budgets are charged or neither.
pub trait Backend: Send + Sync + 'static {
    fn decide(&self, q: &Query<'_>) -> Result<Verdict, BackendError>;
}

/// State that outlives a configuration reload: the memory backend's budgets and the
/// decision counters.
#[derive(Debug, Default)]
pub struct Shared {
    pub memory: Arc<MemoryBackend>,
    pub metrics: Arc<RateLimitMetrics>,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
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
