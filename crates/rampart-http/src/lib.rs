//! rampart's request pipeline as tower layers, one per stage of DESIGN.md §1, plus the
//! pure pieces they use (path normalization, routing, forwarded-header parsing) and the
//! one mapping from refusals to RFC 9457 problem responses.
//!
//! Guards against: ambiguous paths reaching the upstream, spoofed identity and forwarding
//! headers, hop-by-hop header smuggling, Host poisoning, oversized headers and bodies,
//! responses leaking server internals. Trusts: the peer address hyper reports, the
//! `server.trusted_proxies` list, and the validated configuration.
//!
//! Every layer has the tower-http shape: `FooLayer` holds settings, `Foo` does the check
//! in `call`, and its future either answers now (a refusal) or waits for the inner service.
//! A Rust service can embed any of them directly:
//!
//! ```
//! use rampart_http::{HostLayer, RequestIdLayer};
//! use tower_layer::Layer;
//! # fn wrap<S>(svc: S) -> impl Sized {
//! let svc = RequestIdLayer::new(vec![]).layer(HostLayer::new(vec!["api.example.com".into()]).layer(svc));
//! # svc }
//! ```

mod authorize;
pub mod body;
mod boxed;
pub mod forwarded;
pub mod health;
mod layers;
pub mod metrics;
pub mod path;
pub mod problem;
pub mod refusals;
pub mod router;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http::header::HeaderName;

pub use authorize::{Authorize, AuthorizeLayer, Grant, RoutePolicy};
pub use body::{
    BodyLimitTripped, BodyRefused, BoxError, LimitedBody, RespBody, StreamEnd, empty, full,
};
pub use boxed::{BoxStack, BoxStackFuture};
pub use layers::*;
pub use metrics::GatewayMetrics;
pub use problem::{AuthFailure, Challenge, Malformed, Reject};
pub use router::{Params, Route, RouteOutcome, Router};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_RAMPART_SUBJECT: HeaderName = HeaderName::from_static("x-rampart-subject");
pub const X_RAMPART_TENANT: HeaderName = HeaderName::from_static("x-rampart-tenant");
pub const X_RAMPART_SCOPES: HeaderName = HeaderName::from_static("x-rampart-scopes");
pub const X_RAMPART_AUTH: HeaderName = HeaderName::from_static("x-rampart-auth");

/// Facts about the connection a request arrived on, inserted by the listener.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: Option<Arc<TlsInfo>>,
    /// Set by the listener when the client left response bytes unread past
    /// `server.client_write_stall_timeout_ms` and was dropped (the access log then says
    /// `client_write_stall` rather than `client_abort`).
    pub write_stalled: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// What the TLS handshake established.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    /// The client's certificate chain (leaf first, DER) when it presented one that
    /// verified against `server.tls.client_ca`. Unverified certificates never get here.
    pub peer_certificates: Option<Arc<Vec<Bytes>>>,
}

/// Flags the HTTP/1 listener read from the raw request head, which `http::Uri` would
/// otherwise hide (it drops a `#fragment` silently), and the head gate's refusal of a
/// head hyper never saw (the request the pipeline gets then is a stand-in that only
/// carries the refusal to the stages that answer, log and count it).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawTarget {
    pub had_fragment: bool,
    pub refused: Option<Malformed>,
}

/// The request target exactly as the client sent it, put on the request by the route
/// stage only when normalization rewrote it (signature verification covers the target
/// as sent; the upstream receives the normalized one).
#[derive(Debug, Clone)]
pub struct SentTarget(pub http::uri::PathAndQuery);

/// The request id, kept from a trusted proxy or minted here.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn new(v: HeaderValue) -> Self {
        Self(v)
    }
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// The client as the gateway trusts it: the peer, or the first untrusted hop of
/// `X-Forwarded-For` when the peer is a trusted proxy.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// The immediate TCP peer.
    pub peer: IpAddr,
    pub peer_trusted: bool,
    /// The scheme the client used (TLS here, or `X-Forwarded-Proto` from a trusted proxy).
    pub https: bool,
}

/// The one route match of this request, shared by every later stage.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub route: Arc<Route>,
    pub params: Params,
}

/// Inserted by the route stage when the request is a CORS preflight (`OPTIONS` with
/// `Origin` and `Access-Control-Request-Method`) on a route with `cors`: the route was
/// matched by the method the preflight asks about, so the CORS stage must answer it; it
/// is never authenticated, authorized or forwarded.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The method the preflight asks about.
    pub method: http::Method,
}

/// Allow or deny, as metrics and the access log record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// Inserted into every response: why it ended as it did.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub decision: Decision,
    pub reason: &'static str,
}

/// Inserted beside the [`Outcome`] of a refusal: the stage that refused (see
/// [`Reject::stage`]), for the status page's list of recent refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedAt(pub &'static str);

/// The authenticated caller. Anonymous on public routes (and where `auth.modes` holds
/// `none`). Inserted into the request's extensions as `Arc<Identity>` by the
/// authentication stage, carried by the [`Permit`], and copied onto the response so the
/// access log and the audit trail can say who the caller was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `none` for anonymous access, otherwise the mode that authenticated the caller
    /// (`jwt`, `api_key`, `mtls`, `signature`, `proxy`).
    pub method: &'static str,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    /// Scopes granted directly (token claim, key record, certificate mapping).
    pub scopes: Vec<String>,
    /// Roles, mapped to scopes by the authorization stage through `[rbac.roles]`.
    pub roles: Vec<String>,
    /// Which credential authenticated the caller, for revocation and the audit trail:
    /// a token's `jti`, an API key id, a certificate fingerprint, a device name. Never a
    /// secret.
    pub credential_id: Option<String>,
    /// The credential record's own rate limit (API-key and device records), used by the
    /// rate-limit stage instead of the route tier's; `None` for every other caller.
    pub rate_override: Option<Arc<RateOverride>>,
}

/// A per-credential rate-limit override, as an API-key or device record holds it. Each
/// part is optional: `tier` names a `rate_limit.tiers` entry whose budget replaces the
/// route's tier; `per_minute` and `burst` replace the rate and burst of that budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateOverride {
    pub tier: Option<String>,
    pub per_minute: Option<u64>,
    pub burst: Option<u64>,
}

impl RateOverride {
    /// `None` when the record sets nothing (the common case: no allocation per caller).
    pub fn from_parts(
        tier: Option<String>,
        per_minute: Option<u64>,
        burst: Option<u64>,
    ) -> Option<Arc<Self>> {
        (tier.is_some() || per_minute.is_some() || burst.is_some()).then(|| {
            Arc::new(Self {
                tier,
                per_minute,
                burst,
            })
        })
    }
}

impl Identity {
    /// The anonymous caller.
    pub fn anonymous() -> Self {
        Self {
            method: "none",
            subject: None,
            tenant: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            credential_id: None,
            rate_override: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.method == "none"
    }
}

/// Proof that the authorization stage let this request through. Only this crate can
/// make one, and the forwarding stage takes [`Authorized`] requests only: a stack that
/// skips authorization does not compile.
#[derive(Debug, Clone)]
pub struct Permit {
    identity: Arc<Identity>,
    route: Arc<Route>,
    scopes: Vec<String>,
}

impl Permit {
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    pub fn identity_arc(&self) -> &Arc<Identity> {
        &self.identity
    }
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }
    /// The scopes the policy found the caller holding on this route (its own and those
    /// its roles map to): what the upstream is told in `x-rampart-scopes`.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

/// A request that carries its [`Permit`].
#[derive(Debug)]
pub struct Authorized<B> {
    pub permit: Permit,
    pub request: http::Request<B>,
}

/// Whether `ip` is inside one of the trusted proxy networks (IPv4-mapped IPv6
/// addresses are compared as IPv4).
pub fn is_trusted(proxies: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    proxies.iter().any(|n| n.contains(&ip))
}
