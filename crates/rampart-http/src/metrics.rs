//! Gateway metrics with lock-free fixed slots on the request path, exposed in the
//! Prometheus text format (0.0.4).
//!
//! Our own rather than `prometheus-client`: per-route counters live in arrays indexed by
//! status code, so a request updates two atomics and takes no lock or map lookup, and the
//! exposition is the classic text format that `promtool check metrics` lints cleanly.
//! Label values come from configuration (route ids, upstream names) or from fixed sets
//! (status codes, decisions): client input never becomes a label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::Decision;

/// Upper bounds of the latency histogram, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 500; // 100..=599

/// Bound on distinct route ids kept across reloads.
const MAX_ROUTES: usize = 4096;

/// Per-route counters and latency histogram.
#[derive(Debug)]
pub struct RouteStats {
    by_status: Vec<[AtomicU64; 2]>,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for RouteStats {
    fn default() -> Self {
        Self {
            by_status: (0..STATUS_SLOTS)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl RouteStats {
    pub fn record(&self, status: u16, decision: Decision, elapsed: Duration) {
        let idx = usize::from(status.saturating_sub(STATUS_MIN));
        if let Some(slot) = self.by_status.get(idx) {
            let d = usize::from(decision == Decision::Deny);
            if let Some(c) = slot.get(d) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                if let Some(c) = self.buckets.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the gateway counts. One per process, shared across reloads.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    routes: RwLock<BTreeMap<Arc<str>, Arc<RouteStats>>>,
    unmatched: Arc<RouteStats>,
    upstream_errors: Mutex<BTreeMap<(String, &'static str), u64>>,
    pub connections_active: AtomicI64,
    pub connections_total: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub config_reloads_ok: AtomicU64,
    pub config_reloads_failed: AtomicU64,
    /// Updated by the audit stage and its writer (`rampart-audit`).
    pub audit: AuditCounters,
    /// The last refusals (status page), fed by the access-log stage.
    pub refusals: crate::refusals::RefusalLog,
}

/// One route's figures for the status page, read from the same counters and histogram
/// as `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSnapshot {
    /// The route id; [`UNMATCHED`] for requests that matched no route.
    pub route: Arc<str>,
    pub requests: u64,
    /// Requests with decision `deny`.
    pub denied: u64,
    /// Responses with a 5xx status.
    pub server_errors: u64,
    /// 99th percentile of `rampart_request_duration_seconds`, interpolated inside its
    /// bucket as Prometheus' `histogram_quantile` does; `None` before the first request.
    pub p99_seconds: Option<f64>,
}

impl RouteStats {
    fn snapshot(&self, route: Arc<str>) -> RouteSnapshot {
        let mut denied = 0u64;
        let mut server_errors = 0u64;
        for (i, slot) in self.by_status.iter().enumerate() {
            let [a, d] = slot;
            let (a, d) = (a.load(Ordering::Relaxed), d.load(Ordering::Relaxed));
            denied += d;
            if (500..600).contains(&(i + usize::from(STATUS_MIN))) {
                server_errors += a + d;
            }
        }
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let requests = self.count.load(Ordering::Relaxed);
        RouteSnapshot {
            route,
            requests,
            denied,
            server_errors,
            p99_seconds: quantile(0.99, &counts, requests),
        }
    }
}

/// `histogram_quantile` over [`BUCKETS`] (per-bucket, not cumulative, `counts`; `total`
/// includes the `+Inf` bucket): linear inside the bucket, the highest finite bound when
/// the rank falls in `+Inf`.
pub fn quantile(q: f64, counts: &[u64], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut cum = 0u64;
    let mut lower = 0.0;
    for (b, c) in BUCKETS.iter().zip(counts) {
        let before = cum;
        cum += c;
        if cum as f64 >= rank && *c > 0 {
            let into = (rank - before as f64) / *c as f64;
            return Some(lower + (b - lower) * into.clamp(0.0, 1.0));
        }
        lower = *b;
    }
    Some(lower)
}

/// Audit-trail counters (all zero when `[audit]` is not configured).
#[derive(Debug, Default)]
pub struct AuditCounters {
    /// Records in the file.
    pub written: AtomicU64,
    /// Records that could not be made durable (write error, queue full, timeout).
    pub failed: AtomicU64,
    /// Responses replaced by 503 `audit_unavailable` (`on_failure = "deny"`).
    pub denied: AtomicU64,
    /// Responses served without a record (`on_failure = "allow"`).
    pub unaudited: AtomicU64,
    /// Signed checkpoints published.
    pub checkpoints: AtomicU64,
    /// `fdatasync` failures (records acknowledged but maybe not on disk).
    pub fsync_errors: AtomicU64,
}

impl AuditCounters {
    fn encode(&self, out: &mut String) {
        header(
            out,
            "rampart_audit_records_total",
            "counter",
            "Audit records, by result (written: in the file; failed: could not be made durable).",
        );
        let _ = writeln!(
            out,
            "rampart_audit_records_total{{result=\"written\"}} {}\nrampart_audit_records_total{{result=\"failed\"}} {}",
            self.written.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        );
        counter(
            out,
            "rampart_audit_denied_total",
            "Responses replaced by 503 because their audit record could not be written (on_failure = deny).",
            self.denied.load(Ordering::Relaxed),
        );
        counter(
            out,
            "rampart_audit_unaudited_total",
            "Responses served without an audit record (on_failure = allow).",
            self.unaudited.load(Ordering::Relaxed),
        );
        counter(
            out,
            "rampart_audit_checkpoints_total",
            "Signed audit checkpoints published.",
            self.checkpoints.load(Ordering::Relaxed),
        );
        counter(
            out,
            "rampart_audit_fsync_errors_total",
            "Audit segment fdatasync failures.",
            self.fsync_errors.load(Ordering::Relaxed),
        );
    }
}

/// The route label used for requests that matched no route.
pub const UNMATCHED: &str = "";

impl GatewayMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Stats slot for a route id (created on first use, kept across reloads).
    pub fn route_stats(&self, id: &Arc<str>) -> Arc<RouteStats> {
        if let Ok(map) = self.routes.read()
            && let Some(s) = map.get(id)
        {
            return Arc::clone(s);
        }
        let Ok(mut map) = self.routes.write() else {
            return Arc::clone(&self.unmatched);
        };
        if map.len() >= MAX_ROUTES && !map.contains_key(id) {
            return Arc::clone(&self.unmatched);
        }
        Arc::clone(map.entry(Arc::clone(id)).or_default())
    }

    /// Every route's figures (routes in id order, then unmatched requests).
    pub fn snapshot(&self) -> Vec<RouteSnapshot> {
        let routes: Vec<(Arc<str>, Arc<RouteStats>)> = self
            .routes
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (Arc::clone(k), Arc::clone(v)))
                    .collect()
            })
            .unwrap_or_default();
        let mut out: Vec<RouteSnapshot> =
            routes.into_iter().map(|(id, s)| s.snapshot(id)).collect();
        out.push(self.unmatched.snapshot(Arc::from(UNMATCHED)));
        out
    }

    pub fn unmatched(&self) -> &Arc<RouteStats> {
        &self.unmatched
    }

    pub fn upstream_error(&self, upstream: &str, kind: &'static str) {
        if let Ok(mut m) = self.upstream_errors.lock() {
            // Upstream names come from configuration; bounded like routes.
            if m.len() < MAX_ROUTES || m.contains_key(&(upstream.to_owned(), kind)) {
                *m.entry((upstream.to_owned(), kind)).or_insert(0) += 1;
            }
        }
    }

    /// Appends the Prometheus text exposition of these metrics.
    pub fn encode(&self, out: &mut String) {
        let routes: Vec<(Arc<str>, Arc<RouteStats>)> = self
            .routes
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (Arc::clone(k), Arc::clone(v)))
                    .collect()
            })
            .unwrap_or_default();
        let all = routes
            .iter()
            .map(|(k, v)| (&**k, v))
            .chain(std::iter::once((UNMATCHED, &self.unmatched)));
        let all: Vec<(&str, &Arc<RouteStats>)> = all.collect();

        header(
            out,
            "rampart_requests_total",
            "counter",
            "Requests handled, by route, status and decision.",
        );
        for (route, s) in &all {
            for (i, slot) in s.by_status.iter().enumerate() {
                for (d, c) in slot.iter().enumerate() {
                    let v = c.load(Ordering::Relaxed);
                    if v == 0 {
                        continue;
                    }
                    let decision = if d == 0 { "allow" } else { "deny" };
                    out.push_str("rampart_requests_total{route=");
                    label(out, route);
                    let _ = writeln!(
                        out,
                        ",status=\"{}\",decision=\"{decision}\"}} {v}",
                        i + usize::from(STATUS_MIN)
                    );
                }
            }
        }

        header(
            out,
            "rampart_request_duration_seconds",
            "histogram",
            "Time from request head to response head, by route.",
        );
        for (route, s) in &all {
            let count = s.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let mut cum = 0u64;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += s.buckets.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
                out.push_str("rampart_request_duration_seconds_bucket{route=");
                label(out, route);
                let _ = writeln!(out, ",le=\"{b}\"}} {cum}");
            }
            out.push_str("rampart_request_duration_seconds_bucket{route=");
            label(out, route);
            let _ = writeln!(out, ",le=\"+Inf\"}} {count}");
            out.push_str("rampart_request_duration_seconds_sum{route=");
            label(out, route);
            let sum = s.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "}} {sum}");
            out.push_str("rampart_request_duration_seconds_count{route=");
            label(out, route);
            let _ = writeln!(out, "}} {count}");
        }

        header(
            out,
            "rampart_upstream_errors_total",
            "counter",
            "Upstream failures, by upstream and kind (connect, timeout, protocol).",
        );
        if let Ok(m) = self.upstream_errors.lock() {
            for ((up, kind), v) in m.iter() {
                out.push_str("rampart_upstream_errors_total{upstream=");
                label(out, up);
                let _ = writeln!(out, ",kind=\"{kind}\"}} {v}");
            }
        }

        gauge(
            out,
            "rampart_connections_active",
            "Client connections currently open.",
            self.connections_active.load(Ordering::Relaxed),
        );
        counter(
            out,
            "rampart_connections_total",
            "Client connections accepted.",
            self.connections_total.load(Ordering::Relaxed),
        );
        counter(
            out,
            "rampart_connections_rejected_total",
            "Client connections closed at accept because server.max_connections was reached.",
            self.connections_rejected.load(Ordering::Relaxed),
        );
        counter(
            out,
            "rampart_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out.",
            self.tls_handshake_failures.load(Ordering::Relaxed),
        );
        header(
            out,
            "rampart_config_reloads_total",
            "counter",
            "Configuration reloads, by result.",
        );
        let _ = writeln!(
            out,
            "rampart_config_reloads_total{{result=\"ok\"}} {}\nrampart_config_reloads_total{{result=\"rejected\"}} {}",
            self.config_reloads_ok.load(Ordering::Relaxed),
            self.config_reloads_failed.load(Ordering::Relaxed)
        );
        self.audit.encode(out);
    }
}

/// Writes `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

pub fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

/// Writes a quoted, escaped label value.
pub fn label(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_encodes() {
        let m = GatewayMetrics::new();
        let id: Arc<str> = Arc::from("r\"1");
        let s = m.route_stats(&id);
        s.record(200, Decision::Allow, Duration::from_micros(700));
        s.record(404, Decision::Deny, Duration::from_millis(20));
        m.upstream_error("app", "connect");
        let mut out = String::new();
        m.encode(&mut out);
        assert!(
            out.contains(r#"rampart_requests_total{route="r\"1",status="200",decision="allow"} 1"#)
        );
        assert!(
            out.contains(r#"rampart_requests_total{route="r\"1",status="404",decision="deny"} 1"#)
        );
        assert!(
            out.contains(r#"rampart_request_duration_seconds_bucket{route="r\"1",le="0.001"} 1"#)
        );
        assert!(out.contains(r#"rampart_request_duration_seconds_count{route="r\"1"} 2"#));
        assert!(out.contains(r#"rampart_upstream_errors_total{upstream="app",kind="connect"} 1"#));
        let snap = m.snapshot();
        let r = snap.iter().find(|r| &*r.route == "r\"1").unwrap();
        assert_eq!((r.requests, r.denied, r.server_errors), (2, 1, 0));
        // Rank 1.98 of 2 falls in the (0.01, 0.025] bucket holding the 20 ms request.
        let p99 = r.p99_seconds.unwrap();
        assert!(p99 > 0.01 && p99 <= 0.025, "{p99}");
        assert_eq!(snap.last().unwrap().route.as_ref(), UNMATCHED);
        assert_eq!(snap.last().unwrap().p99_seconds, None);
    }

    #[test]
    fn quantile_matches_histogram_quantile() {
        let mut counts = [0u64; BUCKETS.len()];
        counts[0] = 50; // <= 0.5 ms
        counts[3] = 50; // (2.5, 5] ms
        // Rank 99 of 100: 49 into the 50 of (0.0025, 0.005] -> 0.0025 + 0.0025 * 0.98.
        let q = quantile(0.99, &counts, 100).unwrap();
        assert!((q - 0.00495).abs() < 1e-9, "{q}");
        // Everything past the last bound: the last finite bound.
        assert_eq!(quantile(0.99, &[0; BUCKETS.len()], 3), Some(10.0));
        assert_eq!(quantile(0.5, &counts, 0), None);
    }
}
