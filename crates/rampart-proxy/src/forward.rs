//! The forwarding stage: sends an [`Authorized`] request to its route's upstream with the
//! spoofable headers replaced by what the gateway established, and streams the response
//! back. Bodies are streamed both ways; nothing is buffered whole.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rampart_http::body::{BodyLimitTripped, BodyRefused, BoxError, RespBody, StreamEnd};
use rampart_http::{
    Authorized, ClientAddr, GatewayMetrics, Reject, RequestId, Resp, X_RAMPART_AUTH,
    X_RAMPART_SCOPES, X_RAMPART_SUBJECT, X_RAMPART_TENANT, strip_hop_by_hop,
};
use tower_service::Service;

use crate::MAX_DEADLINE;
use crate::tls_upstream;
use crate::upstream::{self, HostPool, Outgoing, Pools};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The shared upstream connection pool (one per process; keeps connections across
/// configuration reloads).
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    /// https upstreams (hyper's client: rustls, ALPN).
    client: Client<Connector, RespBody>,
    /// Plain-http upstreams (`crate::upstream`: the exchange runs in the request's task).
    pools: Arc<Pools>,
    connect_timeout: Duration,
    idle: Duration,
}

impl UpstreamClient {
    /// `connect_timeout` bounds TCP connect; idle pooled connections close after `idle`.
    /// https upstreams are verified against the system's root certificates; without any,
    /// they fail to verify (logged once here), plain-http upstreams still work.
    pub fn new(connect_timeout: Duration, idle: Duration) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::clone(&provider))
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no native root certificates: https upstreams will fail to verify");
                let cfg = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(cfg)
            }
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        // Idle connections per https upstream bounded as the plain pools are (hyper keeps
        // every connection it opened, including those a request raced and did not use).
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(upstream::MAX_IDLE_PER_UPSTREAM)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            pools: Arc::new(Pools::default()),
            connect_timeout,
            idle,
        })
    }
}

/// Where a configured upstream lives: scheme and authority, plus an optional path prefix.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: Arc<str>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    prefix: String,
    /// Set for plain-http upstreams.
    pool: Option<Arc<HostPool>>,
    /// https upstreams: one place per exchange in flight (`max_connections`), held until
    /// the response body ends; waited for up to `queue_timeout`.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    cap: usize,
    queue_timeout: Duration,
}

impl Upstream {
    /// `default_cap` is the connection cap of an upstream that sets no `max_connections`
    /// (see [`default_upstream_cap`]).
    pub fn from_config(
        u: &rampart_config::UpstreamConfig,
        client: &UpstreamClient,
        default_cap: usize,
    ) -> Option<Self> {
        let scheme = u.url.scheme()?.clone();
        let authority = u.url.authority()?.clone();
        let prefix = u.url.path().trim_end_matches('/').to_owned();
        let max_connections = u.max_connections.unwrap_or(default_cap);
        let queue_timeout = u.queue_timeout.min(MAX_DEADLINE);
        let plain = scheme == http::uri::Scheme::HTTP;
        let pool = plain.then(|| {
            client.pools.get(
                &authority,
                client.connect_timeout,
                client.idle,
                upstream::PoolLimits {
                    max_connections,
                    queue_timeout,
                },
            )
        });
        let slots = (!plain).then(|| {
            Arc::new(tokio::sync::Semaphore::new(
                max_connections.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            ))
        });
        Some(Self {
            name: Arc::from(u.name.as_str()),
            scheme,
            authority,
            prefix,
            pool,
            slots,
            cap: max_connections,
            queue_timeout,
        })
    }

    /// The connection cap of an https upstream (for the busy log line).
    fn slots_total(&self) -> usize {
        self.cap
    }

    /// The upstream URI for a request's (already normalized) path and query. Without a
    /// prefix the request's `PathAndQuery` is reused as is (no copy).
    fn uri_for(&self, pq: Option<&http::uri::PathAndQuery>) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(match (pq, self.prefix.is_empty()) {
            (Some(pq), true) => pq.clone(),
            (pq, _) => {
                let tail = pq.map_or("/", http::uri::PathAndQuery::as_str);
                http::uri::PathAndQuery::try_from(format!("{}{tail}", self.prefix))?
            }
        });
        Ok(Uri::from_parts(parts)?)
    }
}

/// Descriptors kept back from the connection caps (listeners, files, the admin side).
const FD_RESERVE: u64 = 256;

/// The connection cap of an upstream without `max_connections`: what the process's
/// descriptor limit (`RLIMIT_NOFILE`) leaves after `server.max_connections` client
/// connections and a reserve of 256, shared evenly by the configured upstreams, and at
/// least 16. Client and upstream caps together then stay within the descriptor limit
/// (whenever it allows 16 per upstream), so the caps act before descriptors run out.
pub fn default_upstream_cap(server_max_connections: usize, upstreams: usize) -> usize {
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let left = nofile
        .saturating_sub(server_max_connections as u64)
        .saturating_sub(FD_RESERVE);
    let share = left / (upstreams.max(1) as u64);
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .clamp(16, 1_000_000)
}

/// The innermost service.
#[derive(Clone, Debug)]
pub struct Forward {
    client: UpstreamClient,
    upstreams: Arc<BTreeMap<String, Arc<Upstream>>>,
    metrics: Arc<GatewayMetrics>,
    deadlines: upstream::Deadlines,
}

impl Forward {
    pub fn new(
        client: UpstreamClient,
        upstreams: Arc<BTreeMap<String, Arc<Upstream>>>,
        metrics: Arc<GatewayMetrics>,
        deadlines: upstream::Deadlines,
    ) -> Self {
        Self {
            client,
            upstreams,
            metrics,
            deadlines: upstream::Deadlines {
                client_body_idle: deadlines.client_body_idle.min(MAX_DEADLINE),
                upstream_body_idle: deadlines.upstream_body_idle.min(MAX_DEADLINE),
            },
        }
    }
}

static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
static AUTH: HeaderName = X_RAMPART_AUTH;
static SUBJECT: HeaderName = X_RAMPART_SUBJECT;
static TENANT: HeaderName = X_RAMPART_TENANT;
static SCOPES: HeaderName = X_RAMPART_SCOPES;

impl<B> Service<Authorized<B>> for Forward
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, a: Authorized<B>) -> Self::Future {
        let Authorized { permit, request } = a;
        let (mut parts, body) = request.into_parts();
        let request_id = parts.extensions.remove::<RequestId>();
        let tripped = parts.extensions.remove::<BodyLimitTripped>();
        let route = permit.route();
        let Some(upstream) = self.upstreams.get(&route.config.upstream).cloned() else {
            return Box::pin(std::future::ready(Ok(
                Reject::Internal.into_response(request_id.as_ref())
            )));
        };
        let added = Added::for_request(&parts, &permit);
        let pool = upstream.pool.clone();
        let deadlines = self.deadlines;
        let fail = Failure {
            metrics: Arc::clone(&self.metrics),
            upstream,
            request_id,
            tripped,
        };
        if let Some(pool) = pool {
            let method = parts.method;
            let headers = parts.headers;
            let target = parts.uri.path_and_query().cloned();
            return Box::pin(async move {
                let skip = |n: &HeaderName| added.replaces(n);
                let out = Outgoing {
                    method: &method,
                    target_prefix: &fail.upstream.prefix,
                    target: target.as_ref().map_or("/", http::uri::PathAndQuery::as_str),
                    headers: &headers,
                    skip: &skip,
                    extra: &added.fields(),
                };
                Ok(
                    match upstream::exchange(&pool, out, body, deadlines).await {
                        Ok(resp) => {
                            let metrics = Arc::clone(&fail.metrics);
                            let name = Arc::clone(&fail.upstream.name);
                            relay(resp.map(move |b| {
                            b.map_err(move |e| {
                                let reason = e.reason();
                                metrics.upstream_error(&name, reason);
                                tracing::warn!(upstream = &*name, reason, error = %e, "response body cut short");
                                StreamEnd {
                                    reason,
                                    source: Box::new(e),
                                }
                            })
                        }))
                        }
                        Err(e) => fail.exchange_failed(e),
                    },
                )
            });
        }
        let uri = match fail.upstream.uri_for(parts.uri.path_and_query()) {
            Ok(u) => u,
            Err(_) => {
                return Box::pin(std::future::ready(Ok(
                    Reject::BadTarget.into_response(fail.request_id.as_ref())
                )));
            }
        };
        added.apply(&mut parts.headers);
        let fate = Arc::new(tls_upstream::BodyFate::default());
        let body = tls_upstream::IdleBody::request(
            body.map_err(Into::into),
            deadlines.client_body_idle,
            Arc::clone(&fate),
        );
        let mut out = Request::new(body.boxed_unsync());
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = parts.headers;

        let client = self.client.client.clone();
        Box::pin(async move {
            let permit = match &fail.upstream.slots {
                Some(slots) => match tokio::time::timeout(
                    fail.upstream.queue_timeout,
                    Arc::clone(slots).acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => Some(p),
                    _ => {
                        return Ok(fail.exchange_failed(upstream::ExchangeError::Busy(
                            fail.upstream.slots_total(),
                        )));
                    }
                },
                None => None,
            };
            // Cancelled while the answer is awaited, the exchange finishes in the
            // background and keeps its connection (see `tls_upstream::Pending`).
            let pending =
                tls_upstream::Pending::send(&client, out, permit, deadlines.upstream_body_idle);
            let (got, permit) = pending.await;
            Ok(match got {
                Ok(resp) => {
                    let metrics = Arc::clone(&fail.metrics);
                    let name = Arc::clone(&fail.upstream.name);
                    relay(resp.map(|b| {
                        tls_upstream::ResponseBody::new(tls_upstream::IdleBody::response(
                            b,
                            deadlines.upstream_body_idle,
                            permit,
                        ))
                        .map_err(move |e| {
                                let reason = StreamEnd::reason_of(&*e);
                                metrics.upstream_error(&name, reason);
                                tracing::warn!(upstream = &*name, reason, error = %e, "response body cut short");
                                e
                            })
                    }))
                }
                // The body limit stopped the upload: 413, whatever else happened.
                Err(e) if fail.tripped.as_ref().is_some_and(BodyLimitTripped::is_set) => {
                    fail.answer(false, &e)
                }
                Err(e) if let Some(reject) = BodyRefused::find(&e) => {
                    reject.into_response(fail.request_id.as_ref())
                }
                Err(_) if fate.timed_out() => {
                    Reject::ClientBodyTimeout.into_response(fail.request_id.as_ref())
                }
                Err(e) if fate.broken() => {
                    if client_body_malformed(&e) {
                        Reject::BadRequestBody.into_response(fail.request_id.as_ref())
                    } else {
                        Reject::ClientAbort.into_response(fail.request_id.as_ref())
                    }
                }
                Err(e) => fail.answer(e.is_connect(), &e),
            })
        })
    }
}

/// The fields the gateway sets on the forwarded request, replacing what the client sent
/// under those names (`Host` is always the upstream's own; body framing and `Expect` are
/// the exchange's business). Kept apart from the header map so that the plain-http path
/// writes them straight into the request head without hashing its way through the map.
struct Added {
    xff: Option<HeaderValue>,
    xfp: Option<HeaderValue>,
    xfh: Option<HeaderValue>,
    auth: Option<HeaderValue>,
    subject: Option<HeaderValue>,
    tenant: Option<HeaderValue>,
    scopes: Option<HeaderValue>,
}

impl Added {
    fn for_request(parts: &http::request::Parts, permit: &rampart_http::Permit) -> Self {
        let h = &parts.headers;
        let mut out = Added {
            xff: None,
            xfp: None,
            xfh: None,
            auth: None,
            subject: None,
            tenant: None,
            scopes: None,
        };
        if let Some(c) = parts.extensions.get::<ClientAddr>() {
            let mut xff = String::with_capacity(48);
            // From a trusted proxy the chain is extended; otherwise it starts here
            // (an untrusted peer's X-Forwarded-* never got past Sanitize).
            if c.peer_trusted
                && let Some(prev) = h.get(&XFF).and_then(|v| v.to_str().ok())
            {
                xff.push_str(prev);
                xff.push_str(", ");
            }
            rampart_http::push_ip(&mut xff, c.peer);
            out.xff = HeaderValue::from_str(&xff).ok();
            if !(c.peer_trusted && h.contains_key(&XFP)) {
                out.xfp = Some(HeaderValue::from_static(if c.https {
                    "https"
                } else {
                    "http"
                }));
            }
            if !(c.peer_trusted && h.contains_key(&XFH)) {
                // The host the client asked for.
                out.xfh = h.get(header::HOST).cloned().or_else(|| {
                    parts
                        .uri
                        .authority()
                        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                });
            }
        }
        let id = permit.identity();
        out.auth = match id.method {
            "none" => Some(HeaderValue::from_static("none")),
            other => HeaderValue::from_str(other).ok(),
        };
        out.subject = id
            .subject
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok());
        out.tenant = id
            .tenant
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok());
        // The scopes the policy granted (roles mapped), not the raw credential's.
        if !permit.scopes().is_empty() {
            out.scopes = HeaderValue::from_str(&permit.scopes().join(" ")).ok();
        }
        out
    }

    fn fields(&self) -> [(&'static HeaderName, Option<&HeaderValue>); 7] {
        [
            (&XFF, self.xff.as_ref()),
            (&XFP, self.xfp.as_ref()),
            (&XFH, self.xfh.as_ref()),
            (&AUTH, self.auth.as_ref()),
            (&SUBJECT, self.subject.as_ref()),
            (&TENANT, self.tenant.as_ref()),
            (&SCOPES, self.scopes.as_ref()),
        ]
    }

    /// Does the forwarded request drop the client's field `n`?
    fn replaces(&self, n: &HeaderName) -> bool {
        n == header::HOST
            || n == header::CONTENT_LENGTH
            || n == header::TRANSFER_ENCODING
            // hyper answered the client's 100-continue when the body was first polled.
            || n == header::EXPECT
            // Identity fields come from the gateway alone (Sanitize stripped the
            // client's, this keeps that true whatever a later stage did).
            || n == X_RAMPART_AUTH
            || n == X_RAMPART_SUBJECT
            || n == X_RAMPART_TENANT
            || n == X_RAMPART_SCOPES
            // X-Forwarded-* only where the gateway sets its own value.
            || (self.xff.is_some() && n == XFF)
            || (self.xfp.is_some() && n == XFP)
            || (self.xfh.is_some() && n == XFH)
    }

    /// For hyper's client: the same result as a header map.
    fn apply(&self, h: &mut HeaderMap) {
        h.remove(header::HOST);
        for n in [
            X_RAMPART_AUTH,
            X_RAMPART_SUBJECT,
            X_RAMPART_TENANT,
            X_RAMPART_SCOPES,
        ] {
            h.remove(n);
        }
        for (name, v) in self.fields() {
            if let Some(v) = v {
                h.insert(name.clone(), v.clone());
            }
        }
    }
}

/// The upstream's response as the client gets it: hop-by-hop fields and the upstream
/// side's extensions dropped, body boxed.
fn relay<B>(resp: http::Response<B>) -> Resp
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, &[]);
    parts.extensions.clear();
    let body: RespBody = body.map_err(Into::into).boxed_unsync();
    http::Response::from_parts(parts, body)
}

/// What a failed exchange needs to answer: 413 if the client's body crossed its limit
/// (that is why the exchange stopped), else 502, counted and logged.
struct Failure {
    metrics: Arc<GatewayMetrics>,
    upstream: Arc<Upstream>,
    request_id: Option<RequestId>,
    tripped: Option<BodyLimitTripped>,
}

impl Failure {
    /// The answer to an exchange that failed before a response head: the client's own
    /// failures (a silent or broken body, a disconnect) are not upstream errors.
    fn exchange_failed(&self, e: upstream::ExchangeError) -> Resp {
        let request_id = self.request_id.as_ref();
        if let upstream::ExchangeError::Body(b) = &e
            && let Some(reject) = BodyRefused::find(b.as_ref())
        {
            return reject.into_response(request_id);
        }
        match &e {
            upstream::ExchangeError::ClientBodyTimeout(_) => {
                Reject::ClientBodyTimeout.into_response(request_id)
            }
            upstream::ExchangeError::Busy(cap) => {
                self.metrics.upstream_error(&self.upstream.name, "busy");
                tracing::warn!(
                    upstream = &*self.upstream.name,
                    max_connections = cap,
                    request_id = request_id.map(RequestId::as_str),
                    "upstream connection cap reached; request refused after its queue timeout"
                );
                Reject::UpstreamBusy.into_response(request_id)
            }
            upstream::ExchangeError::Body(b)
                if !self.tripped.as_ref().is_some_and(BodyLimitTripped::is_set) =>
            {
                if client_body_malformed(b.as_ref()) {
                    Reject::BadRequestBody.into_response(request_id)
                } else {
                    Reject::ClientAbort.into_response(request_id)
                }
            }
            _ => self.answer(e.is_connect(), &e),
        }
    }

    fn answer(&self, connect: bool, e: &(dyn std::error::Error + 'static)) -> Resp {
        let request_id = self.request_id.as_ref();
        if self.tripped.as_ref().is_some_and(BodyLimitTripped::is_set) {
            return Reject::PayloadTooLarge.into_response(request_id);
        }
        let kind = if connect { "connect" } else { "request" };
        self.metrics.upstream_error(&self.upstream.name, kind);
        tracing::warn!(
            upstream = &*self.upstream.name,
            kind,
            request_id = request_id.map(RequestId::as_str),
            error = %error_chain(e),
            "upstream request failed"
        );
        Reject::BadGateway.into_response(request_id)
    }
}

/// Whether a client body error is broken framing (a malformed chunk: 400) rather than the
/// client going away.
fn client_body_malformed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>()
            && h.is_parse()
        {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            );
        }
        cur = c.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
