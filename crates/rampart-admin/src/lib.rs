//! The admin listener (DESIGN.md §5): `/live`, `/healthz`, `/metrics`, `/version`,
//! `/.well-known/jwks.json` (public signing keys) when the binary opened a keyring, and
//! the operator status page `/` with its JSON twin `/admin/status.json` (see [`status`];
//! the `/admin/*` access rule, or loopback peers only without admin authentication).
//!
//! Guards against: a load balancer keeping a draining or degraded gateway in rotation
//! (`/healthz` turns 503 on any `warn` reason), operators guessing which build runs
//! (`/version`, `rampart_build_info`). Trusts: the admin address is reachable only by
//! operators (it defaults to loopback; the `/admin/*` API of later issues adds auth).

mod process;
pub mod status;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rampart_http::GatewayMetrics;
use rampart_http::metrics::{gauge, header as metric_header, label};
use rampart_http::problem::push_json_str;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use rampart_http::health::{HealthProbe, MetricsSource, Reason, Severity};
pub use status::{Status, StatusSource};

/// What `/healthz` reports: reasons derived from the configuration (replaced on every
/// reload), the draining flag, and live probes.
#[derive(Default)]
pub struct Health {
    draining: AtomicBool,
    reasons: RwLock<Vec<Reason>>,
    probes: RwLock<Vec<Arc<dyn HealthProbe>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
    pub fn set_reasons(&self, reasons: Vec<Reason>) {
        if let Ok(mut r) = self.reasons.write() {
            *r = reasons;
        }
    }
    /// Current reasons, draining first.
    pub fn reasons(&self) -> Vec<Reason> {
        let mut out = Vec::new();
        if self.draining.load(Ordering::Acquire) {
            out.push(Reason {
                code: "draining".into(),
                severity: Severity::Warn,
                message: "shutting down: finishing in-flight requests, refusing new connections"
                    .into(),
            });
        }
        if let Ok(r) = self.reasons.read() {
            out.extend(r.iter().cloned());
        }
        if let Ok(p) = self.probes.read() {
            for probe in p.iter() {
                probe.reasons(&mut out);
            }
        }
        out
    }
    /// Adds a run-time source of reasons (kept across reloads).
    pub fn add_probe(&self, probe: Arc<dyn HealthProbe>) {
        if let Ok(mut p) = self.probes.write() {
            p.push(probe);
        }
    }
}

/// Baked in at build time by the binary's build script.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub branch: &'static str,
    pub build_time: &'static str,
}

/// Everything the admin endpoints read.
pub struct AdminState {
    pub metrics: Arc<GatewayMetrics>,
    pub health: Arc<Health>,
    pub build: BuildInfo,
    /// Metric families of later stages (authentication, audit, …).
    pub sources: Vec<Arc<dyn MetricsSource>>,
    /// The `/admin/*` API, when the binary provides one.
    pub api: Option<Arc<dyn AdminApi>>,
    /// `GET /.well-known/jwks.json`: the public keys of the signing keyring (RFC 7517),
    /// when one is open. Public keys only, so no authentication.
    pub jwks: Option<String>,
    /// Sections of the status page (`/`, `/admin/status.json`) beyond the admin state's
    /// own (build, health, routes, refusals, connections).
    pub status: Vec<Arc<dyn StatusSource>>,
}

/// A response of the admin listener.
pub type AdminResponse = Response<Full<Bytes>>;

/// The `/admin/*` API (revocations, credentials): authenticated and authorized by its
/// implementation, which receives the whole (bounded) body and the peer address.
pub trait AdminApi: Send + Sync + 'static {
    fn call(
        &self,
        req: Request<Bytes>,
        peer: std::net::SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = AdminResponse> + Send>>;

    /// Whether the caller may read the status page: the same rule as `/admin/*`, signed
    /// requests (RFC 9421) included, so it gets the request as received with its whole
    /// (bounded) body. The default refuses (fail closed).
    fn authorize<'a>(
        &'a self,
        _req: &'a mut Request<Bytes>,
        _peer: std::net::SocketAddr,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), Box<AdminResponse>>> + Send + 'a>,
    > {
        Box::pin(std::future::ready(Err(Box::new(admin_problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The admin scope is required.",
        )))))
    }
}

/// Who may read the status page without an admin API (no admin authentication
/// configured): loopback peers only. With an admin API, [`answer`] asks it instead.
fn loopback_access(peer: std::net::SocketAddr) -> Result<(), Box<AdminResponse>> {
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        Ok(())
    } else {
        Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Without admin authentication the status page is served to loopback peers only.",
        )))
    }
}

/// Answers one admin request on a gateway without an admin API (the status page goes to
/// loopback peers only). With an admin API, [`answer`] decides instead: this refuses the
/// status page then (fail closed), since the API's check needs the whole request.
pub fn handle_from<B>(
    state: &AdminState,
    req: &Request<B>,
    peer: std::net::SocketAddr,
) -> AdminResp {
    let path = req.uri().path();
    if req.method() == Method::GET || req.method() == Method::HEAD {
        if status::needs_access(path) {
            let access = match state.api {
                None => loopback_access(peer),
                Some(_) => Err(Box::new(problem(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "The admin scope is required.",
                ))),
            };
            if let Err(r) = access {
                return *r;
            }
        }
        if let Some(r) = status::status_response(state, path) {
            return r;
        }
    }
    handle(state, req)
}

/// Where an admin request goes when there is an admin API.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `GET`/`HEAD` of `/` or `/admin/status.json`: the API's caller check, then the page.
    StatusPage,
    /// The rest of `/admin/*`: the API itself.
    Api,
    /// Everything else ([`handle`]).
    Plain,
}

fn route<B>(req: &Request<B>) -> Route {
    let p = req.uri().path();
    let read = req.method() == Method::GET || req.method() == Method::HEAD;
    if status::needs_access(p) {
        if read {
            Route::StatusPage
        } else {
            Route::Plain
        }
    } else if p.starts_with("/admin/") {
        Route::Api
    } else {
        Route::Plain
    }
}

/// Answers one admin request whose body was read: the status page after the admin API's
/// caller check (the same as every `/admin/*` endpoint, signed requests included), the
/// API's own endpoints, the rest as [`handle`].
pub async fn answer(
    state: &AdminState,
    mut req: Request<Bytes>,
    peer: std::net::SocketAddr,
) -> AdminResponse {
    let Some(api) = &state.api else {
        return handle_from(state, &req, peer);
    };
    match route(&req) {
        Route::StatusPage => {
            if let Err(r) = api.authorize(&mut req, peer).await {
                return *r;
            }
            status::status_response(state, req.uri().path()).unwrap_or_else(|| handle(state, &req))
        }
        Route::Api => api.call(req, peer).await,
        Route::Plain => handle(state, &req),
    }
}

/// Largest request body the admin API reads.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// How long the admin listener waits for a request body it must read whole.
const ADMIN_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A problem+json response of the admin listener (RFC 9457).
pub fn admin_problem(status: StatusCode, code: &str, detail: &str) -> AdminResponse {
    problem(status, code, detail)
}

/// A JSON response of the admin listener.
pub fn admin_json(status: StatusCode, body: String) -> AdminResponse {
    respond(status, "application/json", body)
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

type AdminResp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: String) -> AdminResp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn problem(status: StatusCode, code: &str, detail: &str) -> AdminResp {
    let mut b = String::new();
    b.push_str("{\"type\":\"https://rampart.dev/problems/");
    b.push_str(code);
    b.push_str("\",\"title\":");
    push_json_str(&mut b, status.canonical_reason().unwrap_or(""));
    let _ = write!(b, ",\"status\":{},\"detail\":", status.as_u16());
    push_json_str(&mut b, detail);
    b.push_str(",\"code\":");
    push_json_str(&mut b, code);
    b.push_str(",\"request_id\":null}");
    respond(status, "application/problem+json", b)
}

/// Answers one admin request.
pub fn handle<B>(state: &AdminState, req: &Request<B>) -> AdminResp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Admin endpoints accept GET and HEAD.",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/live" => respond(
            StatusCode::OK,
            "application/json",
            "{\"status\":\"alive\"}".into(),
        ),
        "/healthz" => healthz(state),
        "/.well-known/jwks.json" => match &state.jwks {
            Some(doc) => respond(StatusCode::OK, "application/jwk-set+json", doc.clone()),
            None => problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "No signing key is configured.",
            ),
        },
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_text(state),
        ),
        "/version" => {
            let b = &state.build;
            let mut s = String::from("{\"version\":");
            push_json_str(&mut s, b.version);
            s.push_str(",\"commit\":");
            push_json_str(&mut s, b.commit);
            s.push_str(",\"branch\":");
            push_json_str(&mut s, b.branch);
            s.push_str(",\"build_time\":");
            push_json_str(&mut s, b.build_time);
            s.push('}');
            respond(StatusCode::OK, "application/json", s)
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such admin endpoint.",
        ),
    }
}

fn healthz(state: &AdminState) -> AdminResp {
    let reasons = state.health.reasons();
    let warn = reasons.iter().any(|r| r.severity == Severity::Warn);
    let mut s = String::from("{\"status\":");
    s.push_str(if warn { "\"degraded\"" } else { "\"ok\"" });
    s.push_str(",\"reasons\":[");
    for (i, r) in reasons.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"reason\":");
        push_json_str(&mut s, &r.code);
        s.push_str(",\"severity\":");
        push_json_str(&mut s, r.severity.as_str());
        s.push_str(",\"message\":");
        push_json_str(&mut s, &r.message);
        s.push('}');
    }
    s.push_str("]}");
    let status = if warn {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    respond(status, "application/json", s)
}

/// The Prometheus text exposition of the gateway and admin metrics.
pub fn metrics_text(state: &AdminState) -> String {
    let mut out = String::with_capacity(8192);
    state.metrics.encode(&mut out);
    for s in &state.sources {
        s.encode(&mut out);
    }
    process::encode(&mut out);
    let reasons = state.health.reasons();
    let healthy = !reasons.iter().any(|r| r.severity == Severity::Warn);
    gauge(
        &mut out,
        "health_overall",
        "1 when /healthz reports no warn reason, else 0.",
        i64::from(healthy),
    );
    metric_header(
        &mut out,
        "health_reason",
        "gauge",
        "Current /healthz reasons (value 1), by reason code and severity.",
    );
    for r in &reasons {
        out.push_str("health_reason{reason=");
        label(&mut out, &r.code);
        out.push_str(",severity=");
        label(&mut out, r.severity.as_str());
        out.push_str("} 1\n");
    }
    metric_header(
        &mut out,
        "rampart_build_info",
        "gauge",
        "Build of the running binary (value 1).",
    );
    let b = &state.build;
    out.push_str("rampart_build_info{version=");
    label(&mut out, b.version);
    out.push_str(",commit=");
    label(&mut out, b.commit);
    out.push_str(",branch=");
    label(&mut out, b.branch);
    out.push_str("} 1\n");
    out
}

/// Serves the admin endpoints (HTTP/1.1) until `shutdown` turns true. The admin listener
/// keeps answering during a drain so that `/healthz` can report it.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = Arc::clone(&state);
                async move {
                    if state.api.is_none() || route(&req) == Route::Plain {
                        return Ok::<_, Infallible>(handle_from(&state, &req, peer));
                    }
                    let (parts, body) = req.into_parts();
                    let read = http_body_util::Limited::new(body, MAX_ADMIN_BODY).collect();
                    let body = match tokio::time::timeout(ADMIN_BODY_TIMEOUT, read).await {
                        Ok(Ok(b)) => b.to_bytes(),
                        Ok(Err(_)) => {
                            return Ok(problem(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "payload_too_large",
                                "The request body is too large or could not be read.",
                            ));
                        }
                        Err(_) => {
                            return Ok(problem(
                                StatusCode::REQUEST_TIMEOUT,
                                "request_timeout",
                                "The request body did not arrive in time.",
                            ));
                        }
                    };
                    Ok(answer(&state, Request::from_parts(parts, body), peer).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection error");
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn state() -> AdminState {
        AdminState {
            metrics: GatewayMetrics::new(),
            health: Health::new(),
            build: BuildInfo {
                version: "0.1.0",
                commit: "abc",
                branch: "main",
                build_time: "2026-01-01T00:00:00Z",
            },
            sources: Vec::new(),
            api: None,
            jwks: None,
            status: Vec::new(),
        }
    }

    fn get(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    #[test]
    fn healthz_turns_503_on_warn() {
        let s = state();
        assert_eq!(handle(&s, &get("/healthz")).status(), 200);
        s.health.set_reasons(vec![Reason {
            code: "profile_dev".into(),
            severity: Severity::Info,
            message: "dev".into(),
        }]);
        assert_eq!(handle(&s, &get("/healthz")).status(), 200);
        s.health.set_draining();
        assert_eq!(handle(&s, &get("/healthz")).status(), 503);
        let m = metrics_text(&s);
        assert!(m.contains("health_overall 0"));
        assert!(m.contains("health_reason{reason=\"draining\",severity=\"warn\"} 1"));
        assert!(
            m.contains("rampart_build_info{version=\"0.1.0\",commit=\"abc\",branch=\"main\"} 1")
        );
    }

    #[test]
    fn unknown_and_methods() {
        let s = state();
        assert_eq!(handle(&s, &get("/nope")).status(), 404);
        let post = Request::builder()
            .method("POST")
            .uri("/live")
            .body(())
            .unwrap();
        assert_eq!(handle(&s, &post).status(), 405);
        assert_eq!(handle(&s, &get("/live")).status(), 200);
        assert_eq!(handle(&s, &get("/version")).status(), 200);
    }

    #[test]
    fn jwks_only_when_a_key_is_open() {
        let mut s = state();
        assert_eq!(handle(&s, &get("/.well-known/jwks.json")).status(), 404);
        s.jwks = Some("{\"keys\":[]}".into());
        let r = handle(&s, &get("/.well-known/jwks.json"));
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/jwk-set+json");
    }
}
