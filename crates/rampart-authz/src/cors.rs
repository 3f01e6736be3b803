//! The CORS stage: answers preflights of routes with `cors = { … }` itself and marks the
//! other responses of those routes for browsers.
//!
//! Guards against: a site the operator never listed reading responses with the user's
//! credentials (origins are matched exactly against the allowlist, never reflected; the
//! `null` origin is refused at load time and never matches, even with `*`); an upstream
//! widening the policy (its own `Access-Control-*` response headers are dropped on CORS
//! routes, the gateway's replace them); preflights reaching the upstream (they are
//! answered here, before authentication, since browsers send no credentials on them);
//! caches serving one origin's answer to another (`Vary: Origin` on every response of a
//! CORS route, errors included). Trusts: the route match (the route stage matched a
//! preflight by the method it asks about and marked it with [`Preflight`]).
//!
//! A refused preflight gets `403` problem+json without any `Access-Control-*` header. The
//! Fetch standard fails a preflight whose status is not 2xx or whose
//! `Access-Control-Allow-Origin` does not match, so for the browser either is a plain
//! network error; the 403 tells an operator looking at a log or `curl` what happened
//! (reason `cors_origin`, `cors_method` or `cors_headers`). Actual (non-preflight)
//! requests from unlisted origins are not refused: they are served without CORS headers,
//! so the browser withholds the response from the page. Refusing state-changing
//! cross-site requests is the CSRF stage's job.
//!
//! ```
//! # use std::sync::Arc;
//! # use rampart_http::{Preflight, RouteMatch, Router, GatewayMetrics, Reject, Resp};
//! # use rampart_config::{CorsConfig, RouteConfig};
//! # use tower_service::Service;
//! # use tower_layer::Layer;
//! # let cors = CorsConfig { allowed_origins: vec!["https://app.example.com".into()],
//! #     any_origin: false, allowed_methods: vec![http::Method::POST], allowed_headers: vec![],
//! #     expose_headers: vec![], allow_credentials: true, max_age_s: Some(600) };
//! # let route = RouteConfig { id: "r".into(), path: "/r".into(), methods: vec![http::Method::POST],
//! #     upstream: "app".into(), public: false, max_body_bytes: None, tier: None, scopes: vec![],
//! #     any_scopes: vec![], allow_path_params: false, allow_fragment: false,
//! #     allow_wildcard: false, cors: Some(cors), csrf: None, identity_assertion: false };
//! # let router = Router::new(&[route], &GatewayMetrics::default());
//! # let rampart_http::RouteOutcome::Matched(route, params) = router.route("/r", &http::Method::POST) else { panic!() };
//! let inner = tower_service_fn(|_req| Reject::Internal.into_response(None)); // never reached
//! let mut svc = rampart_authz::CorsLayer::new().layer(inner);
//! let mut req = http::Request::options("/r")
//!     .header("origin", "https://evil.example")
//!     .header("access-control-request-method", "POST")
//!     .body(())
//!     .unwrap();
//! req.extensions_mut().insert(RouteMatch { route, params });
//! req.extensions_mut().insert(Preflight { method: http::Method::POST });
//! let resp = futures_lite_block_on(svc.call(req)).unwrap();
//! assert_eq!(resp.status(), 403);
//! assert!(resp.headers().get("access-control-allow-origin").is_none());
//! # fn tower_service_fn(f: fn(http::Request<()>) -> Resp) -> impl Service<http::Request<()>, Response = Resp, Error = std::convert::Infallible, Future = std::future::Ready<Result<Resp, std::convert::Infallible>>> + Clone {
//! #     #[derive(Clone)] struct F(fn(http::Request<()>) -> Resp);
//! #     impl Service<http::Request<()>> for F { type Response = Resp; type Error = std::convert::Infallible; type Future = std::future::Ready<Result<Resp, std::convert::Infallible>>;
//! #       fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), std::convert::Infallible>> { std::task::Poll::Ready(Ok(())) }
//! #       fn call(&mut self, r: http::Request<()>) -> Self::Future { std::future::ready(Ok((self.0)(r))) } }
//! #     F(f) }
//! # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let waker = std::task::Waker::noop(); let mut cx = std::task::Context::from_waker(&waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } } }
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use rampart_config::CorsConfig;
use rampart_http::{
    Decision, Outcome, Preflight, Reject, RequestId, Resp, RouteMatch, Stage, StageFuture, empty,
};
use tower_layer::Layer;
use tower_service::Service;

/// Why a preflight was refused (logs, metrics, audit; never the client's response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsDenial {
    /// No `Origin`, several, or one not in `allowed_origins`.
    Origin,
    /// The method asked for is not in `allowed_methods`.
    Method,
    /// A header asked for is not in `allowed_headers`.
    Headers,
}

impl CorsDenial {
    pub fn code(self) -> &'static str {
        match self {
            Self::Origin => "cors_origin",
            Self::Method => "cors_method",
            Self::Headers => "cors_headers",
        }
    }
}

/// What a preflight is answered with when it is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightGrant {
    /// `Access-Control-Allow-Origin`: the request's origin, or `*`.
    pub allow_origin: HeaderValue,
    pub allow_methods: String,
    /// Empty: no `Access-Control-Allow-Headers`.
    pub allow_headers: String,
}

/// The request's one `Origin` value, if it names an allowed origin. Exact byte
/// comparison: browsers serialize origins, and the configuration only holds origins in
/// that serialization. `null` never matches, not even `*`.
pub fn allowed_origin(cors: &CorsConfig, headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(header::ORIGIN).iter();
    let origin = all.next()?;
    if all.next().is_some() || origin.as_bytes() == b"null" {
        return None;
    }
    if cors.any_origin {
        return Some(HeaderValue::from_static("*"));
    }
    cors.allowed_origins
        .iter()
        .any(|o| o.as_bytes() == origin.as_bytes())
        .then(|| origin.clone())
}

/// Decides a preflight asking for `method` on a route with `cors`. Pure.
pub fn decide_preflight(
    cors: &CorsConfig,
    method: &http::Method,
    headers: &HeaderMap,
) -> Result<PreflightGrant, CorsDenial> {
    let allow_origin = allowed_origin(cors, headers).ok_or(CorsDenial::Origin)?;
    if !cors.allowed_methods.is_empty() && !cors.allowed_methods.contains(method) {
        return Err(CorsDenial::Method);
    }
    for v in headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        let s = v.to_str().map_err(|_| CorsDenial::Headers)?;
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !cors
                .allowed_headers
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name))
            {
                return Err(CorsDenial::Headers);
            }
        }
    }
    let allow_methods = if cors.allowed_methods.is_empty() {
        method.as_str().to_owned()
    } else {
        join(cors.allowed_methods.iter().map(http::Method::as_str))
    };
    Ok(PreflightGrant {
        allow_origin,
        allow_methods,
        allow_headers: join(cors.allowed_headers.iter().map(String::as_str)),
    })
}

fn join<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, s) in it.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(s);
    }
    out
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// `Vary` of every response on a CORS route; a preflight answer varies on what it was
/// asked too.
fn vary(h: &mut HeaderMap, preflight: bool) {
    let v = if preflight {
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    } else {
        "Origin"
    };
    h.append(header::VARY, HeaderValue::from_static(v));
}

/// The gateway owns CORS on a CORS route: whatever the upstream said is dropped.
fn drop_access_control(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

static TRUE: HeaderValue = HeaderValue::from_static("true");

fn answer_preflight(
    cors: &CorsConfig,
    method: &http::Method,
    headers: &HeaderMap,
    id: Option<&RequestId>,
) -> Resp {
    let grant = match decide_preflight(cors, method, headers) {
        Ok(g) => g,
        Err(d) => {
            let mut resp = Reject::Forbidden(d.code()).into_response(id);
            vary(resp.headers_mut(), true);
            return resp;
        }
    };
    let mut resp = Resp::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, grant.allow_origin);
    if cors.allow_credentials {
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
    }
    if let Some(v) = value(&grant.allow_methods) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if !grant.allow_headers.is_empty()
        && let Some(v) = value(&grant.allow_headers)
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = cors.max_age_s {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    vary(h, true);
    if let Some(id) = id {
        h.insert(rampart_http::X_REQUEST_ID, id.header_value());
    }
    resp.extensions_mut().insert(Outcome {
        decision: Decision::Allow,
        reason: "cors_preflight",
    });
    resp
}

/// The CORS stage; per-route settings come from the route match.
#[derive(Debug, Clone, Default)]
pub struct CorsLayer {
    stage: Arc<CorsStage>,
}

impl CorsLayer {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;
    fn layer(&self, inner: S) -> Cors<S> {
        Cors {
            inner,
            stage: Arc::clone(&self.stage),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cors<S> {
    inner: S,
    stage: Arc<CorsStage>,
}

/// Sets the CORS headers of actual requests' responses.
#[derive(Debug, Default)]
pub struct CorsStage;

/// What an actual request's response gets.
#[derive(Debug)]
pub struct CorsHeaders {
    allow_origin: Option<HeaderValue>,
    credentials: bool,
    expose: Option<HeaderValue>,
}

impl Stage for CorsStage {
    type State = CorsHeaders;
    fn on_request<B>(&self, _req: &mut Request<B>) -> Result<CorsHeaders, Reject> {
        // Not used: the service decides (a preflight is answered with a 204, which a
        // stage's `on_request` cannot produce).
        Err(Reject::Internal)
    }
    fn on_response(&self, s: CorsHeaders, resp: &mut Resp) {
        let h = resp.headers_mut();
        drop_access_control(h);
        vary(h, false);
        if let Some(o) = s.allow_origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            if s.credentials {
                h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
            }
            if let Some(e) = s.expose {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e);
            }
        }
    }
}

impl<S, B> Service<Request<B>> for Cors<S>
where
    S: Service<Request<B>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = StageFuture<CorsStage, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(m) = req.extensions().get::<RouteMatch>() else {
            return StageFuture::reject(Reject::Internal, req.extensions().get::<RequestId>());
        };
        let Some(cors) = m.route.config.cors.as_ref() else {
            return StageFuture::pass(self.inner.call(req));
        };
        if let Some(p) = req.extensions().get::<Preflight>() {
            let resp = answer_preflight(
                cors,
                &p.method,
                req.headers(),
                req.extensions().get::<RequestId>(),
            );
            return StageFuture::Now { resp: Some(resp) };
        }
        let state = CorsHeaders {
            allow_origin: allowed_origin(cors, req.headers()),
            credentials: cors.allow_credentials,
            expose: (!cors.expose_headers.is_empty())
                .then(|| value(&join(cors.expose_headers.iter().map(String::as_str))))
                .flatten(),
        };
        StageFuture::Inner {
            fut: self.inner.call(req),
            after: Some((Arc::clone(&self.stage), state)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn cfg(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            any_origin: origins.is_empty(),
            allowed_methods: vec![http::Method::POST, http::Method::DELETE],
            allowed_headers: vec!["x-csrf-token".into(), "content-type".into()],
            expose_headers: vec![],
            allow_credentials: !origins.is_empty(),
            max_age_s: Some(600),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn origins_match_exactly_and_null_never() {
        let c = cfg(&["https://app.example.com"]);
        let ok = |o: &str| allowed_origin(&c, &headers(&[("origin", o)])).is_some();
        assert!(ok("https://app.example.com"));
        for bad in [
            "https://app.example.com.evil.example",
            "https://evil.example",
            "http://app.example.com",
            "https://APP.example.com",
            "https://app.example.com/",
            "null",
            "",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        // Two Origin values are not a browser's: refused.
        let two = headers(&[
            ("origin", "https://app.example.com"),
            ("origin", "https://app.example.com"),
        ]);
        assert!(allowed_origin(&c, &two).is_none());
        assert!(allowed_origin(&c, &HeaderMap::new()).is_none());
        // `*` answers a literal `*` and still refuses `null`.
        let any = cfg(&[]);
        let o = allowed_origin(&any, &headers(&[("origin", "https://x.example")])).unwrap();
        assert_eq!(o, "*");
        assert!(allowed_origin(&any, &headers(&[("origin", "null")])).is_none());
    }

    #[test]
    fn preflight_methods_and_headers() {
        let c = cfg(&["https://app.example.com"]);
        let h = headers(&[
            ("origin", "https://app.example.com"),
            (
                "access-control-request-headers",
                "X-CSRF-Token, content-type",
            ),
        ]);
        let g = decide_preflight(&c, &http::Method::POST, &h).unwrap();
        assert_eq!(g.allow_origin, "https://app.example.com");
        assert_eq!(g.allow_methods, "POST, DELETE");
        assert_eq!(g.allow_headers, "x-csrf-token, content-type");
        assert_eq!(
            decide_preflight(&c, &http::Method::PUT, &h),
            Err(CorsDenial::Method)
        );
        let h = headers(&[
            ("origin", "https://app.example.com"),
            (
                "access-control-request-headers",
                "x-csrf-token,authorization",
            ),
        ]);
        assert_eq!(
            decide_preflight(&c, &http::Method::POST, &h),
            Err(CorsDenial::Headers)
        );
        let h = headers(&[("origin", "null")]);
        assert_eq!(
            decide_preflight(&c, &http::Method::POST, &h),
            Err(CorsDenial::Origin)
        );
    }

    #[test]
    fn refusal_has_no_cors_headers_and_grant_has_all() {
        let c = cfg(&["https://app.example.com"]);
        let r = answer_preflight(
            &c,
            &http::Method::POST,
            &headers(&[("origin", "https://evil.example")]),
            None,
        );
        assert_eq!(r.status(), 403);
        assert!(
            !r.headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-"))
        );
        assert!(r.headers()["vary"].to_str().unwrap().contains("Origin"));
        let r = answer_preflight(
            &c,
            &http::Method::POST,
            &headers(&[("origin", "https://app.example.com")]),
            None,
        );
        assert_eq!(r.status(), 204);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(h["access-control-allow-methods"], "POST, DELETE");
    }

    #[test]
    fn upstream_access_control_headers_are_replaced() {
        let mut resp = Resp::new(empty());
        resp.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        CorsStage.on_response(
            CorsHeaders {
                allow_origin: None,
                credentials: true,
                expose: None,
            },
            &mut resp,
        );
        assert!(resp.headers().get("access-control-allow-origin").is_none());
        let vary: Vec<_> = resp.headers().get_all("vary").iter().collect();
        assert_eq!(vary, ["Accept", "Origin"]);
    }
}
