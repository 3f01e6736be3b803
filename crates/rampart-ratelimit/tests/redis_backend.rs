//! The Redis backend against a real `redis-server` this test starts on a free port:
//! decisions, the tenant budget, key names and expiry, the `NOSCRIPT` fallback, and a
//! Redis that stops answering (timeout, health reason) and comes back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_config::secret::Secret;
use rampart_ratelimit::redis::{Keys, Settings};
use rampart_ratelimit::{Backend, Decision, Limit, Query, RateLimitMetrics, RedisBackend, Verdict};
use rampart_test_support::OwnRedis;

fn backend(port: u16, timeout: Duration) -> RedisBackend {
    let url = Secret::new(format!("redis://127.0.0.1:{port}"));
    let settings = Settings {
        timeout,
        reconnect_backoff: Duration::from_millis(50),
        probe_every: Duration::from_millis(100),
        ..Settings::default()
    };
    RedisBackend::new(&url, settings, Arc::new(RateLimitMetrics::default())).unwrap()
}

async fn decide(b: &RedisBackend, q: &Query<'_>) -> Option<Verdict> {
    match b.decide(q) {
        Decision::Pending(f) => f.await.ok(),
        Decision::Ready(_) => panic!("Redis decides remotely"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_tenant_budget_and_key_names() {
    let redis = OwnRedis::start();
    let b = backend(redis.port(), Duration::from_secs(2));
    // 60 a minute, burst 3.
    let l = Limit::new(60, 3).unwrap();
    let q = Query {
        identity: b"default\0ip\0\x7f\0\0\x01",
        limit: l,
        tenant: None,
    };
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let v = decide(&b, &q).await.unwrap();
        assert!(v.allowed);
        remaining.push(v.remaining);
    }
    assert_eq!(remaining, [2, 1, 0]);
    let refused = decide(&b, &q).await.unwrap();
    assert!(!refused.allowed);
    assert!(refused.retry_after_s() >= 1, "{refused:?}");
    assert_eq!(b.decisions(), 4);

    // The key has the pinned name and expires once the budget is whole again (≤ 3 s).
    let key = String::from_utf8(Keys::of(&q).identity().to_vec()).unwrap();
    assert!(key.starts_with("rampart:rl:{i:"), "{key}");
    let pttl = redis.cmd(&format!("PTTL {key}"));
    let pttl: i64 = pttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(pttl > 0 && pttl <= 3_001, "{pttl}");

    // Two subjects of one tenant share its budget (burst 2); a refusal by the tenant
    // charges neither budget.
    let big = Limit::new(6000, 100).unwrap();
    let tenant = Some(("tenant\0acme", Limit::new(60, 2).unwrap()));
    let alice = Query {
        identity: b"default\0id\0jwt\0alice",
        limit: big,
        tenant,
    };
    let bob = Query {
        identity: b"default\0id\0jwt\0bob",
        ..alice
    };
    assert!(decide(&b, &alice).await.unwrap().allowed);
    let second = decide(&b, &bob).await.unwrap();
    assert!(second.allowed);
    assert_eq!(second.remaining, 0, "the tenant's budget binds: {second:?}");
    let tk = Keys::of(&alice);
    let alice_key = std::str::from_utf8(tk.identity()).unwrap();
    let tenant_key = std::str::from_utf8(tk.tenant().unwrap()).unwrap();
    let before = redis.cmd(&format!("GET {alice_key}"));
    assert!(before.starts_with('$'), "{before}");
    let third = decide(&b, &alice).await.unwrap();
    assert!(!third.allowed, "{third:?}");
    // The refusal charged neither budget.
    assert_eq!(redis.cmd(&format!("GET {alice_key}")), before);
    let keys = redis.cmd("KEYS rampart:rl:*");
    assert!(
        keys.contains(tenant_key) && keys.contains(alice_key),
        "{keys}"
    );
    assert!(!keys.contains("alice") && !keys.contains("acme"), "{keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noscript_falls_back_to_the_whole_script() {
    let redis = OwnRedis::start();
    let b = backend(redis.port(), Duration::from_secs(2));
    let q = Query {
        identity: b"default\0id\0jwt\0carol",
        limit: Limit::new(60, 10).unwrap(),
        tenant: None,
    };
    assert_eq!(decide(&b, &q).await.unwrap().remaining, 9);
    // Redis forgets its scripts (as after a restart): EVALSHA answers NOSCRIPT once.
    assert!(redis.cmd("SCRIPT FLUSH").starts_with("+OK"));
    assert_eq!(decide(&b, &q).await.unwrap().remaining, 8);
    assert_eq!(decide(&b, &q).await.unwrap().remaining, 7);
    assert!(b.is_up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_times_out_and_recovery_follows() {
    let redis = OwnRedis::start();
    let timeout = Duration::from_millis(200);
    let b = backend(redis.port(), timeout);
    let q = Query {
        identity: b"default\0id\0jwt\0dave",
        limit: Limit::new(60, 10).unwrap(),
        tenant: None,
    };
    assert!(decide(&b, &q).await.unwrap().allowed);
    redis.pause();
    for _ in 0..6 {
        let start = Instant::now();
        assert!(decide(&b, &q).await.is_none());
        // Bounded by the per-call timeout (connecting included), with slack for a loaded
        // machine.
        assert!(start.elapsed() < timeout * 5, "{:?}", start.elapsed());
    }
    assert!(!b.is_up());
    let mut reasons = Vec::new();
    b.reasons(&mut reasons);
    assert_eq!(reasons.len(), 1);
    let text = format!("{reasons:?}");
    assert!(text.contains("cannot decide"), "{text}");
    assert!(
        !text.contains(&redis.port().to_string()),
        "no URL in the reason: {text}"
    );

    redis.resume();
    // The probe notices by itself (no decision needed), then decisions resume.
    let end = Instant::now() + Duration::from_secs(15);
    while !b.is_up() {
        assert!(Instant::now() < end, "the backend did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = decide(&b, &q).await.unwrap();
    assert!(v.allowed, "{v:?}");
    let mut reasons = Vec::new();
    b.reasons(&mut reasons);
    assert!(reasons.is_empty());
}
