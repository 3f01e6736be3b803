//! The audit stage: one record per request, whatever the outcome, in the file before
//! the response head leaves.
//!
//! It sits just inside the access log, outside every other stage, so it sees refusals
//! of every stage as well as forwarded responses. It reads what the inner stages put on
//! the response (`MatchedRoute`, `ClientIp`, `Outcome`, `Identity`, `x-request-id`) and
//! takes only the method and the path (query parameters masked by
//! [`redact_query`]) from the request: never a header value, a body or a credential.
//!
//! When the record cannot be made durable (disk full, I/O error, queue full past the
//! deadline): `on_failure = "deny"` answers 503 `audit_unavailable` instead of the
//! response; `"allow"` serves it, counts it in `rampart_audit_unaudited_total` and the
//! writer's failure shows as a `warn` reason in `/healthz`.
//!
//! ```
//! # use rampart_audit::AuditLayer;
//! # use tower_layer::Layer;
//! // Disabled (no `[audit]`): a pass-through that costs nothing.
//! let layer = AuditLayer::disabled();
//! # let _ = layer.layer(());
//! ```

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Request;
use rampart_config::raw::{AuditSection, OnFailure};
use rampart_http::{
    ClientIp, Decision, GatewayMetrics, Identity, MatchedRoute, Outcome, Reject, RequestId, Resp,
    X_REQUEST_ID,
};
use tower_layer::Layer;
use tower_service::Service;
use zeroize::Zeroizing;

use crate::record::{Entry, hex};
use crate::writer::AuditHandle;

/// Query parameters always masked, whatever `redact_query_params` says: names that
/// carry credentials by convention.
pub const ALWAYS_REDACTED: &[&str] = &[
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "code",
    "signature",
    "sig",
    "x-amz-signature",
    "jwt",
    "session",
    "sessionid",
    "auth",
    "authorization",
];

/// What the stage needs from `[audit]`.
#[derive(Clone)]
pub struct LayerSettings {
    pub on_failure: OnFailure,
    /// Lower-cased parameter names masked in addition to [`ALWAYS_REDACTED`].
    pub redact_query_params: Vec<String>,
    /// HMAC key for keyed pseudonymization of `subject` and `client_ip` (none: kept).
    pub pseudonymize_key: Option<Arc<Zeroizing<Vec<u8>>>>,
    /// How long a request waits for its record (queue and write) before it counts as
    /// a failure.
    pub timeout: Duration,
}

impl LayerSettings {
    pub fn from_config(a: &AuditSection) -> Self {
        Self {
            on_failure: a.on_failure.unwrap_or(OnFailure::Deny),
            redact_query_params: a
                .redact_query_params
                .clone()
                .unwrap_or_else(|| vec!["token".into(), "code".into(), "password".into()])
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            pseudonymize_key: a
                .pseudonymize_key
                .as_ref()
                .map(|k| Arc::new(Zeroizing::new(k.expose().to_vec()))),
            timeout: Duration::from_millis(a.write_timeout_ms.unwrap_or(2000)),
        }
    }
}

struct Shared {
    handle: AuditHandle,
    settings: LayerSettings,
    metrics: Arc<GatewayMetrics>,
    failures_logged: AtomicU64,
}

/// Adds the audit stage; [`AuditLayer::disabled`] when `[audit]` is absent.
#[derive(Clone)]
pub struct AuditLayer {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("enabled", &self.shared.is_some())
            .finish()
    }
}

impl AuditLayer {
    pub fn new(handle: AuditHandle, settings: LayerSettings, metrics: Arc<GatewayMetrics>) -> Self {
        Self {
            shared: Some(Arc::new(Shared {
                handle,
                settings,
                metrics,
                failures_logged: AtomicU64::new(0),
            })),
        }
    }

    pub fn disabled() -> Self {
        Self { shared: None }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;
    fn layer(&self, inner: S) -> Audit<S> {
        Audit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The audit service.
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

pin_project_lite::pin_project! {
    /// Pass-through when auditing is off, else the boxed record-then-respond future.
    #[project = AuditFutureProj]
    pub enum AuditFuture<F> {
        Pass { #[pin] fut: F },
        Audited { fut: BoxFut },
    }
}

impl<F> Future for AuditFuture<F>
where
    F: Future<Output = Result<Resp, Infallible>>,
{
    type Output = Result<Resp, Infallible>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuditFutureProj::Pass { fut } => fut.poll(cx),
            AuditFutureProj::Audited { fut } => fut.as_mut().poll(cx),
        }
    }
}

impl<S, B> Service<Request<B>> for Audit<S>
where
    S: Service<Request<B>, Response = Resp, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = AuditFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(shared) = &self.shared else {
            return AuditFuture::Pass {
                fut: self.inner.call(req),
            };
        };
        let shared = Arc::clone(shared);
        let start = Instant::now();
        let method = method_name(req.method());
        let path = redact_query(
            req.uri().path(),
            req.uri().query(),
            &shared.settings.redact_query_params,
        );
        let fut = self.inner.call(req);
        AuditFuture::Audited {
            fut: Box::pin(async move {
                let Ok(resp) = fut.await;
                let entry = entry_of(&resp, method, path, start, &shared.settings);
                Ok(record(&shared, entry, resp).await)
            }),
        }
    }
}

async fn record(shared: &Shared, entry: Entry, resp: Resp) -> Resp {
    let err = match shared.handle.append(entry, shared.settings.timeout).await {
        Ok(_) => return resp,
        Err(e) => e,
    };
    let n = shared.failures_logged.fetch_add(1, Ordering::Relaxed);
    let audit = &shared.metrics.audit;
    if !matches!(err, crate::writer::AppendError::Io(_)) {
        // Write errors are counted by the writer; these never reached it.
        audit.failed.fetch_add(1, Ordering::Relaxed);
    }
    let deny = shared.settings.on_failure == OnFailure::Deny;
    if n.is_multiple_of(1024) {
        tracing::warn!(error = %err, failures = n + 1, deny, "audit record not written");
    }
    if !deny {
        audit.unaudited.fetch_add(1, Ordering::Relaxed);
        return resp;
    }
    audit.denied.fetch_add(1, Ordering::Relaxed);
    let id = resp
        .headers()
        .get(X_REQUEST_ID)
        .cloned()
        .map(RequestId::new);
    let mut out = Reject::AuditUnavailable.into_response(id.as_ref());
    // The security headers of the replaced response (this stage sits outside them).
    for name in SECURITY_HEADERS {
        if let Some(v) = resp.headers().get(*name) {
            out.headers_mut().insert(*name, v.clone());
        }
    }
    if let Some(r) = resp.extensions().get::<MatchedRoute>() {
        out.extensions_mut().insert(r.clone());
    }
    out
}

const SECURITY_HEADERS: &[&str] = &[
    "content-security-policy",
    "strict-transport-security",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
];

/// The method's name, without an allocation for the standard ones.
fn method_name(m: &http::Method) -> Cow<'static, str> {
    use http::Method;
    Cow::Borrowed(match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return Cow::Owned(m.as_str().to_owned()),
    })
}

fn entry_of(
    resp: &Resp,
    method: Cow<'static, str>,
    path: String,
    start: Instant,
    s: &LayerSettings,
) -> Entry {
    let outcome = resp
        .extensions()
        .get::<Outcome>()
        .copied()
        .unwrap_or(Outcome {
            decision: Decision::Allow,
            reason: "forwarded",
        });
    let identity = resp
        .extensions()
        .get::<std::sync::Arc<Identity>>()
        .map(|a| &**a);
    let pseudo = |kind: &str, v: String| match &s.pseudonymize_key {
        Some(k) => pseudonymize(k, kind, &v),
        None => v,
    };
    Entry {
        request_id: resp
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        subject: identity
            .and_then(|i| i.subject.clone())
            .map(|v| pseudo("subject", v)),
        tenant: identity.and_then(|i| i.tenant.clone()),
        auth: Cow::Borrowed(identity.map_or("none", |i| i.method)),
        client_ip: resp
            .extensions()
            .get::<ClientIp>()
            .map(|ip| pseudo("client_ip", ip_string(ip.0))),
        method,
        route: resp
            .extensions()
            .get::<MatchedRoute>()
            .map(|r| r.0.id.to_string()),
        path,
        status: resp.status().as_u16(),
        decision: Cow::Borrowed(outcome.decision.as_str()),
        reason: Cow::Borrowed(outcome.reason),
        latency_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

/// The address as `Display` spells it; IPv4 (the usual case) without the formatting
/// machinery, which costs several times more than the digits.
fn ip_string(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            s.push(char::from(b'0' + (o / 10) % 10));
        }
        s.push(char::from(b'0' + o % 10));
    }
    s
}

/// `ps:` + the first 16 bytes of HMAC-SHA256(key, kind ‖ 0x00 ‖ value), hex: stable per
/// key, so one subject's records still group together, and not reversible without it.
pub fn pseudonymize(key: &[u8], kind: &str, value: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&k);
    ctx.update(kind.as_bytes());
    ctx.update(&[0]);
    ctx.update(value.as_bytes());
    let tag = ctx.sign();
    format!("ps:{}", hex(tag.as_ref().get(..16).unwrap_or(&[])))
}

/// The path plus its query with the value of every parameter named in `names` (or in
/// [`ALWAYS_REDACTED`]) replaced by `REDACTED`. Names compare case-insensitively after
/// percent-decoding, so `%74oken=` is masked too.
pub fn redact_query(path: &str, query: Option<&str>, names: &[String]) -> String {
    let Some(q) = query else {
        return path.to_owned();
    };
    let mut out = String::with_capacity(path.len() + q.len() + 1);
    out.push_str(path);
    out.push('?');
    for (i, part) in q.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (raw_name, has_value) = match part.split_once('=') {
            Some((n, _)) => (n, true),
            None => (part, false),
        };
        let decoded = percent_encoding::percent_decode_str(&raw_name.replace('+', " "))
            .decode_utf8_lossy()
            .trim()
            .to_ascii_lowercase();
        let masked = ALWAYS_REDACTED.contains(&decoded.as_str()) || names.contains(&decoded);
        if masked && has_value {
            out.push_str(raw_name);
            out.push_str("=REDACTED");
        } else if masked {
            out.push_str("REDACTED");
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let names = vec!["sessiontoken".to_owned()];
        assert_eq!(redact_query("/a", None, &names), "/a");
        assert_eq!(
            redact_query(
                "/a",
                Some("x=1&token=abc&%74oken=def&SessionToken=s&q"),
                &names
            ),
            "/a?x=1&token=REDACTED&%74oken=REDACTED&SessionToken=REDACTED&q"
        );
        assert_eq!(redact_query("/a", Some("api_key"), &names), "/a?REDACTED");
    }

    #[test]
    fn ip_string_spells_addresses_as_display_does() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        for a in [0u8, 1, 9, 10, 42, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 10, 100, 255] {
                let ip = IpAddr::V4(Ipv4Addr::new(a, b, 255 - a, a.wrapping_mul(b)));
                assert_eq!(ip_string(ip), ip.to_string());
            }
        }
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!(ip_string(v6), "2001:db8::1");
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let a = pseudonymize(b"k1", "subject", "alice");
        assert_eq!(a, pseudonymize(b"k1", "subject", "alice"));
        assert_ne!(a, pseudonymize(b"k2", "subject", "alice"));
        assert_ne!(a, pseudonymize(b"k1", "client_ip", "alice"));
        assert!(a.starts_with("ps:") && a.len() == 35 && !a.contains("alice"));
    }
}
