//! The tower layer between authorization and the body limit: decides, answers 429 (or
//! 503 when the backend fails and `on_backend_error = "deny"`), and stamps
//! `RateLimit-Policy` / `RateLimit` on every response of a limited route.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::HeaderValue;
use http::header::HeaderName;
use rampart_config::raw::{OnFailure, RateLimitSection};
use rampart_http::{Authorized, ClientAddr, Reject, RequestId, Resp, Stage, StageFuture};
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::TierCounters;
use crate::{Backend, Limit, Limits, Query, Shared, Verdict};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers, structured-field form).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

struct Tier {
    name: String,
    limit: Limit,
    policy: Option<HeaderValue>,
    counters: Arc<TierCounters>,
}

/// Everything one pipeline's limiter needs.
struct Limiter {
    backend: Arc<dyn Backend>,
    tiers: BTreeMap<String, Tier>,
    tenant: Option<Limit>,
    on_error: OnFailure,
    stamp: Arc<Stamp>,
}

/// Builds [`RateLimit`]; without a `[rate_limit]` section it passes everything through.
#[derive(Clone, Default)]
pub struct RateLimitLayer {
    limiter: Option<Arc<Limiter>>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl RateLimitLayer {
    /// The limiter of `section` (memory backend from `shared`), or a pass-through layer.
    pub fn new(section: Option<&RateLimitSection>, shared: &Shared) -> Self {
        let Some(s) = section else {
            return Self::default();
        };
        let backend: Arc<dyn Backend> = Arc::clone(&shared.memory) as Arc<dyn Backend>;
        Self::with_backend(s, backend, shared)
    }

    /// The limiter of `section` on `backend`.
    pub fn with_backend(s: &RateLimitSection, backend: Arc<dyn Backend>, shared: &Shared) -> Self {
        let limits = Limits::from_section(s);
        let tiers = limits
            .tiers
            .iter()
            .map(|(name, limit)| {
                let mut p = String::new();
                let _ = write!(p, "\"{name}\";q={};w=60", limit.per_minute());
                let tier = Tier {
                    name: name.clone(),
                    limit: *limit,
                    policy: HeaderValue::from_str(&p).ok(),
                    counters: shared.metrics.tier(name),
                };
                (name.clone(), tier)
            })
            .collect();
        Self {
            limiter: Some(Arc::new(Limiter {
                backend,
                tiers,
                tenant: limits.tenant,
                on_error: limits.on_backend_error,
                stamp: Arc::new(Stamp),
            })),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The rate limiting service (see [`RateLimitLayer`]).
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Option<Arc<Limiter>>,
}

impl<S> std::fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("enabled", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

/// Puts the two headers on the response (allowed requests: after the upstream answers).
#[derive(Debug)]
pub struct Stamp;

/// The header pair of one decision.
pub type StampState = (Option<HeaderValue>, Option<HeaderValue>);

impl Stage for Stamp {
    type State = StampState;
    fn on_request<B>(&self, _req: &mut http::Request<B>) -> Result<StampState, Reject> {
        Ok((None, None))
    }
    fn on_response(&self, (policy, state): StampState, resp: &mut Resp) {
        stamp(resp, policy, state);
    }
}

fn stamp(resp: &mut Resp, policy: Option<HeaderValue>, state: Option<HeaderValue>) {
    let h = resp.headers_mut();
    if let Some(p) = policy {
        h.insert(RATELIMIT_POLICY.clone(), p);
    }
    if let Some(s) = state {
        h.insert(RATELIMIT.clone(), s);
    }
}

fn state_header(tier: &str, v: &Verdict) -> Option<HeaderValue> {
    let mut s = String::with_capacity(tier.len() + 32);
    let _ = write!(s, "\"{tier}\";r={};t={}", v.remaining, v.reset_s());
    HeaderValue::from_str(&s).ok()
}

/// The key of the caller: `id` + method + subject when authenticated, else `ip` + the
/// resolved client address. Prefixed with the tier: tiers are separate budgets.
fn identity_key<B>(tier: &str, a: &Authorized<B>) -> Option<String> {
    let id = a.permit.identity();
    let mut k = String::with_capacity(64);
    k.push_str(tier);
    k.push('\0');
    match (&id.subject, id.method) {
        (Some(sub), m) if m != "none" => {
            k.push_str("id\0");
            k.push_str(m);
            k.push('\0');
            k.push_str(sub);
        }
        _ => {
            let ip = a
                .request
                .extensions()
                .get::<ClientAddr>()?
                .ip
                .to_canonical();
            let _ = write!(k, "ip\0{ip}");
        }
    }
    Some(k)
}

impl<S, B> Service<Authorized<B>> for RateLimit<S>
where
    S: Service<Authorized<B>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = StageFuture<Stamp, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, a: Authorized<B>) -> Self::Future {
        let Some(l) = &self.limiter else {
            return StageFuture::pass(self.inner.call(a));
        };
        let route = a.permit.route();
        let tier_name = route.config.tier.as_deref().unwrap_or("default");
        let Some(tier) = l.tiers.get(tier_name).or_else(|| l.tiers.get("default")) else {
            return StageFuture::reject(
                Reject::Internal,
                a.request.extensions().get::<RequestId>(),
            );
        };
        let Some(key) = identity_key(&tier.name, &a) else {
            return StageFuture::reject(
                Reject::Internal,
                a.request.extensions().get::<RequestId>(),
            );
        };
        let tenant_key = match (&a.permit.identity().tenant, l.tenant) {
            (Some(t), Some(limit)) => Some((format!("tenant\0{t}"), limit)),
            _ => None,
        };
        let q = Query {
            identity: &key,
            limit: tier.limit,
            tenant: tenant_key.as_ref().map(|(k, l)| (k.as_str(), *l)),
        };
        match l.backend.decide(&q) {
            Ok(v) if v.allowed => {
                count(&tier.counters, 0);
                StageFuture::Inner {
                    fut: self.inner.call(a),
                    after: Some((
                        Arc::clone(&l.stamp),
                        (tier.policy.clone(), state_header(&tier.name, &v)),
                    )),
                }
            }
            Ok(v) => {
                count(&tier.counters, 1);
                let mut resp = Reject::TooManyRequests {
                    retry_after_s: v.retry_after_s(),
                }
                .into_response(a.request.extensions().get::<RequestId>());
                stamp(&mut resp, tier.policy.clone(), state_header(&tier.name, &v));
                StageFuture::Now { resp: Some(resp) }
            }
            Err(_) => {
                count(&tier.counters, 2);
                match l.on_error {
                    OnFailure::Allow => StageFuture::pass(self.inner.call(a)),
                    OnFailure::Deny => StageFuture::reject(
                        Reject::RateLimitUnavailable,
                        a.request.extensions().get::<RequestId>(),
                    ),
                }
            }
        }
    }
}

fn count(c: &TierCounters, i: usize) {
    if let Some(c) = c.get(i) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
