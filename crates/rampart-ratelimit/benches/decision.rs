//! Cost of one memory-backend decision (identity only, and identity + tenant).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_ratelimit::{Limit, MemoryBackend, Query};

fn decision(c: &mut Criterion) {
    let m = MemoryBackend::new();
    let l = Limit::new(100_000_000, 100_000_000).unwrap();
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("default\0id\0jwt\0user-{i}"))
        .collect();
    let mut i = 0usize;
    c.bench_function("memory_decide_identity", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let q = Query {
                identity: &keys[i],
                limit: l,
                tenant: None,
            };
            std::hint::black_box(m.decide_now(&q).unwrap())
        })
    });
    c.bench_function("memory_decide_identity_tenant", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let q = Query {
                identity: &keys[i],
                limit: l,
                tenant: Some(("tenant\0acme", l)),
            };
            std::hint::black_box(m.decide_now(&q).unwrap())
        })
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
