//! `rampart_ratelimit_decisions_total{tier,decision}`. Tier names come from the
//! configuration and `decision` from a fixed set, so the series count is bounded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
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
    /// Decisions the backend could not make (Redis unreachable, timed out, refused).
    backend_errors: AtomicU64,
    /// 0: no remote backend; 1: up; 2: down.
    backend_up: AtomicU8,
}

impl RateLimitMetrics {
    /// The counters of `tier` (created on first use).
    pub fn tier(&self, tier: &str) -> Arc<TierCounters> {
        match self.tiers.lock() {
            Ok(mut m) => Arc::clone(m.entry(tier.to_owned()).or_default()),
            Err(_) => Arc::default(),
        }
    }

    /// One more decision the backend could not make.
    pub fn backend_error(&self) {
        self.backend_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Decisions the backend could not make so far.
    pub fn backend_errors(&self) -> u64 {
        self.backend_errors.load(Ordering::Relaxed)
    }

    /// Whether the remote backend answers (`None`: no remote backend).
    pub fn set_backend_up(&self, up: Option<bool>) {
        let v = match up {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        self.backend_up.store(v, Ordering::Relaxed);
    }

    /// Every tier's counters, indexed like [`DECISIONS`] (status page).
    pub fn snapshot(&self) -> Vec<(String, [u64; 3])> {
        self.tiers
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(t, c)| {
                        let [a, d, e] = &**c;
                        (
                            t.clone(),
                            [
                                a.load(Ordering::Relaxed),
                                d.load(Ordering::Relaxed),
                                e.load(Ordering::Relaxed),
                            ],
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the remote backend answered the last attempt (`None`: no remote backend).
    pub fn backend_up(&self) -> Option<bool> {
        match self.backend_up.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
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
        if let Ok(m) = self.tiers.lock() {
            encode_tiers(&m, out);
        }
        header(
            out,
            "rampart_ratelimit_backend_errors_total",
            "counter",
            "Rate limit decisions the backend (Redis) could not make; on_backend_error applied.",
        );
        out.push_str("rampart_ratelimit_backend_errors_total ");
        out.push_str(itoa::Buffer::new().format(self.backend_errors.load(Ordering::Relaxed)));
        out.push('\n');
        let up = self.backend_up.load(Ordering::Relaxed);
        if up != 0 {
            header(
                out,
                "rampart_ratelimit_backend_up",
                "gauge",
                "Whether the rate limit backend (Redis) answered the last attempt.",
            );
            out.push_str("rampart_ratelimit_backend_up{backend=\"redis\"} ");
            out.push_str(if up == 1 { "1\n" } else { "0\n" });
        }
    }
}

fn encode_tiers(m: &BTreeMap<String, Arc<TierCounters>>, out: &mut String) {
    for (tier, counters) in m {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_every_tier_with_its_counters() {
        let m = RateLimitMetrics::default();
        assert!(m.snapshot().is_empty());
        assert_eq!(m.backend_up(), None);
        let heavy = m.tier("heavy");
        heavy[0].fetch_add(3, Ordering::Relaxed);
        heavy[1].fetch_add(1, Ordering::Relaxed);
        m.tier("default")[2].fetch_add(2, Ordering::Relaxed);
        m.set_backend_up(Some(false));
        assert_eq!(
            m.snapshot(),
            vec![
                ("default".to_owned(), [0, 0, 2]),
                ("heavy".to_owned(), [3, 1, 0])
            ]
        );
        assert_eq!(m.backend_up(), Some(false));
        m.set_backend_up(Some(true));
        assert_eq!(m.backend_up(), Some(true));
    }
}
