//! The pipeline stages of DESIGN.md §1 as tower layers.
//!
//! Most stages are a synchronous check on the request head plus, optionally, a touch on
//! the response head: they implement [`Stage`] and become a layer through [`StageLayer`],
//! whose future is a two-state enum (answered now / waiting for the inner service), so
//! stacking them costs no allocation. Stages that need time ([`AccessLog`], [`Timeout`])
//! or change the request type ([`crate::Authorize`], [`BodyLimit`]) are written out in full.
//!
//! Services are cheap to clone (settings live behind an `Arc`) and never fail: every
//! error is already a response, so the error type is [`Infallible`].

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{BodyLimitTripped, LimitedBody, RespBody};
use crate::metrics::GatewayMetrics;
use crate::problem::{Reject, push_json_str};
use crate::router::{RouteOutcome, Router};
use crate::{
    Authorized, ClientAddr, ConnInfo, Decision, Outcome, RawTarget, RequestId, RouteMatch,
    X_REQUEST_ID, is_trusted,
};

/// Response of every stage.
pub type Resp = Response<RespBody>;

// ---------------------------------------------------------------------------------------
// Generic stage plumbing
// ---------------------------------------------------------------------------------------

/// A pipeline stage that decides on the request head and may touch the response head.
pub trait Stage: Send + Sync + 'static {
    /// Carried from the request to the response.
    type State: Send + 'static;
    /// Checks (and may rewrite) the request. An `Err` answers the request now.
    fn on_request<B>(&self, req: &mut Request<B>) -> Result<Self::State, Reject>;
    /// Touches the response of the inner service (or of a refusal by an inner stage).
    fn on_response(&self, _state: Self::State, _resp: &mut Resp) {}
}

/// Turns a [`Stage`] into a tower [`Layer`].
#[derive(Debug)]
pub struct StageLayer<T> {
    stage: Arc<T>,
}

impl<T> Clone for StageLayer<T> {
    fn clone(&self) -> Self {
        Self {
            stage: Arc::clone(&self.stage),
        }
    }
}

impl<T: Stage> StageLayer<T> {
    pub fn from_stage(stage: T) -> Self {
        Self {
            stage: Arc::new(stage),
        }
    }
}

impl<T, S> Layer<S> for StageLayer<T> {
    type Service = StageService<T, S>;
    fn layer(&self, inner: S) -> Self::Service {
        StageService {
            stage: Arc::clone(&self.stage),
            inner,
        }
    }
}

/// The service a [`StageLayer`] makes.
#[derive(Debug)]
pub struct StageService<T, S> {
    stage: Arc<T>,
    inner: S,
}

impl<T, S: Clone> Clone for StageService<T, S> {
    fn clone(&self) -> Self {
        Self {
            stage: Arc::clone(&self.stage),
            inner: self.inner.clone(),
        }
    }
}

impl<T, S, B> Service<Request<B>> for StageService<T, S>
where
    T: Stage,
    S: Service<Request<B>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = StageFuture<T, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.stage.on_request(&mut req) {
            Ok(state) => StageFuture::Inner {
                fut: self.inner.call(req),
                after: Some((Arc::clone(&self.stage), state)),
            },
            Err(reject) => StageFuture::reject(reject, req.extensions().get::<RequestId>()),
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of a [`StageService`] (and of the services that reuse it with
    /// [`NoStage`]): a refusal answered now, or the inner future and what to do with its
    /// response (`None`: pass it through untouched).
    #[project = StageFutureProj]
    pub enum StageFuture<T: Stage, F> {
        Now { resp: Option<Resp> },
        Inner { #[pin] fut: F, after: Option<(Arc<T>, T::State)> },
    }
}

impl<T: Stage, F> StageFuture<T, F> {
    /// Answers now with the problem response of `r`.
    pub fn reject(r: Reject, id: Option<&RequestId>) -> Self {
        Self::Now {
            resp: Some(r.into_response(id)),
        }
    }

    /// Waits for the inner future and passes its response through untouched.
    pub fn pass(fut: F) -> Self {
        Self::Inner { fut, after: None }
    }
}

impl<T, F> Future for StageFuture<T, F>
where
    T: Stage,
    F: Future<Output = Result<Resp, Infallible>>,
{
    type Output = Result<Resp, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            StageFutureProj::Now { resp } => match resp.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Ready(Ok(Reject::Internal.into_response(None))),
            },
            StageFutureProj::Inner { fut, after } => {
                let Ok(mut resp) = std::task::ready!(fut.poll(cx));
                if let Some((stage, state)) = after.take() {
                    stage.on_response(state, &mut resp);
                }
                Poll::Ready(Ok(resp))
            }
        }
    }
}

fn peer_of<B>(req: &Request<B>) -> Option<&ConnInfo> {
    req.extensions().get::<ConnInfo>()
}

// ---------------------------------------------------------------------------------------
// Header names
// ---------------------------------------------------------------------------------------

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies still see.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that say something about the client or the route to it. They are honoured only
/// from a trusted proxy and stripped from every other request.
pub const SPOOFABLE: [&str; 9] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "x-auth-request-user",
    "x-ssl-client-subject",
];

/// Headers a client may never remove by naming them in `Connection`: rampart reads or
/// adds them.
const PROTECTED: [&str; 14] = [
    "host",
    "content-length",
    "content-type",
    "authorization",
    "x-api-key",
    "signature",
    "signature-input",
    "content-digest",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "cookie",
];

/// Compares a header name with `target` treating `_` and `.` as `-` (names are already
/// lower-case in `http`).
fn canon_eq(name: &[u8], target: &[u8]) -> bool {
    name.len() == target.len()
        && name
            .iter()
            .zip(target)
            .all(|(a, b)| canon_byte(*a) == b.to_ascii_lowercase())
}

fn canon_byte(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// `x-rampart-` under any spelling: `X_Rampart_Subject`, `x.rampart.tenant`, …
pub fn is_rampart_header(name: &[u8]) -> bool {
    const P: &[u8] = b"x-rampart-";
    name.len() >= P.len() && name.iter().zip(P).all(|(a, b)| canon_byte(*a) == *b)
}

// ---------------------------------------------------------------------------------------
// Sanitize: header size cap, hop-by-hop, spoofable and x-rampart-* headers
// ---------------------------------------------------------------------------------------

/// Caps the header section and removes every header a client must not control.
#[derive(Debug)]
pub struct Sanitize {
    max_header_bytes: usize,
    /// Most header fields per request (HTTP/1 heads are also counted by the listener's
    /// head gate before parsing; this covers HTTP/2).
    max_header_count: usize,
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Extra identity headers (from `auth.*`) treated like [`SPOOFABLE`].
    extra_spoofable: Vec<String>,
}

pub type SanitizeLayer = StageLayer<Sanitize>;

impl StageLayer<Sanitize> {
    pub fn new(
        max_header_bytes: usize,
        trusted_proxies: Vec<ipnet::IpNet>,
        extra_spoofable: Vec<String>,
    ) -> Self {
        Self::from_stage(Sanitize {
            max_header_bytes,
            max_header_count: 100,
            trusted_proxies,
            extra_spoofable: extra_spoofable
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
        })
    }
}

impl StageLayer<Sanitize> {
    /// Refuses requests with more than `n` header fields (431).
    #[must_use]
    pub fn max_header_count(mut self, n: usize) -> Self {
        if let Some(stage) = Arc::get_mut(&mut self.stage) {
            stage.max_header_count = n;
        }
        self
    }
}

impl Sanitize {
    fn is_spoofable(&self, name: &[u8]) -> bool {
        SPOOFABLE.iter().any(|s| canon_eq(name, s.as_bytes()))
            || self
                .extra_spoofable
                .iter()
                .any(|s| canon_eq(name, s.as_bytes()))
    }
}

/// Removes hop-by-hop headers and the headers named in `Connection`, except `protected`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, protected: &[&str]) {
    // One pass to see whether there is anything to do: almost always there is not, and
    // nine hashed removals per message are not free.
    if !headers.keys().any(|k| is_hop_by_hop(k.as_str().as_bytes())) {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for tok in s.split(',') {
                let tok = tok.trim();
                if tok.is_empty() || protected.iter().any(|p| p.eq_ignore_ascii_case(tok)) {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(tok.as_bytes()) {
                    named.push(n);
                }
            }
        }
    }
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
}

/// Is `name` (lower-case, as `HeaderName` stores it) one of [`HOP_BY_HOP`]?
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_bytes() == name)
}

impl Stage for Sanitize {
    type State = ();

    fn on_request<B>(&self, req: &mut Request<B>) -> Result<(), Reject> {
        if let Some(m) = req
            .extensions()
            .get::<crate::RawTarget>()
            .and_then(|r| r.refused)
        {
            return Err(Reject::Protocol(m));
        }
        let headers = req.headers();
        let mut size = 0usize;
        let mut strip: Vec<HeaderName> = Vec::new();
        let trusted = peer_of(req)
            .map(|c| is_trusted(&self.trusted_proxies, c.peer.ip()))
            .unwrap_or(false);
        let mut hop = false;
        for (name, value) in headers {
            size = size.saturating_add(name.as_str().len() + value.len() + 4);
            let n = name.as_str().as_bytes();
            hop |= is_hop_by_hop(n);
            if is_rampart_header(n) {
                strip.push(name.clone());
            } else if n == b"x-request-id" {
                // Already decided by the request-id stage (kept only from a trusted proxy).
            } else if self.is_spoofable(n) {
                // The canonical spelling from a trusted proxy is honoured; an alias
                // spelling is ambiguous (some servers fold `_` into `-`), so it never is.
                let canonical = !n.iter().any(|b| *b == b'_' || *b == b'.');
                if !(trusted && canonical) {
                    strip.push(name.clone());
                }
            }
        }
        if size > self.max_header_bytes {
            return Err(Reject::HeadersTooLarge);
        }
        if headers.len() > self.max_header_count {
            return Err(Reject::Protocol(crate::Malformed::TooManyHeaders));
        }
        let headers = req.headers_mut();
        for n in strip {
            headers.remove(n);
        }
        if hop {
            strip_hop_by_hop(headers, &PROTECTED);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Request id
// ---------------------------------------------------------------------------------------

/// Keeps a well-formed `x-request-id` from a trusted proxy or mints one; echoes it on
/// the response. Runs before [`Sanitize`] so that even a 431 carries an id.
#[derive(Debug, Default)]
pub struct RequestIdStage {
    trusted_proxies: Vec<ipnet::IpNet>,
}

pub type RequestIdLayer = StageLayer<RequestIdStage>;

impl StageLayer<RequestIdStage> {
    /// Only peers in `trusted_proxies` may choose the id.
    pub fn new(trusted_proxies: Vec<ipnet::IpNet>) -> Self {
        Self::from_stage(RequestIdStage { trusted_proxies })
    }
}

/// Upper bound on a kept request id.
const MAX_REQUEST_ID: usize = 128;

fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// 128 random bits as 32 lower-case hex digits.
pub fn mint_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut v: u128 = rand::random();
    let mut out = [0u8; 32];
    for slot in out.iter_mut().rev() {
        *slot = HEX.get((v & 0xf) as usize).copied().unwrap_or(b'0');
        v >>= 4;
    }
    // A shared buffer from the start: the id is cloned into the request, the
    // extensions and the response, and each clone is then only a reference count.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(out))
        .unwrap_or(HeaderValue::from_static("0"))
}

impl Stage for RequestIdStage {
    type State = HeaderValue;

    fn on_request<B>(&self, req: &mut Request<B>) -> Result<HeaderValue, Reject> {
        let trusted = peer_of(req).is_some_and(|c| is_trusted(&self.trusted_proxies, c.peer.ip()));
        let id = match req.headers().get(X_REQUEST_ID) {
            Some(v)
                if trusted
                    && valid_request_id(v)
                    && req.headers().get_all(X_REQUEST_ID).iter().count() == 1 =>
            {
                v.clone()
            }
            _ => mint_request_id(),
        };
        req.headers_mut().insert(X_REQUEST_ID, id.clone());
        req.extensions_mut().insert(RequestId::new(id.clone()));
        Ok(id)
    }

    fn on_response(&self, id: HeaderValue, resp: &mut Resp) {
        resp.headers_mut().insert(X_REQUEST_ID, id);
    }
}

// ---------------------------------------------------------------------------------------
// Host allowlist
// ---------------------------------------------------------------------------------------

/// Refuses a request whose Host is missing, duplicated, malformed, disagrees with the
/// request-target authority, or is not in `server.trusted_hosts`.
#[derive(Debug)]
pub struct HostCheck {
    exact: Vec<String>,
    /// `*.example.com` stored as `.example.com`.
    wildcard: Vec<String>,
}

pub type HostLayer = StageLayer<HostCheck>;

impl StageLayer<HostCheck> {
    /// An empty list allows any well-formed host (the `dev` profile only).
    pub fn new(trusted_hosts: Vec<String>) -> Self {
        let mut exact = Vec::new();
        let mut wildcard = Vec::new();
        for h in trusted_hosts {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix('*') {
                Some(rest) if rest.starts_with('.') => wildcard.push(rest.to_owned()),
                _ => exact.push(h),
            }
        }
        Self::from_stage(HostCheck { exact, wildcard })
    }
}

/// Splits `host[:port]` / `[v6][:port]` and returns the host, lower-case comparable.
/// `None` when malformed.
pub fn host_of(authority: &str) -> Option<&str> {
    if authority.is_empty() || authority.len() > 255 {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = rest.get(..end)?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let after = rest.get(end + 1..)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (authority.get(..end + 2)?, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    if host.starts_with('[') {
        return Some(host);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        || host.starts_with('.')
        || host.contains("..")
    {
        return None;
    }
    Some(host)
}

impl HostCheck {
    fn allowed(&self, host: &str) -> bool {
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return true;
        }
        if self.exact.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return true;
        }
        self.wildcard.iter().any(|suffix| {
            host.len() > suffix.len()
                && host
                    .get(host.len() - suffix.len()..)
                    .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
                && host
                    .get(..host.len() - suffix.len())
                    .is_some_and(|label| !label.contains('.'))
        })
    }
}

impl Stage for HostCheck {
    type State = ();

    fn on_request<B>(&self, req: &mut Request<B>) -> Result<(), Reject> {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let header_host = hosts.next();
        if hosts.next().is_some() {
            return Err(Reject::BadHost);
        }
        let header_host = match header_host {
            Some(v) => Some(v.to_str().map_err(|_| Reject::BadHost)?),
            None => None,
        };
        let authority = req.uri().authority().map(|a| a.as_str());
        if req.method() == http::Method::CONNECT {
            return Err(Reject::BadTarget);
        }
        let host = match (header_host, authority) {
            (Some(h), Some(a)) => {
                let (h, a) = (
                    host_of(h).ok_or(Reject::BadHost)?,
                    host_of(a).ok_or(Reject::BadHost)?,
                );
                if !h.eq_ignore_ascii_case(a) {
                    return Err(Reject::HostMismatch);
                }
                h
            }
            (Some(h), None) => host_of(h).ok_or(Reject::BadHost)?,
            (None, Some(a)) => host_of(a).ok_or(Reject::BadHost)?,
            (None, None) => return Err(Reject::BadHost),
        };
        if !self.allowed(host) {
            return Err(Reject::BadHost);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Path normalization + route match
// ---------------------------------------------------------------------------------------

/// Normalizes the path, matches the one route of this request, applies the route's
/// target rules (`;`, `#`, `*`), rewrites the request to the normalized path and records
/// the match in the request's extensions for every later stage.
#[derive(Debug)]
pub struct RouteStage {
    router: Arc<Router>,
}

pub type RouteLayer = StageLayer<RouteStage>;

impl StageLayer<RouteStage> {
    pub fn new(router: Arc<Router>) -> Self {
        Self::from_stage(RouteStage { router })
    }
}

/// A `*` in a segment, also percent-encoded (`%2A`/`%2a`); no allocation.
fn has_wildcard(segment: &str) -> bool {
    segment.contains('*')
        || segment
            .as_bytes()
            .windows(3)
            .any(|w| matches!(w, [b'%', b'2', b'a' | b'A']))
}

/// Removes the `;params` of every segment.
fn strip_path_params(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(seg.split(';').next().unwrap_or(""));
    }
    out
}

/// The method a CORS preflight asks about: `OPTIONS` with `Origin` and one
/// `Access-Control-Request-Method` naming a method (Fetch standard, CORS-preflight
/// request).
fn preflight_method<B>(req: &Request<B>) -> Option<http::Method> {
    if req.method() != http::Method::OPTIONS || !req.headers().contains_key(header::ORIGIN) {
        return None;
    }
    let mut asked = req
        .headers()
        .get_all(header::ACCESS_CONTROL_REQUEST_METHOD)
        .iter();
    let v = asked.next()?;
    if asked.next().is_some() {
        return None;
    }
    http::Method::from_bytes(v.as_bytes()).ok()
}

/// Put on responses once a route matched: the route, for metrics and logs.
#[derive(Debug, Clone)]
pub struct MatchedRoute(pub Arc<crate::Route>);

impl Stage for RouteStage {
    type State = Arc<crate::Route>;

    fn on_request<B>(&self, req: &mut Request<B>) -> Result<Self::State, Reject> {
        let raw_path = req.uri().path();
        if raw_path == "*" {
            return Err(Reject::BadTarget);
        }
        let normalized = crate::path::normalize(raw_path).map_err(Reject::Path)?;
        // `;` parameters do not take part in matching (`/status;x=1` is a request for the
        // `/status` route, which then refuses it unless it allows parameters).
        let has_params = normalized.contains(';');
        let match_path = if has_params {
            std::borrow::Cow::Owned(strip_path_params(&normalized))
        } else {
            std::borrow::Cow::Borrowed(&*normalized)
        };
        // A CORS preflight asks about another method: it is routed by that method, but
        // only to a route that enables CORS (whose stage answers it; it never reaches the
        // upstream). Any other OPTIONS request is routed as itself.
        let preflight = preflight_method(req);
        let outcome = match &preflight {
            Some(asked) => match self.router.route(&match_path, asked) {
                RouteOutcome::Matched(r, p) if r.config.cors.is_some() => {
                    RouteOutcome::Matched(r, p)
                }
                _ => self.router.route(&match_path, req.method()),
            },
            None => self.router.route(&match_path, req.method()),
        };
        let (route, params) = match outcome {
            RouteOutcome::Matched(r, p) => (r, p),
            RouteOutcome::NotFound => return Err(Reject::NotFound),
            RouteOutcome::MethodNotAllowed(m) => return Err(Reject::MethodNotAllowed(m)),
        };
        let rc = &route.config;
        if !rc.allow_path_params && has_params {
            return Err(Reject::PathParam);
        }
        if !rc.allow_fragment
            && req
                .extensions()
                .get::<RawTarget>()
                .is_some_and(|t| t.had_fragment)
        {
            return Err(Reject::Fragment);
        }
        if !rc.allow_wildcard && params.iter().any(|(_, v)| has_wildcard(v)) {
            return Err(Reject::Wildcard);
        }
        if let std::borrow::Cow::Owned(p) = normalized {
            let pq = match req.uri().query() {
                Some(q) => format!("{p}?{q}"),
                None => p,
            };
            let mut parts = req.uri().clone().into_parts();
            // Signed requests (RFC 9421) cover the target as sent, not as normalized.
            if let Some(sent) = parts.path_and_query.clone() {
                req.extensions_mut().insert(crate::SentTarget(sent));
            }
            parts.path_and_query = Some(pq.parse().map_err(|_| Reject::BadTarget)?);
            *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| Reject::BadTarget)?;
        }
        if let Some(method) = preflight
            && route.config.cors.is_some()
        {
            req.extensions_mut().insert(crate::Preflight { method });
        }
        req.extensions_mut().insert(RouteMatch {
            route: Arc::clone(&route),
            params,
        });
        Ok(route)
    }

    fn on_response(&self, route: Arc<crate::Route>, resp: &mut Resp) {
        resp.extensions_mut().insert(MatchedRoute(route));
    }
}

// ---------------------------------------------------------------------------------------
// Client address
// ---------------------------------------------------------------------------------------

/// Works out [`ClientAddr`]: the peer, or from a trusted proxy the first untrusted hop of
/// `X-Forwarded-For`, and whether the client used TLS.
#[derive(Debug)]
pub struct ClientAddrStage {
    trusted_proxies: Vec<ipnet::IpNet>,
}

pub type ClientAddrLayer = StageLayer<ClientAddrStage>;

impl StageLayer<ClientAddrStage> {
    pub fn new(trusted_proxies: Vec<ipnet::IpNet>) -> Self {
        Self::from_stage(ClientAddrStage { trusted_proxies })
    }
}

/// Put on responses: the client address the gateway trusted, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Whether the client reached us over TLS: here, or per a trusted proxy's
/// `X-Forwarded-Proto` (its last value).
pub fn client_https<B>(req: &Request<B>, trusted_proxies: &[ipnet::IpNet]) -> bool {
    let Some(conn) = peer_of(req) else {
        return false;
    };
    if conn.tls.is_some() {
        return true;
    }
    if !is_trusted(trusted_proxies, conn.peer.ip()) {
        return false;
    }
    req.headers()
        .get_all("x-forwarded-proto")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.rsplit(',').next())
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("https"))
}

impl Stage for ClientAddrStage {
    type State = IpAddr;

    fn on_request<B>(&self, req: &mut Request<B>) -> Result<IpAddr, Reject> {
        let Some(conn) = peer_of(req) else {
            return Err(Reject::Internal);
        };
        let peer = conn.peer.ip().to_canonical();
        let trusted = is_trusted(&self.trusted_proxies, peer);
        let ip = if trusted {
            crate::forwarded::client_ip(
                peer,
                req.headers().get_all("x-forwarded-for").iter(),
                &self.trusted_proxies,
            )
        } else {
            peer
        };
        let https = client_https(req, &self.trusted_proxies);
        req.extensions_mut().insert(ClientAddr {
            ip,
            peer,
            peer_trusted: trusted,
            https,
        });
        Ok(ip)
    }

    fn on_response(&self, ip: IpAddr, resp: &mut Resp) {
        resp.extensions_mut().insert(ClientIp(ip));
    }
}

// ---------------------------------------------------------------------------------------
// Security headers
// ---------------------------------------------------------------------------------------

/// Sets the security headers on every response (errors included) and removes `Server`
/// and `X-Powered-By`. HSTS is sent only when the client reached us over TLS.
#[derive(Debug)]
pub struct SecurityHeaders {
    always: Vec<(HeaderName, HeaderValue)>,
    hsts: Option<HeaderValue>,
    trusted_proxies: Vec<ipnet::IpNet>,
}

pub type SecurityHeadersLayer = StageLayer<SecurityHeaders>;

impl StageLayer<SecurityHeaders> {
    /// `values` are the validated `[headers]`; `None` = header not sent.
    pub fn new(values: &rampart_config::HeadersConfig, trusted_proxies: Vec<ipnet::IpNet>) -> Self {
        let mut always = Vec::new();
        let mut push = |name: &'static str, v: &Option<String>| {
            if let Some(v) = v.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                always.push((HeaderName::from_static(name), v));
            }
        };
        push("content-security-policy", &values.content_security_policy);
        push("x-frame-options", &values.x_frame_options);
        push("x-content-type-options", &values.x_content_type_options);
        push("referrer-policy", &values.referrer_policy);
        push("permissions-policy", &values.permissions_policy);
        push(
            "cross-origin-opener-policy",
            &values.cross_origin_opener_policy,
        );
        let hsts = values
            .strict_transport_security
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok());
        Self::from_stage(SecurityHeaders {
            always,
            hsts,
            trusted_proxies,
        })
    }
}

impl Stage for SecurityHeaders {
    type State = bool;

    fn on_request<B>(&self, req: &mut Request<B>) -> Result<bool, Reject> {
        Ok(client_https(req, &self.trusted_proxies))
    }

    fn on_response(&self, https: bool, resp: &mut Resp) {
        apply_security_headers(self, https, resp.headers_mut());
    }
}

static X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

fn apply_security_headers(s: &SecurityHeaders, https: bool, h: &mut HeaderMap) {
    // One pass over the names instead of three hashed removals that almost never find
    // anything.
    let strip = h.keys().any(|k| {
        k == header::SERVER || k == X_POWERED_BY || k == header::STRICT_TRANSPORT_SECURITY
    });
    if strip {
        h.remove(header::SERVER);
        h.remove(&X_POWERED_BY);
        // Never pass on an upstream's HSTS over plain HTTP (RFC 6797 §7.2); over TLS
        // ours replaces it below.
        h.remove(header::STRICT_TRANSPORT_SECURITY);
    }
    for (n, v) in &s.always {
        h.insert(n.clone(), v.clone());
    }
    if let (Some(v), true) = (&s.hsts, https) {
        h.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
}

// ---------------------------------------------------------------------------------------
// Timeout
// ---------------------------------------------------------------------------------------

/// Answers 504 when the inner service has not produced a response head in time.
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        TimeoutFuture {
            fut: self.inner.call(req),
            sleep: tokio::time::sleep(self.timeout),
            id,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct TimeoutFuture<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: tokio::time::Sleep,
        id: Option<RequestId>,
    }
}

impl<F> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Resp, Infallible>>,
{
    type Output = Result<Resp, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.fut.poll(cx) {
            return Poll::Ready(r);
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Ok(Reject::GatewayTimeout.into_response(this.id.as_ref())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The stage type of services that reuse [`StageFuture`] without a response hook.
#[derive(Debug, Default)]
pub struct NoStage;

impl Stage for NoStage {
    type State = ();
    fn on_request<B>(&self, _req: &mut Request<B>) -> Result<(), Reject> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Body limit
// ---------------------------------------------------------------------------------------

/// Enforces the route's `max_body_bytes` (or the server default): 413 at once when
/// `Content-Length` says too much, and for streamed bodies a [`LimitedBody`] that fails
/// before the upstream sees a byte past the limit.
#[derive(Debug, Clone)]
pub struct BodyLimitLayer {
    default_limit: u64,
}

impl BodyLimitLayer {
    pub fn new(default_limit: u64) -> Self {
        Self { default_limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            default_limit: self.default_limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    default_limit: u64,
}

impl<S, B> Service<Authorized<B>> for BodyLimit<S>
where
    S: Service<Authorized<LimitedBody<B>>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = StageFuture<NoStage, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, a: Authorized<B>) -> Self::Future {
        let limit = a
            .permit
            .route()
            .config
            .max_body_bytes
            .unwrap_or(self.default_limit);
        let declared = a
            .request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return StageFuture::reject(
                Reject::PayloadTooLarge,
                a.request.extensions().get::<RequestId>(),
            );
        }
        let tripped = BodyLimitTripped::default();
        let (mut parts, body) = a.request.into_parts();
        parts.extensions.insert(tripped.clone());
        let request = Request::from_parts(parts, LimitedBody::new(body, limit, tripped));
        StageFuture::pass(self.inner.call(Authorized {
            permit: a.permit,
            request,
        }))
    }
}

// ---------------------------------------------------------------------------------------
// Access log + metrics
// ---------------------------------------------------------------------------------------

/// Where access-log lines go. Implementations must not block (drop lines instead).
pub trait AccessSink: Send + Sync + 'static {
    /// One complete JSON line, ending in `\n`.
    fn write_line(&self, line: &str);
}

/// Outermost layer: records every request's metrics and writes one JSON access-log line,
/// whatever the outcome. The line holds no header values, no query string and no body.
#[derive(Clone)]
pub struct AccessLogLayer {
    metrics: Arc<GatewayMetrics>,
    sink: Option<Arc<dyn AccessSink>>,
}

impl std::fmt::Debug for AccessLogLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogLayer").finish_non_exhaustive()
    }
}

impl AccessLogLayer {
    pub fn new(metrics: Arc<GatewayMetrics>, sink: Option<Arc<dyn AccessSink>>) -> Self {
        Self { metrics, sink }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
    layer: AccessLogLayer,
}

/// What the access log keeps of the request until the response arrives.
#[derive(Debug)]
pub struct RequestFacts {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    /// The connection's write-stall flag (see [`crate::ConnInfo`]).
    write_stalled: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl RequestFacts {
    /// `client_abort`, or `client_write_stall` when the write-stall deadline dropped the
    /// client.
    fn abort_reason(&self) -> &'static str {
        match &self.write_stalled {
            Some(f) if f.load(std::sync::atomic::Ordering::Acquire) => "client_write_stall",
            _ => "client_abort",
        }
    }
}

impl<S, B> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let facts = self.layer.sink.as_ref().map(|_| RequestFacts {
            method: req.method().clone(),
            // A cheap clone (shared bytes); cut to MAX_LOGGED_PATH when the line is written.
            uri: req.uri().clone(),
            version: req.version(),
            write_stalled: req
                .extensions()
                .get::<crate::ConnInfo>()
                .and_then(|c| c.write_stalled.clone()),
        });
        AccessLogFuture {
            fut: self.inner.call(req),
            start: Instant::now(),
            facts,
            layer: self.layer.clone(),
            done: false,
        }
    }
}

const MAX_LOGGED_PATH: usize = 512;

pin_project_lite::pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        fut: F,
        start: Instant,
        facts: Option<RequestFacts>,
        layer: AccessLogLayer,
        done: bool,
    }

    impl<F> PinnedDrop for AccessLogFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                // The client went away (an HTTP/2 reset, a closed connection) before any
                // answer: still one line and one count, with nginx's 499.
                let line = LineFacts {
                    request_id: None,
                    client_ip: None,
                    route: None,
                    stage: None,
                };
                finish(
                    this.layer,
                    this.facts.as_ref(),
                    &line,
                    499,
                    Outcome {
                        decision: Decision::Allow,
                        reason: "client_abort",
                    },
                    this.start.elapsed(),
                );
            }
        }
    }
}

/// What the access-log line takes from the response head.
struct LineFacts {
    request_id: Option<HeaderValue>,
    client_ip: Option<IpAddr>,
    route: Option<Arc<crate::Route>>,
    /// The stage that refused, when the response is a refusal.
    stage: Option<&'static str>,
}

impl LineFacts {
    fn of(resp: &Resp) -> Self {
        Self {
            request_id: resp.headers().get(X_REQUEST_ID).cloned(),
            client_ip: resp.extensions().get::<ClientIp>().map(|c| c.0),
            route: resp
                .extensions()
                .get::<MatchedRoute>()
                .map(|r| Arc::clone(&r.0)),
            stage: resp.extensions().get::<crate::RefusedAt>().map(|s| s.0),
        }
    }
}

/// Records the request's metrics and writes its line.
fn finish(
    layer: &AccessLogLayer,
    facts: Option<&RequestFacts>,
    line: &LineFacts,
    status: u16,
    outcome: Outcome,
    elapsed: Duration,
) {
    let stats = line
        .route
        .as_ref()
        .map(|r| &r.stats)
        .unwrap_or_else(|| layer.metrics.unmatched());
    stats.record(status, outcome.decision, elapsed);
    if outcome.decision == Decision::Deny {
        // The status page's recent refusals: fixed codes, no path or header.
        layer.metrics.refusals.record(crate::refusals::Refusal {
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            request_id: line
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(crate::refusals::clean_request_id),
            route: line.route.as_ref().map(|r| Arc::clone(&r.id)),
            status,
            stage: line.stage.unwrap_or("pipeline"),
            reason: outcome.reason,
        });
    }
    if let (Some(sink), Some(facts)) = (&layer.sink, facts) {
        sink.write_line(&access_line(facts, line, status, outcome, elapsed));
    }
}

impl<F> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Resp, Infallible>>,
{
    type Output = Result<Resp, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.fut.poll(cx));
        *this.done = true;
        let status = resp.status().as_u16();
        let outcome = resp.extensions().get::<Outcome>().copied();
        let line = LineFacts::of(&resp);
        match outcome {
            // A forwarded response is accounted for when its body ends, so that a body
            // cut short (upstream stall or reset, client gone) is logged as such.
            None if !http_body::Body::is_end_stream(resp.body()) => {
                let (parts, body) = resp.into_parts();
                let body = LoggedBody {
                    inner: body,
                    end: Some(BodyEnd {
                        layer: this.layer.clone(),
                        facts: this.facts.take(),
                        line,
                        status,
                        start: *this.start,
                    }),
                };
                Poll::Ready(Ok(Response::from_parts(parts, RespBody::new(body))))
            }
            _ => {
                let outcome = outcome.unwrap_or(Outcome {
                    decision: Decision::Allow,
                    reason: "forwarded",
                });
                finish(
                    this.layer,
                    this.facts.as_ref(),
                    &line,
                    status,
                    outcome,
                    this.start.elapsed(),
                );
                Poll::Ready(Ok(resp))
            }
        }
    }
}

/// What a forwarded response's line still needs when its body ends.
struct BodyEnd {
    layer: AccessLogLayer,
    facts: Option<RequestFacts>,
    line: LineFacts,
    status: u16,
    start: Instant,
}

impl BodyEnd {
    fn finish(self, reason: &'static str) {
        finish(
            &self.layer,
            self.facts.as_ref(),
            &self.line,
            self.status,
            Outcome {
                decision: Decision::Allow,
                reason,
            },
            self.start.elapsed(),
        );
    }
}

/// A forwarded response body that writes the access-log line when it ends: `forwarded`
/// when complete, the [`crate::StreamEnd`] reason when it fails, `client_abort` when it
/// is dropped unfinished (the client went away).
struct LoggedBody {
    inner: RespBody,
    end: Option<BodyEnd>,
}

impl http_body::Body for LoggedBody {
    type Data = bytes::Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, crate::BoxError>>> {
        let r = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let reason = match &r {
            None => Some("forwarded"),
            Some(Err(e)) => Some(crate::StreamEnd::reason_of(e.as_ref())),
            Some(Ok(_)) if self.inner.is_end_stream() => Some("forwarded"),
            Some(Ok(_)) => None,
        };
        if let Some(reason) = reason
            && let Some(end) = self.end.take()
        {
            end.finish(reason);
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            let reason = end
                .facts
                .as_ref()
                .map_or("client_abort", RequestFacts::abort_reason);
            end.finish(reason);
        }
    }
}

fn access_line(
    facts: &RequestFacts,
    line: &LineFacts,
    status: u16,
    outcome: Outcome,
    elapsed: Duration,
) -> String {
    let mut s = String::with_capacity(320);
    s.push_str("{\"ts\":\"");
    push_rfc3339(&mut s, SystemTime::now());
    s.push_str("\",\"kind\":\"access\",\"request_id\":");
    match line.request_id.as_ref().and_then(|v| v.to_str().ok()) {
        Some(id) => push_json_str(&mut s, id),
        None => s.push_str("null"),
    }
    s.push_str(",\"client_ip\":");
    match line.client_ip {
        Some(ip) => {
            s.push('"');
            push_ip(&mut s, ip);
            s.push('"');
        }
        None => s.push_str("null"),
    }
    s.push_str(",\"method\":");
    push_json_str(&mut s, facts.method.as_str());
    s.push_str(",\"path\":");
    let p = facts.uri.path();
    let p = match p.char_indices().nth(MAX_LOGGED_PATH) {
        Some((i, _)) => p.get(..i).unwrap_or(""),
        None => p,
    };
    push_json_str(&mut s, p);
    s.push_str(",\"http\":\"");
    s.push_str(version_str(facts.version));
    s.push_str("\",\"route\":");
    match &line.route {
        Some(r) => push_json_str(&mut s, &r.id),
        None => s.push_str("null"),
    }
    let mut num = itoa::Buffer::new();
    s.push_str(",\"status\":");
    s.push_str(num.format(status));
    s.push_str(",\"decision\":\"");
    s.push_str(outcome.decision.as_str());
    s.push_str("\",\"reason\":\"");
    s.push_str(outcome.reason);
    s.push_str("\",\"latency_us\":");
    s.push_str(num.format(elapsed.as_micros()));
    s.push_str("}\n");
    s
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// Appends an address as `Display` would, without the formatting machinery for the
/// common IPv4 case (this runs for every request).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut num = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(num.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `n` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut num = itoa::Buffer::new();
    let digits = num.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Appends `t` as RFC 3339 UTC with microseconds. The date and time of day are
/// formatted once per second per thread (this runs for every request).
pub fn push_rfc3339(out: &mut String, t: SystemTime) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let cached = SECOND.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return false;
        };
        if c.0 != secs {
            c.1.clear();
            push_date_time(&mut c.1, secs);
            c.0 = secs;
        }
        out.push_str(&c.1);
        true
    });
    if !cached {
        push_date_time(out, secs);
    }
    out.push('.');
    push_padded(out, u64::from(d.subsec_micros()), 6);
    out.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the epoch.
fn push_date_time(out: &mut String, secs: u64) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    push_padded(out, u64::try_from(year).unwrap_or(0), 4);
    out.push('-');
    push_padded(out, u64::try_from(month).unwrap_or(0), 2);
    out.push('-');
    push_padded(out, u64::try_from(day).unwrap_or(0), 2);
    out.push('T');
    push_padded(out, rem / 3600, 2);
    out.push(':');
    push_padded(out, (rem / 60) % 60, 2);
    out.push(':');
    push_padded(out, rem % 60, 2);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rampart_header_aliases() {
        for n in [
            "x-rampart-subject",
            "x_rampart_subject",
            "x.rampart.tenant",
            "x-rampart_scopes",
        ] {
            assert!(is_rampart_header(n.as_bytes()), "{n}");
        }
        for n in [
            "x-rampart",
            "x-ramparts-a",
            "rampart-subject",
            "x-forwarded-for",
        ] {
            assert!(!is_rampart_header(n.as_bytes()), "{n}");
        }
        assert!(canon_eq(b"x_forwarded_for", b"x-forwarded-for"));
        assert!(canon_eq(b"x.forwarded.for", b"x-forwarded-for"));
        assert!(!canon_eq(b"x-forwarded-fo", b"x-forwarded-for"));
    }

    #[test]
    fn host_parsing() {
        assert_eq!(host_of("API.example.com:443"), Some("API.example.com"));
        assert_eq!(host_of("example.com."), Some("example.com"));
        assert_eq!(host_of("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_of("[::1]"), Some("[::1]"));
        assert_eq!(host_of("127.0.0.1:80"), Some("127.0.0.1"));
        for bad in [
            "",
            "a b",
            "a:",
            "a:99999999",
            "[::1",
            "[zz]",
            "a..b",
            ".a",
            "a/b",
            "a@b",
        ] {
            assert_eq!(host_of(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn host_of_never_panics_and_returns_a_clean_host(s in "\\PC{0,300}") {
            if let Some(h) = host_of(&s) {
                proptest::prop_assert!(!h.is_empty());
                proptest::prop_assert!(!h.contains(':') || h.starts_with('['));
                proptest::prop_assert!(h.bytes().all(|b| b.is_ascii_graphic()));
            }
        }

        #[test]
        fn rampart_alias_detection_matches_canonical_form(s in "[a-zA-Z._-]{0,24}") {
            let canon = s.to_ascii_lowercase().replace(['_', '.'], "-");
            proptest::prop_assert_eq!(is_rampart_header(s.as_bytes()), canon.starts_with("x-rampart-"));
        }
    }

    #[test]
    fn preflights_route_by_the_asked_method_only_on_cors_routes() {
        let route = |id: &str, path: &str, cors: bool| rampart_config::RouteConfig {
            id: id.into(),
            path: path.into(),
            methods: vec![http::Method::POST],
            upstream: "app".into(),
            public: false,
            max_body_bytes: None,
            tier: None,
            scopes: vec![],
            any_scopes: vec![],
            allow_path_params: false,
            allow_fragment: false,
            allow_wildcard: false,
            cors: cors.then(|| rampart_config::CorsConfig {
                allowed_origins: vec!["https://a.example".into()],
                any_origin: false,
                allowed_methods: vec![],
                allowed_headers: vec![],
                expose_headers: vec![],
                allow_credentials: false,
                max_age_s: None,
            }),
            csrf: None,
            identity_assertion: false,
        };
        let router = Router::new(
            &[route("c", "/c", true), route("p", "/p", false)],
            &GatewayMetrics::default(),
        );
        let stage = RouteStage {
            router: Arc::new(router),
        };
        let req = |path: &str, origin: bool, asked: &[&'static str]| {
            let mut b = Request::builder().method("OPTIONS").uri(path);
            if origin {
                b = b.header("origin", "https://a.example");
            }
            for a in asked {
                b = b.header("access-control-request-method", *a);
            }
            b.body(()).unwrap()
        };
        // A preflight of the CORS route: matched by POST, marked.
        let mut r = req("/c", true, &["POST"]);
        let m = stage.on_request(&mut r).unwrap();
        assert_eq!(&*m.id, "c");
        assert_eq!(
            r.extensions().get::<crate::Preflight>().unwrap().method,
            http::Method::POST
        );
        // Not preflights (no Origin, no or two asked methods), or a route without CORS:
        // routed as OPTIONS, which these routes refuse.
        for (path, origin, asked) in [
            ("/c", false, &["POST"][..]),
            ("/c", true, &[][..]),
            ("/c", true, &["POST", "POST"][..]),
            ("/c", true, &["DELETE"][..]),
            ("/p", true, &["POST"][..]),
        ] {
            let mut r = req(path, origin, asked);
            assert!(
                matches!(stage.on_request(&mut r), Err(Reject::MethodNotAllowed(_))),
                "{path} {origin} {asked:?}"
            );
            assert!(r.extensions().get::<crate::Preflight>().is_none());
        }
    }

    #[test]
    fn host_allowlist() {
        let l = HostLayer::new(vec!["api.example.com".into(), "*.apps.example.com".into()]);
        let c = &l.stage;
        assert!(c.allowed("api.example.com"));
        assert!(c.allowed("API.EXAMPLE.COM"));
        assert!(c.allowed("x.apps.example.com"));
        assert!(!c.allowed("apps.example.com"));
        assert!(!c.allowed("a.b.apps.example.com"));
        assert!(!c.allowed("evil.com"));
        assert!(!c.allowed("api.example.com.evil.com"));
    }

    #[test]
    fn wildcard_segments() {
        for v in ["*", "a*", "%2A", "x%2ay"] {
            assert!(has_wildcard(v), "{v}");
        }
        for v in ["acme", "%2B", "%2", "2a"] {
            assert!(!has_wildcard(v), "{v}");
        }
    }

    #[test]
    fn rfc3339() {
        let mut s = String::new();
        push_rfc3339(&mut s, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(s, "2023-11-14T22:13:20.000000Z");
        s.clear();
        push_rfc3339(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!(s, "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn hop_by_hop_keeps_protected() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret, host, x-forwarded-for"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("a"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut h, &PROTECTED);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("host").is_some());
        assert!(h.get("x-forwarded-for").is_some());
    }

    #[test]
    fn minted_ids_are_hex_and_distinct() {
        let a = mint_request_id();
        let b = mint_request_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(valid_request_id(&a));
        assert!(!valid_request_id(&HeaderValue::from_static("a b")));
    }
}
