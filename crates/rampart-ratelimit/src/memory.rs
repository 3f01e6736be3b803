//! The in-process backend: `SHARDS` maps of `Mutex<HashMap<u64, u64>>` (key hash to
//! TAT), one lock per decision (two, taken in shard order, when the identity and tenant
//! keys live in different shards).
//!
//! Memory ceiling: each shard holds at most [`SHARD_CAP`] keys, the load hashbrown
//! reaches with 16,384 buckets, so a shard's table never grows past 16,384 buckets of
//! 16 bytes plus 16,400 control bytes (about 272 KiB). 64 shards: at most 917,504 keys
//! and about 17 MiB of tables, whatever the number of distinct callers
//! ([`CEILING_BYTES`]); with allocator slack, at most about 21.3 MiB of resident memory
//! ([`RSS_CEILING_BYTES`], checked with 1,000,000 distinct keys by
//! `tests/memory_ceiling.rs`).
//! When a shard is full, keys whose TAT is in the past (idle: their budget is whole
//! again, so forgetting them changes nothing) are dropped first; if that frees less
//! than an eighth of the shard, the keys closest to idle (lowest TAT) go too. Evicting
//! a live key can only give that caller back budget it would regain within its reset
//! time; it never refuses anyone.
//!
//! Keys are stored as a 64-bit SipHash with a per-process random key (the raw identity
//! is never kept): two callers share a budget only on a hash collision, about 2^-64 per
//! pair, and nobody outside the process can aim for one.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::gcra::{Limit, Verdict};
use crate::{Backend, BackendError, Decision, Query};

/// Number of shards (a power of two).
pub const SHARDS: usize = 64;
/// Keys per shard: 7/8 of 16,384 buckets, the most hashbrown stores without growing.
pub const SHARD_CAP: usize = 14_336;
/// Buckets a full shard's table holds.
const SHARD_BUCKETS: usize = 16_384;
/// The documented ceiling of all tables together: buckets × (16 bytes of entry + 1
/// control byte) + 16 trailing control bytes, per shard (17,409 KiB).
pub const CEILING_BYTES: usize = SHARDS * (SHARD_BUCKETS * 17 + 16);
/// The documented ceiling of resident memory the backend may add to the process:
/// the tables plus a quarter for allocator slack (the old table while one shard is
/// rebuilt, eviction scratch, fragmentation): 21,761 KiB, about 21.3 MiB.
pub const RSS_CEILING_BYTES: usize = CEILING_BYTES + CEILING_BYTES / 4;

/// Keys are already uniformly distributed hashes: the map uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, u64, BuildHasherDefault<Identity>>;

/// In-process GCRA state, bounded (see the module docs).
pub struct MemoryBackend {
    shards: Box<[Mutex<Map>]>,
    hasher: RandomState,
    origin: Instant,
    cap: usize,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::with_shard_cap(SHARD_CAP)
    }
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// A smaller per-shard cap (tests); never above [`SHARD_CAP`].
    pub fn with_shard_cap(cap: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
            hasher: RandomState::new(),
            origin: Instant::now(),
            cap: cap.clamp(8, SHARD_CAP),
        }
    }

    /// Keys held now (all shards).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buckets allocated now (all shards): what the memory ceiling bounds.
    pub fn capacity(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.capacity()).unwrap_or(0))
            .sum()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        h.finish()
    }

    fn shard_of(h: u64) -> usize {
        // Mixed so the shard index does not reuse the bits hashbrown indexes with.
        (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS
    }

    fn lock(&self, i: usize) -> Result<MutexGuard<'_, Map>, BackendError> {
        self.shards
            .get(i)
            .ok_or(BackendError::Internal)?
            .lock()
            .map_err(|_| BackendError::Internal)
    }

    /// Decides at an explicit time (nanoseconds since the backend started): tests.
    pub fn decide_at(&self, q: &Query<'_>, now: u64) -> Result<Verdict, BackendError> {
        let hi = self.hash(q.identity);
        let si = Self::shard_of(hi);
        let Some((tkey, tlimit)) = q.tenant else {
            let mut m = self.lock(si)?;
            return Ok(self.one(&mut m, hi, q.limit, now));
        };
        let ht = self.hash(tkey.as_bytes());
        let st = Self::shard_of(ht);
        if si == st {
            let mut m = self.lock(si)?;
            return Ok(self.both(&mut m, None, hi, ht, q.limit, tlimit, now));
        }
        // Always lock the lower shard first: no deadlock between opposite pairs.
        let (mut first, mut second) = if si < st {
            (self.lock(si)?, self.lock(st)?)
        } else {
            let t = self.lock(st)?;
            (self.lock(si)?, t)
        };
        Ok(self.both(&mut first, Some(&mut second), hi, ht, q.limit, tlimit, now))
    }

    fn one(&self, m: &mut Map, h: u64, limit: Limit, now: u64) -> Verdict {
        let tat = m.get(&h).copied().unwrap_or(0);
        let c = limit.check(tat, now);
        if c.allowed {
            self.store(m, h, c.new_tat, now);
        }
        Verdict::combine(&c, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn both(
        &self,
        a: &mut Map,
        b: Option<&mut Map>,
        hi: u64,
        ht: u64,
        limit: Limit,
        tlimit: Limit,
        now: u64,
    ) -> Verdict {
        let ci = limit.check(a.get(&hi).copied().unwrap_or(0), now);
        let ttat = match &b {
            Some(m) => m.get(&ht),
            None => a.get(&ht),
        };
        let ct = tlimit.check(ttat.copied().unwrap_or(0), now);
        let v = Verdict::combine(&ci, Some(&ct));
        if v.allowed {
            self.store(a, hi, ci.new_tat, now);
            match b {
                Some(m) => self.store(m, ht, ct.new_tat, now),
                None => self.store(a, ht, ct.new_tat, now),
            }
        }
        v
    }

    fn store(&self, m: &mut Map, h: u64, tat: u64, now: u64) {
        if !m.contains_key(&h) && m.len() >= self.cap {
            make_room(m, self.cap, now);
        }
        m.insert(h, tat);
    }
}

/// Drops idle keys; if that leaves the shard more than 7/8 full, drops the keys with the
/// lowest TAT down to 7/8, so the O(n) sweep runs at most once per cap/8 inserts.
///
/// The survivors move to a fresh table sized for `cap`: removing in place would leave
/// tombstones, and hashbrown answers a table full of tombstones by doubling it, which
/// would break the ceiling.
fn make_room(m: &mut Map, cap: usize, now: u64) {
    let target = cap - cap / 8;
    let live = m.values().filter(|tat| **tat > now).count();
    let threshold = if live <= target {
        now
    } else {
        let mut tats: Vec<u64> = m.values().copied().filter(|tat| *tat > now).collect();
        let drop = live - target;
        let (_, nth, _) = tats.select_nth_unstable(drop - 1);
        *nth
    };
    let mut fresh = Map::with_capacity_and_hasher(cap, BuildHasherDefault::default());
    fresh.extend(m.drain().filter(|(_, tat)| *tat > threshold));
    *m = fresh;
}

impl MemoryBackend {
    /// Decides now.
    pub fn decide_now(&self, q: &Query<'_>) -> Result<Verdict, BackendError> {
        self.decide_at(q, self.now())
    }
}

impl Backend for MemoryBackend {
    fn decide(&self, q: &Query<'_>) -> Decision {
        Decision::Ready(self.decide_now(q))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::gcra::NS_PER_S;

    fn q<'a>(id: &'a str, l: Limit, t: Option<(&'a str, Limit)>) -> Query<'a> {
        Query {
            identity: id.as_bytes(),
            limit: l,
            tenant: t,
        }
    }

    #[test]
    fn identity_and_tenant_together() {
        let m = MemoryBackend::new();
        let id = Limit::new(60, 5).unwrap();
        let tenant = Limit::new(60, 8).unwrap();
        let now = 100 * NS_PER_S;
        let mut allowed = 0;
        // Two subjects of one tenant: the tenant budget (8) runs out first.
        for i in 0..20 {
            let who = if i % 2 == 0 { "a" } else { "b" };
            if m.decide_at(&q(who, id, Some(("t", tenant))), now)
                .unwrap()
                .allowed
            {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 8);
        // A refusal by the tenant did not charge the identities: "c" of another tenant
        // still has its whole burst, and "a" has 5 - 4 = 1 left once the tenant refills.
        let v = m.decide_at(&q("c", id, Some(("u", tenant))), now).unwrap();
        assert!(v.allowed);
        assert_eq!(v.remaining, 4);
        let later = now + NS_PER_S;
        let v = m
            .decide_at(&q("a", id, Some(("t", tenant))), later)
            .unwrap();
        assert!(v.allowed);
        assert_eq!(v.remaining, 0, "a spent 4, regained 1, took 1");
    }

    #[test]
    fn identity_refusal_does_not_charge_tenant() {
        let m = MemoryBackend::new();
        let id = Limit::new(60, 2).unwrap();
        let tenant = Limit::new(60, 3).unwrap();
        let now = 10 * NS_PER_S;
        for _ in 0..10 {
            let _ = m.decide_at(&q("a", id, Some(("t", tenant))), now).unwrap();
        }
        // a used 2 of the tenant's 3; its 8 refusals cost the tenant nothing.
        assert!(
            m.decide_at(&q("b", id, Some(("t", tenant))), now)
                .unwrap()
                .allowed
        );
        assert!(
            !m.decide_at(&q("b", id, Some(("t", tenant))), now)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn flood_of_distinct_keys_stays_bounded() {
        let m = MemoryBackend::with_shard_cap(64);
        let l = Limit::new(60, 10).unwrap();
        for i in 0..100_000u32 {
            let k = format!("ip:{i}");
            assert!(m.decide_at(&q(&k, l, None), 1_000).unwrap().allowed);
        }
        assert!(m.len() <= SHARDS * 64);
        // A live key evicted under the flood was among the lowest TATs: it comes back
        // with a whole burst, never with less.
        let v = m.decide_at(&q("ip:0", l, None), 1_000).unwrap();
        assert!(v.allowed);
    }

    #[test]
    fn idle_keys_go_first() {
        let m = MemoryBackend::with_shard_cap(8);
        let l = Limit::new(60, 5).unwrap();
        // Fill with keys that are idle by t = 10 s.
        for i in 0..2000u32 {
            let _ = m.decide_at(&q(&format!("old{i}"), l, None), 0).unwrap();
        }
        // A busy key at 10 s: exhaust it.
        let now = 10 * NS_PER_S;
        for _ in 0..5 {
            assert!(m.decide_at(&q("busy", l, None), now).unwrap().allowed);
        }
        // More new keys in the same second push out the idle ones, not "busy".
        for i in 0..2000u32 {
            let _ = m.decide_at(&q(&format!("new{i}"), l, None), now).unwrap();
        }
        assert!(!m.decide_at(&q("busy", l, None), now).unwrap().allowed);
    }
}
