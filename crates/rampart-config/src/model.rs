//! Typed, validated configuration. Everything here has passed `validate()`:
//! the request path never re-checks a value and never sees a raw string where a
//! typed one belongs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::secret::Secret;

/// `profile = "prod" | "dev"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Prod,
    Dev,
}

/// `server.tls.client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is requested (no `client_ca`).
    None,
    /// A certificate is requested; when presented it must verify against `client_ca`.
    Optional,
    /// A verified certificate is required to complete the handshake.
    Required,
}

/// `server.tls`: PEM material already read from `file:`/`env:` references.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain, PEM (not a secret).
    pub cert_pem: Vec<u8>,
    /// Private key, PEM (secret: zeroized on drop, redacted in Debug).
    pub key_pem: Secret,
    /// Client CA bundle, PEM, when client certificates are verified.
    pub client_ca_pem: Option<Vec<u8>>,
    pub client_auth: ClientAuth,
    /// Where the material came from, for reload and `check` messages.
    pub cert_source: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `None` disables the admin listener.
    pub admin_listen: Option<SocketAddr>,
    pub tls: Option<TlsConfig>,
    /// Lower-cased host names; a port in the Host header is ignored when matching.
    /// A leading `*.` matches exactly one more label. Empty = any host (dev only).
    pub trusted_hosts: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub data_dir: Option<PathBuf>,
    pub allowed_data_roots: Vec<PathBuf>,
    pub max_header_bytes: usize,
    /// Most header fields in one request head (`431` beyond it).
    pub max_header_count: usize,
    /// From the first byte of a request head to its end (`408`).
    pub header_read_timeout: Duration,
    /// Longest silence inside a request body being read from the client (`408`).
    pub client_body_idle_timeout: Duration,
    /// Longest silence inside a response body being read from the upstream: the
    /// client's response is aborted (HTTP/1.1 connection closed short of its length,
    /// HTTP/2 `RST_STREAM`).
    pub upstream_body_idle_timeout: Duration,
    /// Longest time a client may leave written response bytes unread before it is
    /// dropped.
    pub client_write_stall_timeout: Duration,
    /// An HTTP/1.1 connection idle between requests is closed after this long.
    pub keepalive_idle_timeout: Duration,
    /// A connection on which no request started for this long and none is in flight
    /// is ended gracefully (HTTP/2: GOAWAY).
    pub h2_idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// Default body limit for routes without `max_body_bytes`.
    pub max_body_bytes: u64,
    pub upstream_connect_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests before closing connections.
    pub drain_timeout: Duration,
    /// Idle keep-alive connections are closed after this long.
    pub idle_timeout: Duration,
    /// One JSON access-log line per request.
    pub access_log: bool,
    /// Accept-queue length of both listeners (capped by the kernel's `somaxconn`).
    pub listen_backlog: u32,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// `http://host:port` or `https://host:port`, no path/query (a path prefix is allowed
    /// and is prepended to the forwarded path).
    pub url: http::Uri,
    /// Most connections open to this upstream at once (busy and idle); `None` derives
    /// it from the process's descriptor limit (see `rampart-proxy`).
    pub max_connections: Option<usize>,
    /// How long a request waits for a connection when the cap is reached (then 503).
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub id: String,
    /// Template as written, e.g. `/tenants/{tenant}/jobs`; always starts with `/`,
    /// no trailing `/` unless it is exactly `/`; segments are literal or `{name}`.
    pub path: String,
    /// Upper-case methods; empty = any method.
    pub methods: Vec<http::Method>,
    pub upstream: String,
    pub public: bool,
    pub max_body_bytes: Option<u64>,
    pub tier: Option<String>,
    /// Every one of these must be held.
    pub scopes: Vec<String>,
    /// At least one of these must be held (when not empty).
    pub any_scopes: Vec<String>,
    /// Allow `;` path parameters in this route's paths.
    pub allow_path_params: bool,
    /// Allow (and drop) a `#fragment` in the request target.
    pub allow_fragment: bool,
    /// Allow a literal `*` where a `{name}` segment is expected.
    pub allow_wildcard: bool,
    /// Cross-origin access from browsers (`cors = { … }`); `None` = no CORS headers, and
    /// preflights are routed like any other `OPTIONS` request.
    pub cors: Option<CorsConfig>,
    /// Double-submit CSRF check for cookie-authenticated callers (`csrf = { … }`).
    pub csrf: Option<CsrfConfig>,
    /// Send the upstream a signed, short-lived JWT of the caller in `x-rampart-identity`.
    pub identity_assertion: bool,
}

/// A route's `cors = { … }`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins allowed, exactly as browsers serialize them (`https://app.example.com`,
    /// lower-case, no default port, no path). Never `null`.
    pub allowed_origins: Vec<String>,
    /// `allowed_origins = ["*"]`: any origin, answered with a literal `*` (never with
    /// credentials, never echoing the request's `Origin`).
    pub any_origin: bool,
    /// Methods a preflight may ask for; empty = whatever the route accepts.
    pub allowed_methods: Vec<http::Method>,
    /// Request headers a preflight may ask for (lower-case).
    pub allowed_headers: Vec<String>,
    /// Response headers browser scripts may read (lower-case).
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age` of preflight answers.
    pub max_age_s: Option<u64>,
}

/// A route's `csrf = { … }`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfConfig {
    /// Cookie holding the token; always `__Host-` prefixed.
    pub cookie: String,
    /// Request header that must repeat the cookie's value (lower-case).
    pub header: String,
}

/// `[headers]`: values sent on every response. `None` = header not sent.
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    pub content_security_policy: Option<String>,
    pub strict_transport_security: Option<String>,
    pub x_frame_options: Option<String>,
    pub x_content_type_options: Option<String>,
    pub referrer_policy: Option<String>,
    pub permissions_policy: Option<String>,
    pub cross_origin_opener_policy: Option<String>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub profile: Profile,
    pub server: ServerConfig,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// In file order; routing picks the longest matching template, ties by file order.
    pub routes: Vec<RouteConfig>,
    pub headers: HeadersConfig,
    /// Later stages (auth, rbac, rate_limit, audit, signing, crypto, store) are parsed
    /// strictly (unknown keys rejected) and kept typed here for the issues that use them.
    pub later: crate::raw::LaterSections,
    /// The files this config was read from, in overlay order.
    pub sources: Vec<PathBuf>,
    /// Dev-profile relaxations and other non-fatal findings, logged at every start.
    pub warnings: Vec<String>,
}
