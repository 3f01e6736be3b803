//! 1,000,000 distinct keys (a flood of rotating addresses) keep the memory backend
//! under its documented ceiling.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use rampart_ratelimit::memory::{CEILING_BYTES, RSS_CEILING_BYTES, SHARD_CAP, SHARDS};
use rampart_ratelimit::{Limit, MemoryBackend, Query};

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn million_distinct_keys_stay_under_ceiling() {
    // The documented figure: 64 shards × 16,384 buckets × 17 bytes ≈ 17 MiB.
    const { assert!(CEILING_BYTES < 18 * 1024 * 1024) };
    let m = MemoryBackend::new();
    // Worst case: one request a minute, so no key turns idle during the test and every
    // shard fills to its cap and must evict live keys.
    let l = Limit::new(1, 1).unwrap();
    let before = rss_bytes();
    let mut key = String::with_capacity(64);
    for i in 0..1_000_000u32 {
        key.clear();
        key.push_str("default\0ip\0");
        key.push_str(&std::net::Ipv6Addr::from(u128::from(i) << 16 | 0x2001 << 112).to_string());
        let v = m
            .decide_now(&Query {
                identity: key.as_bytes(),
                limit: l,
                tenant: None,
            })
            .unwrap();
        assert!(v.allowed, "a new key always has its burst");
    }
    let after = rss_bytes();
    assert!(m.len() <= SHARDS * SHARD_CAP, "keys: {}", m.len());
    assert!(
        m.capacity() <= SHARDS * SHARD_CAP,
        "capacity: {}",
        m.capacity()
    );
    let grown = after.saturating_sub(before);
    eprintln!(
        "keys held {}, capacity {}, rss growth {} KiB (tables ceiling {} KiB, resident ceiling {} KiB)",
        m.len(),
        m.capacity(),
        grown / 1024,
        CEILING_BYTES / 1024,
        RSS_CEILING_BYTES / 1024
    );
    // Tables plus allocator slack: the documented resident ceiling.
    assert!(grown <= RSS_CEILING_BYTES, "rss grew {grown} bytes");
}
