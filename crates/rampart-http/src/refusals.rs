//! The last refusals, for the operator status page: a fixed-size ring the access-log
//! stage feeds with every denied request (stage, reason code, status, route id, request
//! id and time).
//!
//! Guards against: the ring growing or stalling the request path under a flood of
//! refusals (fixed capacity; a writer that finds the lock taken skips the entry and
//! counts it instead of waiting), and secrets or client-chosen text reaching the page
//! (no path, query, header or credential is kept; the request id is cut to
//! [`MAX_REQUEST_ID`] bytes of visible ASCII; stage and reason are fixed codes; the route
//! id comes from configuration). Trusts: the pipeline's `Outcome` and `RefusedAt`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries kept.
pub const REFUSAL_CAPACITY: usize = 256;
/// Longest request id kept (minted ids are 32 characters; a trusted proxy's may be longer).
pub const MAX_REQUEST_ID: usize = 64;

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    pub request_id: Option<String>,
    /// `None`: no route matched.
    pub route: Option<Arc<str>>,
    pub status: u16,
    /// The pipeline stage that refused (`authenticate`, `rate_limit`, …).
    pub stage: &'static str,
    /// The fixed reason code the access log and metrics carry.
    pub reason: &'static str,
}

/// The bounded ring of recent refusals, shared across reloads.
#[derive(Debug, Default)]
pub struct RefusalLog {
    ring: Mutex<VecDeque<Refusal>>,
    total: AtomicU64,
    skipped: AtomicU64,
}

/// Keeps at most [`MAX_REQUEST_ID`] bytes of visible ASCII; anything else is replaced.
pub fn clean_request_id(id: &str) -> String {
    id.bytes()
        .take(MAX_REQUEST_ID)
        .map(|b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

impl RefusalLog {
    /// Records one refusal without waiting: under contention the entry is skipped
    /// (and counted), never queued.
    pub fn record(&self, r: Refusal) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let Ok(mut ring) = self.ring.try_lock() else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if ring.len() >= REFUSAL_CAPACITY {
            ring.pop_front();
        }
        ring.push_back(r);
    }

    /// Up to `n` most recent refusals, newest first.
    pub fn recent(&self, n: usize) -> Vec<Refusal> {
        match self.ring.lock() {
            Ok(ring) => ring.iter().rev().take(n).cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Refusals seen since start (kept in the ring or not).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Refusals not kept because the ring was busy.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refusal(i: u64) -> Refusal {
        Refusal {
            at_unix_ms: i,
            request_id: Some(format!("id-{i}")),
            route: Some(Arc::from("r")),
            status: 401,
            stage: "authenticate",
            reason: "missing_credentials",
        }
    }

    #[test]
    fn ring_is_bounded_and_newest_first() {
        let log = RefusalLog::default();
        for i in 0..(REFUSAL_CAPACITY as u64 + 10) {
            log.record(refusal(i));
        }
        let all = log.recent(usize::MAX);
        assert_eq!(all.len(), REFUSAL_CAPACITY);
        assert_eq!(all[0].at_unix_ms, REFUSAL_CAPACITY as u64 + 9);
        assert_eq!(all.last().unwrap().at_unix_ms, 10);
        assert_eq!(log.total(), REFUSAL_CAPACITY as u64 + 10);
        assert_eq!(log.recent(3).len(), 3);
    }

    #[test]
    fn busy_ring_skips_instead_of_waiting() {
        let log = RefusalLog::default();
        let held = log.ring.lock().unwrap();
        log.record(refusal(1));
        drop(held);
        assert_eq!(log.skipped(), 1);
        assert_eq!(log.total(), 1);
        assert!(log.recent(10).is_empty());
    }

    proptest! {
        #[test]
        fn request_ids_are_short_visible_ascii(id in ".{0,200}") {
            let c = clean_request_id(&id);
            prop_assert!(c.len() <= MAX_REQUEST_ID);
            prop_assert!(c.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
}
