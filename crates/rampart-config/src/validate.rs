//! `validate()`: the merged tree → typed [`Config`]. The core sections (server,
//! upstreams, routes, headers) are here; the later sections are in [`crate::raw`] and the
//! profile rules in [`crate::profile`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::cx::{Cx, Tbl};
use crate::error::valid_hint;
use crate::model::{
    ClientAuth, Config, HeadersConfig, Profile, RouteConfig, ServerConfig, TlsConfig,
    UpstreamConfig,
};
use crate::raw::LaterSections;
use crate::tree::{Item, Node};

pub(crate) const TOP_KEYS: &[&str] = &[
    "profile",
    "server",
    "upstreams",
    "routes",
    "headers",
    "auth",
    "rbac",
    "rate_limit",
    "audit",
    "signing",
    "crypto",
    "store",
    "redis",
];

const SERVER_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "tls",
    "trusted_hosts",
    "trusted_proxies",
    "data_dir",
    "allowed_data_roots",
    "max_header_bytes",
    "max_header_count",
    "header_read_timeout_ms",
    "client_body_idle_timeout_ms",
    "upstream_body_idle_timeout_ms",
    "client_write_stall_timeout_ms",
    "keepalive_idle_timeout_ms",
    "h2_idle_timeout_ms",
    "request_timeout_ms",
    "max_connections",
    "max_body_bytes",
    "upstream_connect_timeout_ms",
    "drain_timeout_ms",
    "idle_timeout_ms",
    "access_log",
    "listen_backlog",
];

const TLS_KEYS: &[&str] = &["cert", "key", "client_ca", "client_auth"];

const ROUTE_KEYS: &[&str] = &[
    "id",
    "path",
    "methods",
    "upstream",
    "public",
    "max_body_bytes",
    "tier",
    "scopes",
    "any_scopes",
    "allow_path_params",
    "allow_fragment",
    "allow_wildcard",
    "cors",
    "csrf",
    "identity_assertion",
];

const HEADER_KEYS: &[&str] = &[
    "content_security_policy",
    "strict_transport_security",
    "x_frame_options",
    "x_content_type_options",
    "referrer_policy",
    "permissions_policy",
    "cross_origin_opener_policy",
];

const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// One day, the upper bound on every `*_ms` setting.
const MAX_MS: u64 = 86_400_000;

/// What the data-root checks need, kept even when the whole config does not validate.
#[derive(Debug, Default)]
pub(crate) struct Hint {
    pub data_dir: Option<PathBuf>,
    pub roots: Vec<PathBuf>,
}

pub(crate) fn default_server() -> ServerConfig {
    ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
        tls: None,
        trusted_hosts: Vec::new(),
        trusted_proxies: Vec::new(),
        data_dir: None,
        allowed_data_roots: Vec::new(),
        max_header_bytes: 16384,
        max_header_count: 100,
        header_read_timeout: Duration::from_millis(5000),
        client_body_idle_timeout: Duration::from_millis(30_000),
        upstream_body_idle_timeout: Duration::from_millis(30_000),
        client_write_stall_timeout: Duration::from_millis(30_000),
        keepalive_idle_timeout: Duration::from_millis(75_000),
        h2_idle_timeout: Duration::from_millis(180_000),
        request_timeout: Duration::from_millis(30_000),
        max_connections: 10_000,
        max_body_bytes: 1_048_576,
        upstream_connect_timeout: Duration::from_millis(2000),
        drain_timeout: Duration::from_millis(30_000),
        idle_timeout: Duration::from_millis(60_000),
        access_log: true,
        listen_backlog: 4096,
    }
}

pub(crate) fn default_headers() -> HeadersConfig {
    HeadersConfig {
        content_security_policy: Some("default-src 'none'; frame-ancestors 'none'".into()),
        strict_transport_security: Some("max-age=63072000; includeSubDomains".into()),
        x_frame_options: Some("DENY".into()),
        x_content_type_options: Some("nosniff".into()),
        referrer_policy: Some("no-referrer".into()),
        permissions_policy: Some(
            "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), \
             payment=(), usb=()"
                .into(),
        ),
        cross_origin_opener_policy: Some("same-origin".into()),
    }
}

/// Validates the whole tree. Returns a config only when no error was recorded.
pub(crate) fn validate(
    cx: &mut Cx<'_>,
    root: &Item,
    sources: Vec<PathBuf>,
    hint: &mut Hint,
) -> Option<Config> {
    let top = cx.table(root, "", TOP_KEYS)?;
    let profile = match cx.opt_enum(&top, "profile", &["prod", "dev"]) {
        Some("dev") => Profile::Dev,
        _ => Profile::Prod,
    };
    cx.profile = profile;
    let server = server(cx, top.get("server"), hint);
    let upstreams = upstreams(cx, top.get("upstreams"));
    let later = crate::raw::parse(cx, &top);
    let routes = routes(cx, top.get("routes"), &upstreams, &later);
    let headers = headers(cx, top.get("headers"));
    crate::profile::apply(cx, &top, &server, &later);
    if routes.is_empty() {
        cx.warn("no routes: every request gets 404");
    }
    if !cx.diags.is_empty() {
        return None;
    }
    Some(Config {
        profile,
        server,
        upstreams,
        routes,
        headers,
        later,
        sources,
        warnings: std::mem::take(&mut cx.warnings),
    })
}

fn ms(cx: &mut Cx<'_>, t: &Tbl<'_>, k: &str, min: u64, default: Duration) -> Duration {
    cx.opt_u64(t, k, min, MAX_MS)
        .map_or(default, Duration::from_millis)
}

fn socket_addr(cx: &mut Cx<'_>, item: &Item, key: &str, s: &str) -> Option<SocketAddr> {
    match s.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.error(
                item,
                key,
                format!("`{s}` is not an IP:port address (e.g. 127.0.0.1:8080 or [::1]:8080; host names are not resolved)"),
            );
            None
        }
    }
}

fn server(cx: &mut Cx<'_>, item: Option<&Item>, hint: &mut Hint) -> ServerConfig {
    let mut s = default_server();
    let Some(item) = item else {
        return s;
    };
    let Some(t) = cx.table(item, "server", SERVER_KEYS) else {
        return s;
    };
    if let Some(i) = t.get("listen")
        && let Some(v) = cx.str_of(i, &t.key("listen"))
        && let Some(a) = socket_addr(cx, i, &t.key("listen"), &v)
    {
        s.listen = a;
    }
    if let Some(i) = t.get("admin_listen")
        && let Some(v) = cx.str_of(i, &t.key("admin_listen"))
    {
        if v.is_empty() || v == "off" {
            s.admin_listen = None;
        } else if let Some(a) = socket_addr(cx, i, &t.key("admin_listen"), &v) {
            if a == s.listen && a.port() != 0 {
                cx.error(
                    i,
                    &t.key("admin_listen"),
                    format!("`{v}` is also server.listen; use another port or \"off\""),
                );
            }
            s.admin_listen = Some(a);
        }
    }
    if let Some(i) = t.get("tls") {
        s.tls = tls(cx, i);
    }
    if let Some(list) = cx.opt_str_list(&t, "trusted_hosts") {
        let mut seen = BTreeSet::new();
        for (idx, (h, i)) in list.iter().enumerate() {
            match trusted_host(h) {
                Ok(h) => {
                    if seen.insert(h.clone()) {
                        s.trusted_hosts.push(h);
                    }
                }
                Err(m) => cx.error(i, &format!("server.trusted_hosts[{idx}]"), m),
            }
        }
    }
    if let Some(list) = cx.opt_str_list(&t, "trusted_proxies") {
        for (idx, (p, i)) in list.iter().enumerate() {
            let key = format!("server.trusted_proxies[{idx}]");
            match trusted_proxy(p) {
                Ok(net) => {
                    if net != net.trunc() {
                        cx.warn(format!(
                            "{key}: `{p}` has host bits set; it is used as {}",
                            net.trunc()
                        ));
                    }
                    if net.prefix_len() == 0 {
                        cx.warn(format!(
                            "{key}: `{p}` trusts every address to set X-Forwarded-For and identity headers"
                        ));
                    }
                    s.trusted_proxies.push(net.trunc());
                }
                Err(m) => cx.error(i, &key, m),
            }
        }
    }
    if let Some(i) = t.get("data_dir") {
        s.data_dir = cx.abs_path(i, &t.key("data_dir"));
        hint.data_dir.clone_from(&s.data_dir);
    }
    if let Some(i) = t.get("allowed_data_roots") {
        let key = t.key("allowed_data_roots");
        if let Node::Array(a) = &i.node {
            for (idx, e) in a.iter().enumerate() {
                if let Some(p) = cx.abs_path(e, &format!("{key}[{idx}]")) {
                    s.allowed_data_roots.push(p);
                }
            }
        } else {
            let _ = cx.str_list(i, &key);
        }
        hint.roots.clone_from(&s.allowed_data_roots);
    }
    if let Some(v) = cx.opt_u64(&t, "max_header_bytes", 1024, 1_048_576) {
        s.max_header_bytes = usize::try_from(v).unwrap_or(s.max_header_bytes);
    }
    if let Some(v) = cx.opt_u64(&t, "max_header_count", 1, 1000) {
        s.max_header_count = usize::try_from(v).unwrap_or(s.max_header_count);
    }
    s.header_read_timeout = ms(cx, &t, "header_read_timeout_ms", 1, s.header_read_timeout);
    s.client_body_idle_timeout = ms(
        cx,
        &t,
        "client_body_idle_timeout_ms",
        1,
        s.client_body_idle_timeout,
    );
    s.upstream_body_idle_timeout = ms(
        cx,
        &t,
        "upstream_body_idle_timeout_ms",
        1,
        s.upstream_body_idle_timeout,
    );
    s.client_write_stall_timeout = ms(
        cx,
        &t,
        "client_write_stall_timeout_ms",
        1,
        s.client_write_stall_timeout,
    );
    s.keepalive_idle_timeout = ms(
        cx,
        &t,
        "keepalive_idle_timeout_ms",
        1,
        s.keepalive_idle_timeout,
    );
    s.h2_idle_timeout = ms(cx, &t, "h2_idle_timeout_ms", 1, s.h2_idle_timeout);
    s.request_timeout = ms(cx, &t, "request_timeout_ms", 1, s.request_timeout);
    if let Some(v) = cx.opt_u64(&t, "max_connections", 1, 10_000_000) {
        s.max_connections = usize::try_from(v).unwrap_or(s.max_connections);
    }
    if let Some(v) = cx.opt_u64(&t, "max_body_bytes", 0, u64::from(u32::MAX) * 16) {
        s.max_body_bytes = v;
    }
    s.upstream_connect_timeout = ms(
        cx,
        &t,
        "upstream_connect_timeout_ms",
        1,
        s.upstream_connect_timeout,
    );
    s.drain_timeout = ms(cx, &t, "drain_timeout_ms", 0, s.drain_timeout);
    s.idle_timeout = ms(cx, &t, "idle_timeout_ms", 1, s.idle_timeout);
    if let Some(b) = cx.opt_bool(&t, "access_log") {
        s.access_log = b;
    }
    if let Some(v) = cx.opt_u64(&t, "listen_backlog", 1, 65_535) {
        s.listen_backlog = u32::try_from(v).unwrap_or(s.listen_backlog);
    }
    s
}

fn looks_like_pem(b: &[u8]) -> bool {
    b.windows(11).any(|w| w == b"-----BEGIN ")
}

fn tls(cx: &mut Cx<'_>, item: &Item) -> Option<TlsConfig> {
    let t = cx.table(item, "server.tls", TLS_KEYS)?;
    if t.get("cert").is_none() {
        cx.missing(&t, "cert", "the certificate chain: `file:PATH` or a path");
    }
    if t.get("key").is_none() {
        cx.missing(&t, "key", "the private key: `file:PATH` or `env:NAME`");
    }
    let cert = cx.opt_public_file(&t, "cert");
    if let (Some((pem, src)), Some(i)) = (&cert, t.get("cert"))
        && !looks_like_pem(pem)
    {
        cx.error(
            i,
            "server.tls.cert",
            format!("{src} does not contain a PEM certificate (-----BEGIN …)"),
        );
    }
    let key = cx.opt_secret(&t, "key", false);
    if let (Some(k), Some(i)) = (&key, t.get("key"))
        && !looks_like_pem(k.expose())
    {
        cx.error(
            i,
            "server.tls.key",
            format!("{} does not contain a PEM private key", k.source()),
        );
    }
    let ca = cx.opt_public_file(&t, "client_ca");
    if let (Some((pem, src)), Some(i)) = (&ca, t.get("client_ca"))
        && !looks_like_pem(pem)
    {
        cx.error(
            i,
            "server.tls.client_ca",
            format!("{src} does not contain PEM certificates"),
        );
    }
    let has_ca = t.get("client_ca").is_some();
    let client_auth = match cx.opt_enum(&t, "client_auth", &["none", "optional", "required"]) {
        Some("none") => {
            if let Some(i) = t.get("client_ca") {
                cx.error(
                    i,
                    "server.tls.client_ca",
                    "client_ca is set but client_auth = \"none\": remove client_ca or set client_auth to \"optional\" or \"required\"",
                );
            }
            ClientAuth::None
        }
        Some(mode @ ("optional" | "required")) => {
            if !has_ca && let Some(i) = t.get("client_auth") {
                cx.error(
                        i,
                        "server.tls.client_auth",
                        format!("client_auth = \"{mode}\" needs server.tls.client_ca (the CA that signs client certificates)"),
                    );
            }
            if mode == "required" {
                ClientAuth::Required
            } else {
                ClientAuth::Optional
            }
        }
        _ if has_ca => ClientAuth::Optional,
        _ => ClientAuth::None,
    };
    let (cert_pem, cert_source) = cert?;
    Some(TlsConfig {
        cert_pem,
        key_pem: key?,
        client_ca_pem: match (has_ca, ca) {
            (true, None) => return None,
            (_, ca) => ca.map(|(b, _)| b),
        },
        client_auth,
        cert_source,
    })
}

/// A `trusted_hosts` entry: a host name (lower-cased), `*.` + a host name, an IPv4
/// address, or a bracketed IPv6 address.
pub(crate) fn trusted_host(h: &str) -> Result<String, String> {
    let lower = h.to_ascii_lowercase();
    let bad = |why: &str| {
        Err(format!(
            "`{h}` is not a host name: {why} (e.g. \"api.example.com\" or \"*.example.com\")"
        ))
    };
    if lower.is_empty() {
        return bad("empty");
    }
    if lower.contains("://") {
        return bad("remove the scheme");
    }
    if lower.contains('/') {
        return bad("remove the path");
    }
    if lower.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains spaces or control characters");
    }
    if let Some(inner) = lower.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(lower),
            Err(_) => bad("not an IPv6 address"),
        };
    }
    if lower.contains(':') {
        return bad("remove the port (a port in the Host header is ignored when matching)");
    }
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("empty label");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("only letters, digits, `-`, `_` and a leading `*.` are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with `-`");
        }
    }
    Ok(lower)
}

/// A `trusted_proxies` entry: a CIDR or a bare address (= a single host).
pub(crate) fn trusted_proxy(p: &str) -> Result<IpNet, String> {
    let p = p.trim();
    if let Ok(net) = p.parse::<IpNet>() {
        return Ok(net);
    }
    if let Ok(ip) = p.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "`{p}` is not a CIDR or an IP address (e.g. \"10.0.0.0/8\" or \"192.0.2.7\")"
    ))
}

/// An `http`/`https` URL with a host; no user info, query or fragment.
pub(crate) fn http_url(s: &str) -> Result<http::Uri, String> {
    if s.contains('#') {
        return Err(format!("`{s}`: a fragment is not allowed"));
    }
    let uri: http::Uri = s
        .parse()
        .map_err(|_| format!("`{s}` is not a URL (e.g. \"http://127.0.0.1:3000\")"))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {}
        _ => return Err(format!("`{s}`: the scheme must be http or https")),
    }
    let Some(auth) = uri.authority() else {
        return Err(format!("`{s}`: a host is required"));
    };
    if auth.as_str().contains('@') {
        return Err(format!("`{s}`: credentials in the URL are not allowed"));
    }
    if auth.host().is_empty() {
        return Err(format!("`{s}`: a host is required"));
    }
    if uri.query().is_some() {
        return Err(format!("`{s}`: a query string is not allowed"));
    }
    Ok(uri)
}

fn valid_name(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

fn upstreams(cx: &mut Cx<'_>, item: Option<&Item>) -> BTreeMap<String, UpstreamConfig> {
    let mut out = BTreeMap::new();
    let Some(item) = item else {
        return out;
    };
    let Some(map) = cx.map(item, "upstreams") else {
        return out;
    };
    for (name, u) in map {
        let path = format!("upstreams.{name}");
        if !valid_name(name, b"_-") {
            let at = u.at.clone();
            cx.error_at(
                &at,
                u.key_line,
                &path,
                "invalid-value",
                "an upstream name uses only letters, digits, `_` and `-`".into(),
            );
            continue;
        }
        let Some(t) = cx.table(u, &path, &["url", "max_connections", "queue_timeout_ms"]) else {
            continue;
        };
        let max_connections = cx
            .opt_u64(&t, "max_connections", 1, 1_000_000)
            .and_then(|v| usize::try_from(v).ok());
        let queue_timeout = ms(cx, &t, "queue_timeout_ms", 0, Duration::from_millis(1000));
        let Some(ui) = t.get("url") else {
            cx.missing(&t, "url", "e.g. \"http://127.0.0.1:3000\"");
            continue;
        };
        let key = t.key("url");
        let Some(s) = cx.str_of(ui, &key) else {
            continue;
        };
        match http_url(&s) {
            Ok(url) => {
                out.insert(
                    name.clone(),
                    UpstreamConfig {
                        name: name.clone(),
                        url,
                        max_connections,
                        queue_timeout,
                    },
                );
            }
            Err(m) => cx.error(ui, &key, m),
        }
    }
    out
}

/// Validates a route template; returns it without a trailing `/` (unless it is `/`).
pub(crate) fn route_template(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("`{s}` must start with `/`"));
    }
    if let Some(c) = s.chars().find(|c| matches!(c, '%' | '?' | '#' | '\\')) {
        return Err(format!(
            "`{s}` contains `{c}`; write the decoded path, without query or fragment"
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{s:?}` contains spaces or control characters"));
    }
    if s == "/" {
        return Ok(s.to_owned());
    }
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    let mut names = BTreeSet::new();
    for seg in trimmed.split('/').skip(1) {
        if seg.is_empty() {
            return Err(format!("`{s}` has an empty segment (`//`)"));
        }
        if seg == "." || seg == ".." {
            return Err(format!("`{s}` has a `{seg}` segment"));
        }
        if let Some(inner) = seg.strip_prefix('{') {
            let Some(name) = inner.strip_suffix('}') else {
                return Err(format!("`{s}`: `{seg}` must be a whole `{{name}}` segment"));
            };
            let mut chars = name.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`{s}`: `{{{name}}}` is not a valid parameter name (a letter or `_`, then letters, digits, `_`)"
                ));
            }
            if !names.insert(name) {
                return Err(format!("`{s}`: parameter `{{{name}}}` appears twice"));
            }
        } else if seg.contains('{') || seg.contains('}') {
            return Err(format!(
                "`{s}`: `{seg}` mixes text and a `{{name}}` placeholder; a placeholder is a whole segment"
            ));
        }
    }
    Ok(trimmed.to_owned())
}

/// The template with parameter names erased, to find routes that can never match.
fn template_shape(t: &str) -> String {
    t.split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

fn scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn routes(
    cx: &mut Cx<'_>,
    item: Option<&Item>,
    upstreams: &BTreeMap<String, UpstreamConfig>,
    later: &LaterSections,
) -> Vec<RouteConfig> {
    let mut out: Vec<RouteConfig> = Vec::new();
    let Some(item) = item else {
        return out;
    };
    let Node::Array(elems) = &item.node else {
        cx.error_code(
            item,
            "routes",
            "wrong-type",
            format!(
                "expected an array of tables ([[routes]]), found {}",
                item.node.type_name()
            ),
        );
        return out;
    };
    let upstream_names: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    let tiers: Option<Vec<&str>> = later.rate_limit.as_ref().map(|r| {
        // `default` and `heavy` always exist (DESIGN.md: "default, heavy, or any
        // named tier under rate_limit.tiers").
        let mut t: Vec<&str> = vec!["default", "heavy"];
        t.extend(
            r.tiers
                .keys()
                .map(String::as_str)
                .filter(|n| !matches!(*n, "default" | "heavy")),
        );
        t
    });
    let mut ids: BTreeMap<String, Option<usize>> = BTreeMap::new();
    let mut shapes: Vec<(String, Vec<http::Method>, String)> = Vec::new();
    for (idx, e) in elems.iter().enumerate() {
        let path = format!("routes[{idx}]");
        let Some(t) = cx.table(e, &path, ROUTE_KEYS) else {
            continue;
        };
        let mut ok = true;
        let id = match t.get("id") {
            None => {
                cx.missing(&t, "id", "a unique name for logs and metrics");
                ok = false;
                String::new()
            }
            Some(i) => {
                let s = cx.str_of(i, &t.key("id")).unwrap_or_default();
                if !valid_name(&s, b"_.-") {
                    cx.error(
                        i,
                        &t.key("id"),
                        format!("`{s}`: a route id uses only letters, digits, `_`, `.` and `-`"),
                    );
                    ok = false;
                } else if let Some(first) = ids.get(&s) {
                    let at = first
                        .map(|l| format!(" (first at line {l})"))
                        .unwrap_or_default();
                    cx.error(i, &t.key("id"), format!("duplicate route id `{s}`{at}"));
                    ok = false;
                } else {
                    ids.insert(s.clone(), i.at.line);
                }
                s
            }
        };
        let template = match t.get("path") {
            None => {
                cx.missing(&t, "path", "e.g. \"/api/items\"");
                ok = false;
                String::new()
            }
            Some(i) => match cx.str_of(i, &t.key("path")).map(|s| route_template(&s)) {
                Some(Ok(p)) => p,
                Some(Err(m)) => {
                    cx.error(i, &t.key("path"), m);
                    ok = false;
                    String::new()
                }
                None => {
                    ok = false;
                    String::new()
                }
            },
        };
        let mut methods: Vec<http::Method> = Vec::new();
        if let Some(list) = cx.opt_str_list(&t, "methods") {
            for (mi, (m, i)) in list.iter().enumerate() {
                let up = m.to_ascii_uppercase();
                match http::Method::from_bytes(up.as_bytes()) {
                    Ok(method) if !up.is_empty() => {
                        if !STANDARD_METHODS.contains(&up.as_str()) {
                            cx.warn(format!(
                                "{path}.methods[{mi}]: `{up}` is not a standard HTTP method{}",
                                valid_hint(&up, STANDARD_METHODS)
                            ));
                        }
                        if !methods.contains(&method) {
                            methods.push(method);
                        }
                    }
                    _ => {
                        cx.error(
                            i,
                            &format!("{path}.methods[{mi}]"),
                            format!("`{m}` is not an HTTP method (e.g. GET, POST)"),
                        );
                        ok = false;
                    }
                }
            }
        } else if t.get("methods").is_some() {
            ok = false;
        }
        let upstream = match t.get("upstream") {
            None => {
                cx.missing(&t, "upstream", "the name of an [upstreams.NAME] table");
                ok = false;
                String::new()
            }
            Some(i) => {
                let s = cx.str_of(i, &t.key("upstream")).unwrap_or_default();
                if !upstreams.contains_key(&s) {
                    let msg = if upstream_names.is_empty() {
                        format!("no upstream `{s}`: define it as [upstreams.{s}] with a url")
                    } else {
                        format!("no upstream `{s}`{}", valid_hint(&s, &upstream_names))
                    };
                    cx.error(i, &t.key("upstream"), msg);
                    ok = false;
                }
                s
            }
        };
        let public = cx.opt_bool(&t, "public").unwrap_or(false);
        let max_body_bytes = cx.opt_u64(&t, "max_body_bytes", 0, u64::from(u32::MAX) * 16);
        let tier = match t.get("tier") {
            None => None,
            Some(i) => {
                let s = cx.str_of(i, &t.key("tier"));
                if let (Some(s), Some(tiers)) = (&s, &tiers)
                    && !tiers.contains(&s.as_str())
                {
                    cx.error(
                        i,
                        &t.key("tier"),
                        format!("no rate_limit tier `{s}`{}", valid_hint(s, tiers)),
                    );
                    ok = false;
                }
                s
            }
        };
        let mut scope_lists = [Vec::new(), Vec::new()];
        for (key, scopes) in ["scopes", "any_scopes"].into_iter().zip(&mut scope_lists) {
            let Some(list) = cx.opt_str_list(&t, key) else {
                ok &= t.get(key).is_none();
                continue;
            };
            for (si, (s, i)) in list.into_iter().enumerate() {
                if scope_token(&s) {
                    scopes.push(s);
                } else {
                    cx.error(
                        i,
                        &format!("{path}.{key}[{si}]"),
                        format!("`{s}` is not a scope (no spaces, quotes or backslashes)"),
                    );
                    ok = false;
                }
            }
            if public
                && !scopes.is_empty()
                && let Some(i) = t.get(key)
            {
                cx.error(
                    i,
                    &t.key(key),
                    "a public route is not authenticated, so it cannot require scopes",
                );
                ok = false;
            }
        }
        let [scopes, any_scopes] = scope_lists;
        if cx.profile == Profile::Prod && !public && scopes.is_empty() && any_scopes.is_empty() {
            cx.error_code(
                e,
                &path,
                "profile",
                "profile \"prod\" refuses a non-public route without `scopes` or `any_scopes`: \
                 name the scopes a caller needs (or set `public = true`)",
            );
            ok = false;
        }
        let allow_path_params = cx.opt_bool(&t, "allow_path_params").unwrap_or(false);
        let allow_fragment = cx.opt_bool(&t, "allow_fragment").unwrap_or(false);
        let allow_wildcard = cx.opt_bool(&t, "allow_wildcard").unwrap_or(false);
        let cors = match t.get("cors") {
            None => None,
            Some(i) => {
                let c = crate::access::cors(cx, i, &t.key("cors"), &methods);
                ok &= c.is_some();
                c
            }
        };
        let csrf = match t.get("csrf") {
            None => None,
            Some(i) => {
                let c = crate::access::csrf(cx, i, &t.key("csrf"));
                ok &= c.is_some();
                c
            }
        };
        let identity_assertion = cx.opt_bool(&t, "identity_assertion").unwrap_or(false);
        if identity_assertion
            && public
            && let Some(i) = t.get("identity_assertion")
        {
            cx.error(
                i,
                &t.key("identity_assertion"),
                "a public route has no authenticated caller to assert",
            );
            ok = false;
        }
        if !ok {
            continue;
        }
        let shape = template_shape(&template);
        let clash = shapes.iter().find(|(s, m, _)| {
            *s == shape
                && (m.is_empty() || methods.is_empty() || m.iter().any(|x| methods.contains(x)))
        });
        if let Some((_, _, other)) = clash {
            if let Some(i) = t.get("path") {
                cx.error(
                    i,
                    &t.key("path"),
                    format!("route `{id}` can never match: route `{other}` has the same path and overlapping methods"),
                );
            }
            continue;
        }
        shapes.push((shape, methods.clone(), id.clone()));
        out.push(RouteConfig {
            id,
            path: template,
            methods,
            upstream,
            public,
            max_body_bytes,
            tier,
            scopes,
            any_scopes,
            allow_path_params,
            allow_fragment,
            allow_wildcard,
            cors,
            csrf,
            identity_assertion,
        });
    }
    out
}

/// A header value rampart will send: visible ASCII, spaces and tabs; no CR/LF.
pub(crate) fn header_value(s: &str) -> Result<(), String> {
    if let Some(b) = s
        .bytes()
        .find(|b| !(*b == b'\t' || (0x20..=0x7e).contains(b)))
    {
        return Err(format!(
            "not a valid HTTP header value: byte 0x{b:02x} is not allowed (visible ASCII, spaces and tabs only; no CR/LF)"
        ));
    }
    if s.starts_with([' ', '\t']) || s.ends_with([' ', '\t']) {
        return Err("not a valid HTTP header value: leading or trailing whitespace".into());
    }
    Ok(())
}

fn headers(cx: &mut Cx<'_>, item: Option<&Item>) -> HeadersConfig {
    let mut h = default_headers();
    let Some(item) = item else {
        return h;
    };
    let Some(t) = cx.table(item, "headers", HEADER_KEYS) else {
        return h;
    };
    let prod = cx.profile == Profile::Prod;
    let slots: [(&str, &mut Option<String>, bool); 7] = [
        (
            "content_security_policy",
            &mut h.content_security_policy,
            true,
        ),
        (
            "strict_transport_security",
            &mut h.strict_transport_security,
            true,
        ),
        ("x_frame_options", &mut h.x_frame_options, true),
        (
            "x_content_type_options",
            &mut h.x_content_type_options,
            true,
        ),
        ("referrer_policy", &mut h.referrer_policy, false),
        ("permissions_policy", &mut h.permissions_policy, false),
        (
            "cross_origin_opener_policy",
            &mut h.cross_origin_opener_policy,
            false,
        ),
    ];
    for (k, slot, warn_if_off) in slots {
        let Some(i) = t.get(k) else {
            continue;
        };
        let Some(v) = cx.str_of(i, &t.key(k)) else {
            continue;
        };
        if v.is_empty() {
            *slot = None;
            if prod && warn_if_off {
                cx.warn(format!(
                    "headers.{k} = \"\": the header is not sent (profile prod)"
                ));
            }
        } else if let Err(m) = header_value(&v) {
            cx.error(i, &t.key(k), m);
        } else {
            *slot = Some(v);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(route_template("/").unwrap(), "/");
        assert_eq!(route_template("/a/").unwrap(), "/a");
        assert_eq!(
            route_template("/t/{tenant}/jobs").unwrap(),
            "/t/{tenant}/jobs"
        );
        for bad in [
            "", "a", "/a//b", "/a/./b", "/a/..", "/a%2f", "/a?x", "/a#x", "/a\\b", "/{x}/{x}",
            "/{1x}", "/a{x}", "/{x", "/a b", "/a//",
        ] {
            assert!(route_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_and_proxies() {
        assert_eq!(trusted_host("API.Example.com").unwrap(), "api.example.com");
        assert!(trusted_host("*.example.com").is_ok());
        assert!(trusted_host("127.0.0.1").is_ok());
        assert!(trusted_host("[::1]").is_ok());
        for bad in ["", "https://a", "a:443", "a/b", "a b", "a..b", "-a.b", "*"] {
            assert!(trusted_host(bad).is_err(), "{bad}");
        }
        assert_eq!(
            trusted_proxy("10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(trusted_proxy("::1").unwrap().to_string(), "::1/128");
        assert!(trusted_proxy("10.0.0.0/8").is_ok());
        assert!(trusted_proxy("10.0.0.0/33").is_err());
    }

    #[test]
    fn urls() {
        assert!(http_url("http://127.0.0.1:3000").is_ok());
        assert!(http_url("https://a.example/prefix").is_ok());
        for bad in [
            "ftp://a",
            "http://u:p@a",
            "http://a/?q",
            "http://a/#f",
            "/path",
            "a",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values() {
        assert!(header_value("default-src 'none'").is_ok());
        assert!(header_value("a\r\nb").is_err());
        assert!(header_value("é").is_err());
        assert!(header_value(" a").is_err());
    }
}
