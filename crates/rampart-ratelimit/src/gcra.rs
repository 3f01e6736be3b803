//! The Generic Cell Rate Algorithm in integer nanoseconds: one theoretical arrival time
//! (TAT) per key. Equivalent to a token bucket of `burst` tokens refilled continuously at
//! `per_minute / 60` tokens a second, but needs one `u64` of state and no background
//! refill. A refused request never moves the TAT, so it costs the caller nothing.

/// Nanoseconds in a second.
pub const NS_PER_S: u64 = 1_000_000_000;
const NS_PER_MIN: u64 = 60 * NS_PER_S;

/// One budget: `per_minute` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    per_minute: u64,
    burst: u64,
    /// Time one request "costs": 60 s / per_minute (rounded down, at least 1 ns).
    emission_ns: u64,
    /// How far ahead of now the TAT may run: `burst * emission_ns`.
    window_ns: u64,
}

impl Limit {
    /// `None` when either figure is zero.
    pub fn new(per_minute: u64, burst: u64) -> Option<Self> {
        if per_minute == 0 || burst == 0 {
            return None;
        }
        let emission_ns = (NS_PER_MIN / per_minute).max(1);
        Some(Self {
            per_minute,
            burst,
            emission_ns,
            window_ns: emission_ns.saturating_mul(burst),
        })
    }

    pub fn per_minute(&self) -> u64 {
        self.per_minute
    }
    pub fn burst(&self) -> u64 {
        self.burst
    }
    pub fn emission_ns(&self) -> u64 {
        self.emission_ns
    }

    /// Decides one request at `now` for a key whose TAT is `tat` (0 for a key never
    /// seen). Pure: the caller stores [`Check::new_tat`] only if it commits the request.
    pub fn check(&self, tat: u64, now: u64) -> Check {
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.emission_ns);
        let ahead = new_tat - now;
        if ahead > self.window_ns {
            Check {
                allowed: false,
                new_tat: tat,
                remaining: 0,
                retry_after_ns: ahead - self.window_ns,
                reset_ns: base - now,
            }
        } else {
            Check {
                allowed: true,
                new_tat,
                remaining: (self.window_ns - ahead) / self.emission_ns,
                retry_after_ns: 0,
                reset_ns: ahead,
            }
        }
    }
}

/// The outcome of [`Limit::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub allowed: bool,
    /// The TAT to store if the request is committed (unchanged when refused).
    pub new_tat: u64,
    /// Requests still allowed right now after this one.
    pub remaining: u64,
    /// When refused: how long until one request fits.
    pub retry_after_ns: u64,
    /// How long until the whole burst is available again.
    pub reset_ns: u64,
}

/// The verdict on identity and tenant budgets together: the request passes only if
/// both allow it, and then both are charged; otherwise neither is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub remaining: u64,
    pub retry_after_ns: u64,
    pub reset_ns: u64,
}

impl Verdict {
    /// Combines the identity check with the optional tenant check.
    pub fn combine(id: &Check, tenant: Option<&Check>) -> Self {
        let mut v = Self {
            allowed: id.allowed,
            remaining: id.remaining,
            retry_after_ns: id.retry_after_ns,
            reset_ns: id.reset_ns,
        };
        if let Some(t) = tenant {
            v.allowed &= t.allowed;
            v.remaining = v.remaining.min(t.remaining);
            v.retry_after_ns = v.retry_after_ns.max(t.retry_after_ns);
            v.reset_ns = v.reset_ns.max(t.reset_ns);
        }
        if !v.allowed {
            v.remaining = 0;
        }
        v
    }

    /// `Retry-After` in delta-seconds, rounded up (at least 1 when refused).
    pub fn retry_after_s(&self) -> u64 {
        ceil_s(self.retry_after_ns).max(u64::from(!self.allowed))
    }

    /// Seconds until the budget is whole again, rounded up.
    pub fn reset_s(&self) -> u64 {
        ceil_s(self.reset_ns)
    }
}

pub fn ceil_s(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_S)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference model: an exact token bucket kept in "nanosecond tokens" (one request
    /// costs `emission_ns`; the bucket holds `burst * emission_ns` and refills 1 per ns).
    struct Bucket {
        level: u64,
        cap: u64,
        cost: u64,
        last: u64,
    }

    impl Bucket {
        fn new(l: &Limit) -> Self {
            Self {
                level: l.emission_ns * l.burst,
                cap: l.emission_ns * l.burst,
                cost: l.emission_ns,
                last: 0,
            }
        }
        fn take(&mut self, now: u64) -> bool {
            self.level = (self.level + (now - self.last)).min(self.cap);
            self.last = now;
            if self.level >= self.cost {
                self.level -= self.cost;
                true
            } else {
                false
            }
        }
    }

    #[test]
    fn burst_then_steady() {
        let l = Limit::new(600, 100).unwrap();
        let mut tat = 0;
        let now = 5 * NS_PER_S;
        for i in 0..100 {
            let c = l.check(tat, now);
            assert!(c.allowed, "request {i}");
            assert_eq!(c.remaining, 99 - i);
            tat = c.new_tat;
        }
        let c = l.check(tat, now);
        assert!(!c.allowed);
        assert_eq!(c.new_tat, tat, "a refusal does not consume");
        assert_eq!(c.retry_after_ns, NS_PER_S / 10);
        assert_eq!(c.reset_ns, 10 * NS_PER_S);
        let c = l.check(tat, now + NS_PER_S / 10);
        assert!(c.allowed);
        assert_eq!(c.remaining, 0);
    }

    #[test]
    fn combine_refuses_if_either_refuses() {
        let l = Limit::new(60, 1).unwrap();
        let ok = l.check(0, 10 * NS_PER_S);
        let no = l.check(ok.new_tat, 10 * NS_PER_S);
        let v = Verdict::combine(&ok, Some(&no));
        assert!(!v.allowed);
        assert_eq!(v.remaining, 0);
        assert_eq!(v.retry_after_s(), 1);
        assert!(Verdict::combine(&ok, Some(&ok)).allowed);
    }

    #[test]
    fn rejects_zero() {
        assert!(Limit::new(0, 1).is_none());
        assert!(Limit::new(1, 0).is_none());
        let huge = Limit::new(100_000_000, 100_000_000).unwrap();
        let c = huge.check(u64::MAX - 5, u64::MAX - 10);
        assert!(c.allowed || c.retry_after_ns > 0);
    }

    proptest! {
        /// GCRA and the exact token bucket agree on every decision of any request
        /// sequence, and the TAT only moves on allowed requests.
        #[test]
        fn matches_token_bucket(
            per_minute in 1u64..100_000,
            burst in 1u64..200,
            gaps in proptest::collection::vec(0u64..2_000_000_000, 1..400),
        ) {
            let l = Limit::new(per_minute, burst).unwrap();
            let mut model = Bucket::new(&l);
            let mut tat = 0u64;
            let mut now = 0u64;
            for g in gaps {
                now += g;
                let c = l.check(tat, now);
                prop_assert_eq!(c.allowed, model.take(now));
                if c.allowed {
                    prop_assert!(c.new_tat > tat.max(now));
                    // Remaining equals whole tokens left in the model.
                    prop_assert_eq!(c.remaining, model.level / model.cost);
                } else {
                    prop_assert_eq!(c.new_tat, tat);
                    // After retry_after exactly one request fits, not before.
                    prop_assert!(l.check(tat, now + c.retry_after_ns).allowed);
                    prop_assert!(!l.check(tat, now + c.retry_after_ns - 1).allowed);
                }
                tat = c.new_tat;
            }
        }

        /// Sliding-log bound: in any window of length d at most burst + d / T requests
        /// are allowed (T = 60 s / per_minute).
        #[test]
        fn sliding_window_bound(
            per_minute in 1u64..10_000,
            burst in 1u64..50,
            gaps in proptest::collection::vec(0u64..500_000_000, 1..300),
        ) {
            let l = Limit::new(per_minute, burst).unwrap();
            let mut tat = 0u64;
            let mut now = 0u64;
            let mut log = Vec::new();
            for g in gaps {
                now += g;
                let c = l.check(tat, now);
                if c.allowed {
                    log.push(now);
                    tat = c.new_tat;
                }
            }
            for (i, a) in log.iter().enumerate() {
                for (j, b) in log.iter().enumerate().skip(i) {
                    let n = (j - i + 1) as u64;
                    prop_assert!(n <= burst + (b - a) / l.emission_ns());
                }
            }
        }
    }
}
