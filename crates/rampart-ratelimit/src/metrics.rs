//! `rampart_ratelimit_decisions_total{tier,decision}`. Tier names come from the
//! configuration and `decision` from a fixed set, so the series count is bounded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rampart_http::health::MetricsSource;
use rampart_http::metrics::{header, label};

/// The values of the `decision` label, in counter order.
pub const DECISIONS: [&str; 3] = ["allow", "deny", "error"];

/// One tier's counters, indexed like [`DECISIONS`].
pub type TierCounters = [AtomicU64; 3];

/// Decision counters, shared across reloads.
#[derive(Debug, Default)]
pub struct RateLimitMetrics {
    /// Looked up when a pipeline is built, never per request.
    tiers: Mutex<BTreeMap<String, Arc<TierCounters>>>,
}

impl RateLimitMetrics {
    /// The counters of `tier` (created on first use).
    pub fn tier(&self, tier: &str) -> Arc<TierCounters> {
        match self.tiers.lock() {
            Ok(mut m) => Arc::clone(m.entry(tier.to_owned()).or_default()),
            Err(_) => Arc::default(),
        }
    }

    /// The count for `(tier, decision)` (tests, status page).
    pub fn get(&self, tier: &str, decision: &str) -> u64 {
        let i = DECISIONS.iter().position(|d| *d == decision);
        self.tiers
            .lock()
            .ok()
            .and_then(|m| {
                let c = m.get(tier)?;
                Some(c.get(i?)?.load(Ordering::Relaxed))
            })
            .unwrap_or(0)
    }
}

impl MetricsSource for RateLimitMetrics {
    fn encode(&self, out: &mut String) {
        header(
            out,
            "rampart_ratelimit_decisions_total",
            "counter",
            "Rate limit decisions, by tier and decision (allow, deny, error).",
        );
        let Ok(m) = self.tiers.lock() else {
            return;
        };
        for (tier, counters) in m.iter() {
            for (d, c) in DECISIONS.iter().zip(counters.iter()) {
                out.push_str("rampart_ratelimit_decisions_total{tier=");
                label(out, tier);
                out.push_str(",decision=");
                label(out, d);
                out.push_str("} ");
                out.push_str(itoa::Buffer::new().format(c.load(Ordering::Relaxed)));
                out.push('\n');
            }
        }
    }
}
