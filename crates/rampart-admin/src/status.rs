//! The operator status page (`GET /` on the admin listener) and its JSON twin
//! (`GET /admin/status.json`): build, profile and config digest, health reasons, per-route
//! traffic, the last refusals, rate-limit pressure, JWKS, audit, signing keys,
//! revocations and connections, gathered into one [`Status`] that both answers render.
//!
//! Guards against: markup or script injection through names that come from the
//! configuration or from clients (route ids, reasons, request ids, error messages are
//! HTML-escaped and cut to [`MAX_TEXT`] characters; the page loads no external asset and
//! is served with `Content-Security-Policy: default-src 'self'`, so an escaped-away
//! injection could not load anything either); an oversized page (every table is capped and
//! says how many rows it left out: the page stays under [`MAX_PAGE_BYTES`] whatever the
//! number of routes); secrets on the page (sources hand over fingerprints, digests,
//! counts and fixed codes, never key material, tokens or paths with queries). Access is
//! decided by the caller of [`status_response`] (the admin listener: the `/admin/*` rule,
//! or loopback peers only).
//!
//! Trusts: the [`StatusSource`]s to fill their sections with non-secret values.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::{Serialize, Serializer};

use crate::{AdminState, BuildInfo, Severity};

/// Rows of the routes table (busiest first).
pub const MAX_ROUTE_ROWS: usize = 200;
/// Rows of the refusals table (newest first).
pub const MAX_REFUSAL_ROWS: usize = 50;
/// Refusals kept in the JSON twin.
pub const MAX_REFUSALS_JSON: usize = 256;
/// Rows of every other table (reasons, tiers, keys).
pub const MAX_ROWS: usize = 50;
/// Characters of any one text value shown on the page.
pub const MAX_TEXT: usize = 160;
/// Upper bound of the rendered page (asserted by the tests with 10,000 routes and
/// hostile names).
pub const MAX_PAGE_BYTES: usize = 512 * 1024;

/// The `Content-Security-Policy` of the page.
pub const PAGE_CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Fills the sections a stage knows about. Called on every request of the page, never
/// on the request path.
pub trait StatusSource: Send + Sync + 'static {
    fn fill(&self, status: &mut Status);
}

/// Everything the page shows. Sections that are `None` are not configured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub generated_unix_ms: u64,
    pub build: BuildStatus,
    /// `prod` or `dev`.
    pub profile: Option<String>,
    #[serde(serialize_with = "section")]
    pub config: Option<ConfigStatus>,
    pub health: HealthStatus,
    pub routes: Vec<RouteStatus>,
    pub refusals: RefusalsStatus,
    #[serde(serialize_with = "section")]
    pub rate_limit: Option<RateLimitStatus>,
    #[serde(serialize_with = "section")]
    pub jwks: Option<JwksStatus>,
    #[serde(serialize_with = "section")]
    pub audit: Option<AuditView>,
    #[serde(serialize_with = "section")]
    pub signing: Option<SigningStatus>,
    #[serde(serialize_with = "section")]
    pub revocations: Option<RevocationsStatus>,
    pub connections: ConnectionsStatus,
}

/// A section is `{"configured": false}` or its fields with `"configured": true`.
fn section<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct On<'a, T> {
        configured: bool,
        #[serde(flatten)]
        inner: Option<&'a T>,
    }
    On {
        configured: v.is_some(),
        inner: v.as_ref(),
    }
    .serialize(s)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildStatus {
    pub version: String,
    pub commit: String,
    pub branch: String,
    pub build_time: String,
}

impl From<&BuildInfo> for BuildStatus {
    fn from(b: &BuildInfo) -> Self {
        Self {
            version: b.version.into(),
            commit: b.commit.into(),
            branch: b.branch.into(),
            build_time: b.build_time.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    /// `sha256:` + hex of the loaded configuration with every secret value redacted.
    pub digest: String,
    /// Configuration files, in overlay order.
    pub files: usize,
    pub reloads_ok: u64,
    pub reloads_rejected: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthStatus {
    /// `ok`, or `degraded` when a reason is `warn` (`/healthz` then answers 503).
    pub status: String,
    pub reasons: Vec<ReasonStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReasonStatus {
    pub reason: String,
    pub severity: String,
    pub message: String,
}

/// One route, from the counters and histogram of `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteStatus {
    /// The route id; empty for requests that matched no route.
    pub route: String,
    pub requests: u64,
    pub denied: u64,
    pub server_errors: u64,
    /// `server_errors / requests` (0 without requests).
    pub error_rate: f64,
    /// `denied / requests` (0 without requests).
    pub deny_rate: f64,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RefusalsStatus {
    /// Refusals since start.
    pub total: u64,
    /// Refusals not kept because the ring was busy.
    pub skipped: u64,
    /// Newest first.
    pub recent: Vec<RefusalStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RefusalStatus {
    pub at_unix_ms: u64,
    pub request_id: Option<String>,
    pub route: Option<String>,
    pub status: u16,
    pub stage: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RateLimitStatus {
    /// `memory` or `redis`.
    pub backend: String,
    /// Whether the remote backend answered its last attempt (`None`: memory).
    pub backend_up: Option<bool>,
    pub backend_errors: u64,
    pub tiers: Vec<TierStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TierStatus {
    pub tier: String,
    pub per_minute: Option<u64>,
    pub burst: Option<u64>,
    pub allowed: u64,
    pub limited: u64,
    pub errors: u64,
    /// `limited / (allowed + limited + errors)` (0 without decisions).
    pub limited_share: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct JwksStatus {
    /// `url` (fetched) or `static` (keys or secret from the configuration).
    pub source: String,
    pub loaded: bool,
    pub keys: u64,
    pub age_s: Option<u64>,
    pub stale: bool,
    pub fetches: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditView {
    pub records: u64,
    /// Hex SHA-256 of the last record (the chain head).
    pub head_hash: String,
    pub checkpoint_size: u64,
    pub checkpoint_ts: Option<String>,
    pub queue_depth: u64,
    pub queue_capacity: u64,
    pub failing: bool,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SigningStatus {
    pub active_key_id: Option<String>,
    pub keys: Vec<KeyStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyStatus {
    pub key_id: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `active` or `retired`.
    pub status: String,
    pub created_unix: u64,
    pub age_s: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RevocationsStatus {
    pub entries: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectionsStatus {
    pub active: i64,
    pub total: u64,
    /// Closed at accept because `server.max_connections` was reached.
    pub refused: u64,
    pub tls_handshake_failures: u64,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `part / whole`, 0 when `whole` is 0.
pub fn share(part: u64, whole: u64) -> f64 {
    ratio(part, whole)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Gathers the status from the admin state and its sources.
pub fn collect(state: &AdminState) -> Status {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &state.metrics;
    let reasons = state.health.reasons();
    let warn = reasons.iter().any(|r| r.severity == Severity::Warn);
    let mut s = Status {
        generated_unix_ms: now_ms(),
        build: BuildStatus::from(&state.build),
        health: HealthStatus {
            status: if warn { "degraded" } else { "ok" }.into(),
            reasons: reasons
                .into_iter()
                .map(|r| ReasonStatus {
                    reason: r.code,
                    severity: r.severity.as_str().into(),
                    message: r.message,
                })
                .collect(),
        },
        routes: m
            .snapshot()
            .into_iter()
            .map(|r| RouteStatus {
                route: r.route.to_string(),
                requests: r.requests,
                denied: r.denied,
                server_errors: r.server_errors,
                error_rate: ratio(r.server_errors, r.requests),
                deny_rate: ratio(r.denied, r.requests),
                p99_ms: r.p99_seconds.map(|p| p * 1000.0),
            })
            .collect(),
        refusals: RefusalsStatus {
            total: m.refusals.total(),
            skipped: m.refusals.skipped(),
            recent: m
                .refusals
                .recent(MAX_REFUSALS_JSON)
                .into_iter()
                .map(|r| RefusalStatus {
                    at_unix_ms: r.at_unix_ms,
                    request_id: r.request_id,
                    route: r.route.map(|r| r.to_string()),
                    status: r.status,
                    stage: r.stage.into(),
                    reason: r.reason.into(),
                })
                .collect(),
        },
        connections: ConnectionsStatus {
            active: m.connections_active.load(Relaxed),
            total: m.connections_total.load(Relaxed),
            refused: m.connections_rejected.load(Relaxed),
            tls_handshake_failures: m.tls_handshake_failures.load(Relaxed),
        },
        ..Status::default()
    };
    for src in &state.status {
        src.fill(&mut s);
    }
    s
}

/// The JSON twin.
pub fn to_json(s: &Status) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

/// Appends `v` HTML-escaped (text and attribute values alike), cut to [`MAX_TEXT`]
/// characters (an ellipsis marks the cut).
pub fn push_escaped(out: &mut String, v: &str) {
    for (i, c) in v.chars().enumerate() {
        if i == MAX_TEXT {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

fn td(out: &mut String, v: &str) {
    out.push_str("<td>");
    push_escaped(out, v);
    out.push_str("</td>");
}

fn td_num(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "<td class=n>{v}</td>");
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn ago(now_ms: u64, then_ms: u64) -> String {
    human_s(now_ms.saturating_sub(then_ms) / 1000)
}

/// `42s`, `5m`, `3h`, `12d`.
fn human_s(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn omitted(out: &mut String, shown: usize, total: usize, what: &str) {
    if total > shown {
        let _ = write!(
            out,
            "<p class=omit>{} more {what} not shown (see /admin/status.json).</p>",
            total - shown
        );
    }
}

fn not_configured(out: &mut String, title: &str, id: &str) {
    let _ = write!(
        out,
        "<section id={id}><h2>{title}</h2><p class=off>Not configured.</p></section>"
    );
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Renders the page. Bounded by [`MAX_PAGE_BYTES`] whatever `s` holds.
pub fn render_html(s: &Status) -> String {
    let mut o = String::with_capacity(64 * 1024);
    o.push_str(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>rampart status</title><link rel=stylesheet href=\"/status.css\">\
         <link rel=icon href=\"/status.svg\" type=\"image/svg+xml\">\
         <script src=\"/status.js\" defer></script></head><body>",
    );
    let degraded = s.health.status != "ok";
    o.push_str("<header><h1>rampart</h1><p>");
    push_escaped(&mut o, &s.build.version);
    o.push_str(" · ");
    push_escaped(&mut o, &s.build.commit);
    o.push_str(" · profile <b id=profile>");
    push_escaped(&mut o, s.profile.as_deref().unwrap_or("unknown"));
    let _ = write!(
        o,
        "</b> · <span id=overall class={}>{}</span></p>\
         <p class=meta><label><input type=checkbox id=auto checked> refresh every 10 s</label> · \
         <a href=\"/admin/status.json\">JSON</a></p></header>",
        if degraded { "warn" } else { "ok" },
        if degraded { "degraded" } else { "ok" }
    );

    // Build and configuration.
    o.push_str("<section id=build><h2>Build and configuration</h2><table>");
    for (k, v) in [
        ("version", s.build.version.as_str()),
        ("commit", s.build.commit.as_str()),
        ("branch", s.build.branch.as_str()),
        ("built", s.build.build_time.as_str()),
    ] {
        o.push_str("<tr><th>");
        o.push_str(k);
        o.push_str("</th>");
        td(&mut o, v);
        o.push_str("</tr>");
    }
    match &s.config {
        Some(c) => {
            o.push_str("<tr><th>config digest</th>");
            td(&mut o, &c.digest);
            let _ = write!(
                o,
                "</tr><tr><th>config files</th><td>{}</td></tr>\
                 <tr><th>reloads</th><td>{} ok, {} rejected</td></tr>",
                c.files, c.reloads_ok, c.reloads_rejected
            );
        }
        None => o.push_str("<tr><th>config digest</th><td class=off>not known</td></tr>"),
    }
    o.push_str("</table></section>");

    // Health.
    o.push_str("<section id=health><h2>Health</h2>");
    if s.health.reasons.is_empty() {
        o.push_str("<p>No reasons: <code>/healthz</code> answers 200.</p>");
    } else {
        o.push_str(
            "<table><thead><tr><th>reason</th><th>severity</th><th>message</th></tr></thead><tbody>",
        );
        for r in s.health.reasons.iter().take(MAX_ROWS) {
            let _ = write!(
                o,
                "<tr class={}>",
                if r.severity == "warn" { "warn" } else { "info" }
            );
            td(&mut o, &r.reason);
            td(&mut o, &r.severity);
            td(&mut o, &r.message);
            o.push_str("</tr>");
        }
        o.push_str("</tbody></table>");
        omitted(&mut o, MAX_ROWS, s.health.reasons.len(), "reasons");
    }
    o.push_str("</section>");

    // Routes, busiest first.
    o.push_str("<section id=routes><h2>Routes</h2>");
    let mut order: Vec<&RouteStatus> = s.routes.iter().collect();
    let keep = MAX_ROUTE_ROWS.min(order.len());
    if order.len() > keep {
        order.select_nth_unstable_by(keep, |a, b| b.requests.cmp(&a.requests));
        order.truncate(keep);
    }
    order.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.route.cmp(&b.route)));
    o.push_str(
        "<table><thead><tr><th>route</th><th>requests</th><th>denied</th>\
         <th>5xx</th><th>p99</th></tr></thead><tbody>",
    );
    for r in &order {
        o.push_str("<tr>");
        if r.route.is_empty() {
            o.push_str("<td><i>(no route)</i></td>");
        } else {
            td(&mut o, &r.route);
        }
        td_num(&mut o, r.requests);
        td_num(&mut o, pct(r.deny_rate));
        td_num(&mut o, pct(r.error_rate));
        match r.p99_ms {
            Some(p) => td_num(&mut o, format_args!("{p:.1} ms")),
            None => o.push_str("<td class=n>–</td>"),
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    omitted(&mut o, keep, s.routes.len(), "routes");
    o.push_str("</section>");

    // Refusals.
    let _ = write!(
        o,
        "<section id=refusals><h2>Last refusals</h2><p class=meta>{} since start",
        s.refusals.total
    );
    if s.refusals.skipped > 0 {
        let _ = write!(o, ", {} not kept (busy)", s.refusals.skipped);
    }
    o.push_str("</p>");
    if s.refusals.recent.is_empty() {
        o.push_str("<p>None.</p>");
    } else {
        o.push_str(
            "<table><thead><tr><th>when</th><th>stage</th><th>reason</th><th>status</th>\
             <th>route</th><th>request id</th></tr></thead><tbody>",
        );
        for r in s.refusals.recent.iter().take(MAX_REFUSAL_ROWS) {
            o.push_str("<tr class=refusal>");
            td(
                &mut o,
                &format!("{} ago", ago(s.generated_unix_ms, r.at_unix_ms)),
            );
            td(&mut o, &r.stage);
            o.push_str("<td class=reason>");
            push_escaped(&mut o, &r.reason);
            o.push_str("</td>");
            td_num(&mut o, r.status);
            match &r.route {
                Some(route) => td(&mut o, route),
                None => o.push_str("<td><i>(no route)</i></td>"),
            }
            td(&mut o, r.request_id.as_deref().unwrap_or("–"));
            o.push_str("</tr>");
        }
        o.push_str("</tbody></table>");
        omitted(
            &mut o,
            MAX_REFUSAL_ROWS,
            s.refusals.recent.len(),
            "refusals",
        );
    }
    o.push_str("</section>");

    // Rate limits.
    match &s.rate_limit {
        None => not_configured(&mut o, "Rate limits", "rate_limit"),
        Some(rl) => {
            o.push_str("<section id=rate_limit><h2>Rate limits</h2><p class=meta>backend ");
            push_escaped(&mut o, &rl.backend);
            match rl.backend_up {
                Some(true) => o.push_str(" (up)"),
                Some(false) => o.push_str(" <b class=warn>(down)</b>"),
                None => {}
            }
            let _ = write!(o, " · {} backend errors</p>", rl.backend_errors);
            o.push_str(
                "<table><thead><tr><th>tier</th><th>limit</th><th>allowed</th>\
                 <th>limited</th><th>errors</th><th>limited share</th></tr></thead><tbody>",
            );
            for t in rl.tiers.iter().take(MAX_ROWS) {
                o.push_str("<tr>");
                td(&mut o, &t.tier);
                match (t.per_minute, t.burst) {
                    (Some(p), Some(b)) => td(&mut o, &format!("{p}/min, burst {b}")),
                    _ => o.push_str("<td>–</td>"),
                }
                td_num(&mut o, t.allowed);
                td_num(&mut o, t.limited);
                td_num(&mut o, t.errors);
                td_num(&mut o, pct(t.limited_share));
                o.push_str("</tr>");
            }
            o.push_str("</tbody></table>");
            omitted(&mut o, MAX_ROWS, rl.tiers.len(), "tiers");
            o.push_str("</section>");
        }
    }

    // JWKS.
    match &s.jwks {
        None => not_configured(&mut o, "JWKS", "jwks"),
        Some(j) => {
            o.push_str("<section id=jwks><h2>JWKS</h2><table><tr><th>source</th>");
            td(&mut o, &j.source);
            let _ = write!(
                o,
                "</tr><tr><th>keys</th><td>{}</td></tr><tr><th>loaded</th><td>{}</td></tr>\
                 <tr><th>age</th><td>{}</td></tr><tr><th>stale</th><td class={}>{}</td></tr>\
                 <tr><th>fetches / failed refreshes</th><td>{} / {}</td></tr><tr><th>last error</th>",
                j.keys,
                yes_no(j.loaded),
                j.age_s.map_or_else(|| "–".into(), human_s),
                if j.stale { "warn" } else { "ok" },
                yes_no(j.stale),
                j.fetches,
                j.failures,
            );
            td(&mut o, j.last_error.as_deref().unwrap_or("none"));
            o.push_str("</tr></table></section>");
        }
    }

    // Audit.
    match &s.audit {
        None => not_configured(&mut o, "Audit trail", "audit"),
        Some(a) => {
            let _ = write!(
                o,
                "<section id=audit><h2>Audit trail</h2><table>\
                 <tr><th>records</th><td>{}</td></tr><tr><th>chain head</th>",
                a.records
            );
            td(&mut o, &a.head_hash);
            let _ = write!(
                o,
                "</tr><tr><th>last checkpoint</th><td>{} records",
                a.checkpoint_size
            );
            if let Some(ts) = &a.checkpoint_ts {
                o.push_str(", ");
                push_escaped(&mut o, ts);
            }
            let _ = write!(
                o,
                "</td></tr><tr><th>writer queue</th><td>{} / {}</td></tr>\
                 <tr><th>writing</th><td class={}>{}</td></tr>",
                a.queue_depth,
                a.queue_capacity,
                if a.failing { "warn" } else { "ok" },
                if a.failing { "failing" } else { "ok" },
            );
            if let Some(e) = &a.last_error {
                o.push_str("<tr><th>last error</th>");
                td(&mut o, e);
                o.push_str("</tr>");
            }
            o.push_str("</table></section>");
        }
    }

    // Signing keys.
    match &s.signing {
        None => not_configured(&mut o, "Signing keys", "signing"),
        Some(k) => {
            o.push_str(
                "<section id=signing><h2>Signing keys</h2><table><thead><tr><th>key id</th>\
                 <th>fingerprint</th><th>status</th><th>age</th></tr></thead><tbody>",
            );
            for key in k.keys.iter().take(MAX_ROWS) {
                o.push_str("<tr>");
                td(&mut o, &key.key_id);
                td(&mut o, &key.fingerprint);
                td(&mut o, &key.status);
                td(&mut o, &human_s(key.age_s));
                o.push_str("</tr>");
            }
            o.push_str("</tbody></table>");
            omitted(&mut o, MAX_ROWS, k.keys.len(), "keys");
            o.push_str("</section>");
        }
    }

    // Revocations and connections.
    match &s.revocations {
        None => not_configured(&mut o, "Revocations", "revocations"),
        Some(r) => {
            let _ = write!(
                o,
                "<section id=revocations><h2>Revocations</h2><p>{} entries in the local snapshot.</p></section>",
                r.entries
            );
        }
    }
    let c = &s.connections;
    let _ = write!(
        o,
        "<section id=connections><h2>Connections</h2><table>\
         <tr><th>active</th><td>{}</td></tr><tr><th>accepted</th><td>{}</td></tr>\
         <tr><th>refused (max_connections)</th><td>{}</td></tr>\
         <tr><th>TLS handshake failures</th><td>{}</td></tr></table></section>",
        c.active, c.total, c.refused, c.tls_handshake_failures
    );
    o.push_str("</body></html>\n");
    o
}

/// The stylesheet (served at `/status.css`: an inline style would need `unsafe-inline`).
pub const STATUS_CSS: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f23;background:#fff}\
h1{margin:0;font-size:1.4em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
table{border-collapse:collapse}th,td{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}td{word-break:break-all}\
.warn{color:#b00020;font-weight:600}.ok{color:#1a7f37}.off{color:#777}.meta,.omit{color:#555}\
tr.warn td{background:#fff3f3}code{background:#f4f4f4;padding:0 .2em}\n";

/// The optional refresh (served at `/status.js`): reloads the page every 10 s while it
/// is visible and the box is ticked. The page is complete without it.
pub const STATUS_JS: &str = "\"use strict\";\n\
setInterval(function () {\n\
  var box = document.getElementById(\"auto\");\n\
  if (box && box.checked && !document.hidden) { location.reload(); }\n\
}, 10000);\n";

/// The page's icon (served at `/status.svg`, so the browser does not ask for a missing
/// `/favicon.ico`).
pub const STATUS_SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect x=\"1\" y=\"5\" width=\"14\" height=\"10\" fill=\"#1a7f37\"/>\
<path d=\"M1 5V1h3v2h2V1h4v2h2V1h3v4z\" fill=\"#1a7f37\"/></svg>\n";

/// Adds the security headers every status-page answer carries.
fn page_headers(r: &mut Response<Full<Bytes>>, content_type: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn page(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> crate::AdminResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    page_headers(&mut r, content_type);
    r
}

/// What the status endpoints answer once access is granted: `/` (HTML),
/// `/admin/status.json`, `/status.css`, `/status.js`, `/status.svg`. `None` for other
/// paths.
pub fn status_response(state: &AdminState, path: &str) -> Option<crate::AdminResponse> {
    match path {
        "/" => Some(page(
            StatusCode::OK,
            "text/html; charset=utf-8",
            render_html(&collect(state)),
        )),
        "/admin/status.json" => Some(page(
            StatusCode::OK,
            "application/json",
            to_json(&collect(state)),
        )),
        "/status.css" => Some(page(
            StatusCode::OK,
            "text/css; charset=utf-8",
            Bytes::from_static(STATUS_CSS.as_bytes()),
        )),
        "/status.svg" => Some(page(
            StatusCode::OK,
            "image/svg+xml",
            Bytes::from_static(STATUS_SVG.as_bytes()),
        )),
        "/status.js" => Some(page(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            Bytes::from_static(STATUS_JS.as_bytes()),
        )),
        _ => None,
    }
}

/// Whether `path` shows gateway data (and so needs the access rule); the stylesheet and
/// script hold none.
pub fn needs_access(path: &str) -> bool {
    matches!(path, "/" | "/admin/status.json")
}

/// A status source from a closure.
impl<F> StatusSource for F
where
    F: Fn(&mut Status) + Send + Sync + 'static,
{
    fn fill(&self, status: &mut Status) {
        self(status);
    }
}

/// Shorthand for the admin state's list of sources.
pub type StatusSources = Vec<Arc<dyn StatusSource>>;

/// A status with every section filled and `routes` routes, whose names and messages
/// are long and full of characters that need escaping: the worst case the size and
/// time bounds are measured on (tests and the `status` benchmark).
#[doc(hidden)]
pub fn synthetic(routes: usize) -> Status {
    let hostile = |i: usize| format!("<script>alert('{i}')</script>&\"{}", "\"<>&'".repeat(60));
    let now = 1_800_000_000_000u64;
    Status {
        generated_unix_ms: now,
        build: BuildStatus {
            version: "0.1.0".into(),
            commit: "0123456789abcdef".into(),
            branch: "main".into(),
            build_time: "2026-01-01T00:00:00Z".into(),
        },
        profile: Some("prod".into()),
        config: Some(ConfigStatus {
            digest: format!("sha256:{}", "ab".repeat(32)),
            files: 1,
            reloads_ok: 3,
            reloads_rejected: 1,
        }),
        health: HealthStatus {
            status: "degraded".into(),
            reasons: (0..1000)
                .map(|i| ReasonStatus {
                    reason: hostile(i),
                    severity: if i % 2 == 0 { "warn" } else { "info" }.into(),
                    message: hostile(i),
                })
                .collect(),
        },
        routes: (0..routes)
            .map(|i| RouteStatus {
                route: hostile(i),
                requests: (i as u64 * 7919) % 100_000,
                denied: i as u64 % 100,
                server_errors: i as u64 % 10,
                error_rate: 0.01,
                deny_rate: 0.1,
                p99_ms: Some(12.5),
            })
            .collect(),
        refusals: RefusalsStatus {
            total: 1_000_000,
            skipped: 3,
            recent: (0..MAX_REFUSALS_JSON)
                .map(|i| RefusalStatus {
                    at_unix_ms: now - i as u64 * 1000,
                    request_id: Some(hostile(i)),
                    route: Some(hostile(i)),
                    status: 401,
                    stage: "authenticate".into(),
                    reason: "missing_credentials".into(),
                })
                .collect(),
        },
        rate_limit: Some(RateLimitStatus {
            backend: "redis".into(),
            backend_up: Some(false),
            backend_errors: 4,
            tiers: (0..1000)
                .map(|i| TierStatus {
                    tier: hostile(i),
                    per_minute: Some(600),
                    burst: Some(100),
                    allowed: 90,
                    limited: 10,
                    errors: 0,
                    limited_share: 0.1,
                })
                .collect(),
        }),
        jwks: Some(JwksStatus {
            source: "url".into(),
            loaded: true,
            keys: 3,
            age_s: Some(120),
            stale: true,
            fetches: 10,
            failures: 2,
            last_error: Some(hostile(0)),
        }),
        audit: Some(AuditView {
            records: 12345,
            head_hash: "cd".repeat(32),
            checkpoint_size: 12000,
            checkpoint_ts: Some("2026-12-01T16:00:00Z".into()),
            queue_depth: 5,
            queue_capacity: 65536,
            failing: true,
            last_error: Some(hostile(1)),
        }),
        signing: Some(SigningStatus {
            active_key_id: Some("audit-2026".into()),
            keys: (0..1000)
                .map(|i| KeyStatus {
                    key_id: hostile(i),
                    fingerprint: format!("SHA256:{}", "A".repeat(43)),
                    status: "retired".into(),
                    created_unix: 1_700_000_000,
                    age_s: 86400 * 30,
                })
                .collect(),
        }),
        revocations: Some(RevocationsStatus { entries: 42 }),
        connections: ConnectionsStatus {
            active: 7,
            total: 1000,
            refused: 2,
            tls_handshake_failures: 1,
        },
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
