//! The tower layer between authorization and the body limit: decides, answers 429 (or
//! 503 when the backend fails and `on_backend_error = "deny"`), and stamps
//! `RateLimit-Policy` / `RateLimit` on every response of a limited route.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::HeaderValue;
use http::header::HeaderName;
use rampart_config::raw::{OnFailure, RateLimitSection};
use rampart_config::secret::Secret;
use rampart_http::{Authorized, ClientAddr, Reject, RequestId, Resp, Stage, StageFuture};
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::TierCounters;
use crate::{Backend, Decision, Limit, Limits, Query, RedisConfigError, Shared, Verdict};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers, structured-field form).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

struct Tier {
    name: Arc<str>,
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
    /// The limiter of `section` on the backend it names (kept in `shared` across
    /// reloads), or a pass-through layer when there is no `[rate_limit]` section.
    /// `global_redis`: `[redis] url`, used when `rate_limit.redis_url` is absent.
    pub fn new(
        section: Option<&RateLimitSection>,
        global_redis: Option<&Secret>,
        shared: &Shared,
    ) -> Result<Self, RedisConfigError> {
        let Some(s) = section else {
            shared.drop_redis();
            return Ok(Self::default());
        };
        let backend = shared.backend(s, global_redis)?;
        if s.backend != Some(rampart_config::raw::RateLimitBackend::Redis) {
            shared.drop_redis();
        }
        Ok(Self::with_backend(s, backend, shared))
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
                    name: Arc::from(name.as_str()),
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

/// The budget of a caller whose credential record sets its own rate or burst (the part
/// it leaves unset comes from the tier), and the `RateLimit-Policy` that says so.
fn overridden(tier: &Tier, o: &rampart_http::RateOverride) -> (Limit, Option<HeaderValue>) {
    let per_minute = o.per_minute.unwrap_or_else(|| tier.limit.per_minute());
    let burst = o.burst.unwrap_or_else(|| tier.limit.burst());
    match Limit::new(per_minute, burst) {
        Some(limit) => {
            let mut p = String::with_capacity(tier.name.len() + 24);
            let _ = write!(p, "\"{}\";q={};w=60", tier.name, limit.per_minute());
            (limit, HeaderValue::from_str(&p).ok())
        }
        // Zero is refused when the record is written; should one be read anyway, the
        // tier's budget applies (never an unlimited caller).
        None => (tier.limit, tier.policy.clone()),
    }
}

/// `"tier";r=N;t=M`, built without `fmt` (this runs on every response of a limited
/// route).
fn state_header(tier: &str, v: &Verdict) -> Option<HeaderValue> {
    let mut num = itoa::Buffer::new();
    let r = num.format(v.remaining).as_bytes();
    let mut num2 = itoa::Buffer::new();
    let t = num2.format(v.reset_s()).as_bytes();
    let parts: [&[u8]; 6] = [b"\"", tier.as_bytes(), b"\";r=", r, b";t=", t];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // Assembled on the stack; the value's one allocation is its own copy.
    let mut stack = [0u8; 96];
    if let Some(buf) = stack.get_mut(..len) {
        let mut at = 0;
        for p in parts {
            if let Some(dst) = buf.get_mut(at..at + p.len()) {
                dst.copy_from_slice(p);
            }
            at += p.len();
        }
        return HeaderValue::from_bytes(buf).ok();
    }
    HeaderValue::from_bytes(&parts.concat()).ok()
}

/// The key of the caller (opaque bytes): `id` + method + subject when authenticated,
/// else `ip` + the resolved client address's bytes (IPv6: its /64, which one host
/// usually holds whole).
/// Prefixed with the tier: tiers are separate budgets.
fn identity_key<B>(tier: &str, a: &Authorized<B>) -> Option<Vec<u8>> {
    let id = a.permit.identity();
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(tier.as_bytes());
    k.push(0);
    match (&id.subject, id.method) {
        (Some(sub), m) if m != "none" => {
            k.extend_from_slice(b"id\0");
            k.extend_from_slice(m.as_bytes());
            k.push(0);
            k.extend_from_slice(sub.as_bytes());
        }
        _ => {
            let ip = a
                .request
                .extensions()
                .get::<ClientAddr>()?
                .ip
                .to_canonical();
            // The address's bytes, not its text (no formatting per request).
            match ip {
                IpAddr::V4(v4) => {
                    k.extend_from_slice(b"ip\0");
                    k.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    k.extend_from_slice(b"ip6\0");
                    k.extend_from_slice(&v6.octets()[..8]);
                }
            }
        }
    }
    Some(k)
}

pin_project_lite::pin_project! {
    /// Future of [`RateLimit`]: decided in place (memory backend, or a pass-through), or
    /// after a round trip to the backend (Redis), boxed.
    #[project = RateLimitFutureProj]
    pub enum RateLimitFuture<F> {
        Local { #[pin] fut: StageFuture<Stamp, F> },
        Remote { fut: Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>> },
    }
}

impl<F> Future for RateLimitFuture<F>
where
    F: Future<Output = Result<Resp, Infallible>>,
{
    type Output = Result<Resp, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RateLimitFutureProj::Local { fut } => fut.poll(cx),
            RateLimitFutureProj::Remote { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// What one request's decision needs once the backend has answered: borrowed from the
/// limiter when the decision is made in place, owned when it waits on the backend.
struct Decided<C, T> {
    counters: C,
    policy: Option<HeaderValue>,
    tier: T,
    on_error: OnFailure,
}

/// What to do with the request.
enum Outcome {
    /// Forward, then stamp the headers of the decision on the response.
    Forward(StampState),
    /// Forward without headers (backend failed, `on_backend_error = "allow"`).
    ForwardBare,
    /// Answer now.
    Answer(Resp),
}

impl<C: Borrow<TierCounters>, T: Borrow<str>> Decided<C, T> {
    fn outcome(&self, r: Result<Verdict, crate::BackendError>, id: Option<&RequestId>) -> Outcome {
        match r {
            Ok(v) if v.allowed => {
                count(self.counters.borrow(), 0);
                Outcome::Forward((self.policy.clone(), state_header(self.tier.borrow(), &v)))
            }
            Ok(v) => {
                count(self.counters.borrow(), 1);
                let mut resp = Reject::TooManyRequests {
                    retry_after_s: v.retry_after_s(),
                }
                .into_response(id);
                stamp(
                    &mut resp,
                    self.policy.clone(),
                    state_header(self.tier.borrow(), &v),
                );
                Outcome::Answer(resp)
            }
            Err(_) => {
                count(self.counters.borrow(), 2);
                match self.on_error {
                    OnFailure::Allow => Outcome::ForwardBare,
                    OnFailure::Deny => {
                        Outcome::Answer(Reject::RateLimitUnavailable.into_response(id))
                    }
                }
            }
        }
    }
}

impl<S, B> Service<Authorized<B>> for RateLimit<S>
where
    S: Service<Authorized<B>, Response = Resp, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = RateLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, a: Authorized<B>) -> Self::Future {
        let Some(l) = &self.limiter else {
            return RateLimitFuture::Local {
                fut: StageFuture::pass(self.inner.call(a)),
            };
        };
        let route = a.permit.route();
        let over = a.permit.identity().rate_override.as_deref();
        // A record's own tier wins over the route's when it names a configured one.
        let tier = over
            .and_then(|o| o.tier.as_deref())
            .and_then(|t| l.tiers.get(t))
            .or_else(|| {
                l.tiers
                    .get(route.config.tier.as_deref().unwrap_or("default"))
            })
            .or_else(|| l.tiers.get("default"));
        let key = tier.and_then(|t| identity_key(&t.name, &a));
        let (Some(tier), Some(key)) = (tier, key) else {
            return RateLimitFuture::Local {
                fut: StageFuture::reject(
                    Reject::Internal,
                    a.request.extensions().get::<RequestId>(),
                ),
            };
        };
        let tenant_key = match (&a.permit.identity().tenant, l.tenant) {
            (Some(t), Some(limit)) => Some((format!("tenant\0{t}"), limit)),
            _ => None,
        };
        let (limit, policy) = match over {
            Some(o) if o.per_minute.is_some() || o.burst.is_some() => overridden(tier, o),
            _ => (tier.limit, tier.policy.clone()),
        };
        let q = Query {
            identity: &key,
            limit,
            tenant: tenant_key.as_ref().map(|(k, l)| (k.as_str(), *l)),
        };
        let decided = Decided {
            counters: &*tier.counters,
            policy,
            tier: &*tier.name,
            on_error: l.on_error,
        };
        match l.backend.decide(&q) {
            Decision::Ready(r) => {
                let id = a.request.extensions().get::<RequestId>();
                let fut = match decided.outcome(r, id) {
                    Outcome::Forward(state) => StageFuture::Inner {
                        fut: self.inner.call(a),
                        after: Some((Arc::clone(&l.stamp), state)),
                    },
                    Outcome::ForwardBare => StageFuture::pass(self.inner.call(a)),
                    Outcome::Answer(resp) => StageFuture::Now { resp: Some(resp) },
                };
                RateLimitFuture::Local { fut }
            }
            Decision::Pending(verdict) => {
                let decided = Decided {
                    counters: Arc::clone(&tier.counters),
                    policy: decided.policy,
                    tier: Arc::clone(&tier.name),
                    on_error: decided.on_error,
                };
                // The service that was polled ready goes into the future; a clone stays.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                RateLimitFuture::Remote {
                    fut: Box::pin(async move {
                        let r = verdict.await;
                        let id = a.request.extensions().get::<RequestId>().cloned();
                        match decided.outcome(r, id.as_ref()) {
                            Outcome::Forward((policy, state)) => {
                                let mut resp = inner.call(a).await?;
                                stamp(&mut resp, policy, state);
                                Ok(resp)
                            }
                            Outcome::ForwardBare => inner.call(a).await,
                            Outcome::Answer(resp) => Ok(resp),
                        }
                    }),
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
