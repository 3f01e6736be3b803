//! `rampart_auth_failures_total{method,reason}` and `rampart_auth_successes_total{method}`.
//!
//! Both labels are fixed codes chosen by the stage and the verifiers (`&'static str`),
//! never client input, so the series count is bounded by the code.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rampart_http::health::MetricsSource;
use rampart_http::metrics::{header, label};

const METHODS: [&str; 7] = [
    "jwt",
    "api_key",
    "mtls",
    "signature",
    "proxy",
    "none",
    "other",
];

/// Authentication counters, shared across reloads.
#[derive(Debug, Default)]
pub struct AuthMetrics {
    successes: [AtomicU64; METHODS.len()],
    /// Failures are the rare path: a small lock is fine there.
    failures: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

fn slot(method: &str) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1)
}

impl AuthMetrics {
    pub fn success(&self, method: &str) {
        if let Some(c) = self.successes.get(slot(method)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn failure(&self, method: &'static str, reason: &'static str) {
        if let Ok(mut m) = self.failures.lock() {
            *m.entry((method, reason)).or_insert(0) += 1;
        }
    }

    /// Failures so far for `(method, reason)` (tests, status page).
    pub fn failures(&self, method: &str, reason: &str) -> u64 {
        self.failures
            .lock()
            .ok()
            .and_then(|m| {
                m.iter()
                    .find(|((a, b), _)| *a == method && *b == reason)
                    .map(|(_, n)| *n)
            })
            .unwrap_or(0)
    }
}

impl MetricsSource for AuthMetrics {
    fn encode(&self, out: &mut String) {
        header(
            out,
            "rampart_auth_successes_total",
            "counter",
            "Requests authenticated, by method.",
        );
        for (m, c) in METHODS.iter().zip(self.successes.iter()) {
            out.push_str("rampart_auth_successes_total{method=");
            label(out, m);
            out.push_str("} ");
            out.push_str(itoa::Buffer::new().format(c.load(Ordering::Relaxed)));
            out.push('\n');
        }
        header(
            out,
            "rampart_auth_failures_total",
            "counter",
            "Requests refused by authentication, by method and reason.",
        );
        if let Ok(m) = self.failures.lock() {
            for ((method, reason), n) in m.iter() {
                out.push_str("rampart_auth_failures_total{method=");
                label(out, method);
                out.push_str(",reason=");
                label(out, reason);
                out.push_str("} ");
                out.push_str(itoa::Buffer::new().format(*n));
                out.push('\n');
            }
        }
    }
}
