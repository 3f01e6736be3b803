//! Cost of one decision: memory backend (identity only, identity + tenant), and Redis
//! backend (one script round trip on loopback) against a `redis-server` this benchmark
//! starts on a free port (skipped, with a note, when `redis-server` is not installed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use rampart_test_support::OwnRedis;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_config::secret::Secret;
use rampart_ratelimit::redis::Settings;
use rampart_ratelimit::{
    Backend, Decision, Limit, MemoryBackend, Query, RateLimitMetrics, RedisBackend,
};

fn memory(c: &mut Criterion) {
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
                identity: keys[i].as_bytes(),
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
                identity: keys[i].as_bytes(),
                limit: l,
                tenant: Some(("tenant\0acme", l)),
            };
            std::hint::black_box(m.decide_now(&q).unwrap())
        })
    });
}

fn redis(c: &mut Criterion) {
    let Some(server) = OwnRedis::try_start() else {
        eprintln!("redis-server not available: Redis benchmarks skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = Secret::new(server.url());
    let settings = Settings {
        timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    let r = rt.block_on(async {
        RedisBackend::new(&url, settings, Arc::new(RateLimitMetrics::default())).unwrap()
    });
    let l = Limit::new(100_000_000, 100_000_000).unwrap();
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("default\0id\0jwt\0user-{i}"))
        .collect();
    let mut i = 0usize;
    for (name, tenant) in [
        ("redis_decide_identity", None),
        ("redis_decide_identity_tenant", Some(("tenant\0acme", l))),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let q = Query {
                    identity: keys[i].as_bytes(),
                    limit: l,
                    tenant,
                };
                let Decision::Pending(f) = r.decide(&q) else {
                    panic!("Redis decides remotely")
                };
                std::hint::black_box(rt.block_on(f).unwrap())
            })
        });
    }
    // Throughput with 64 decisions in flight (what a busy gateway sees): one multiplexed
    // pool pipelines them.
    c.bench_function("redis_decide_identity_64_in_flight", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..64)
                .map(|_| {
                    i = (i + 1) % keys.len();
                    let q = Query {
                        identity: keys[i].as_bytes(),
                        limit: l,
                        tenant: None,
                    };
                    match r.decide(&q) {
                        Decision::Pending(f) => rt.spawn(f),
                        Decision::Ready(_) => panic!("Redis decides remotely"),
                    }
                })
                .collect();
            rt.block_on(async {
                for f in futs {
                    std::hint::black_box(f.await.unwrap().unwrap());
                }
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = memory, redis
}
criterion_main!(benches);
