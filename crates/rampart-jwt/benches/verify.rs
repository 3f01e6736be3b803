//! Token verification cost: RS256 and ES256, with the verified-token cache (a repeated
//! token) and without it (every call checks the signature), plus a forged signature
//! (which must cost no more than a good one).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_config::Profile;
use rampart_jwt::{JwtSettings, JwtVerifier, ManualClock};
use rampart_test_support::TestKey;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn verifier(key: &TestKey, cache: bool) -> JwtVerifier {
    let mut s = JwtSettings::new(Profile::Prod, None);
    s.claims.issuer = Some("https://id.example.com/".into());
    s.claims.audience = vec!["rampart".into()];
    s.cache_entries = if cache { 10_000 } else { 0 };
    let jwks = json!({"keys": [key.jwk()]}).to_string();
    JwtVerifier::with_key_set(s, jwks.as_bytes(), Arc::new(ManualClock::new(NOW))).unwrap()
}

fn token(key: &TestKey, alg: &str) -> String {
    key.token(
        alg,
        &json!({"iss":"https://id.example.com/","aud":"rampart","sub":"alice","tenant":"t1",
                "scope":"jobs metrics","exp": NOW + 3600, "iat": NOW}),
    )
}

fn bench(c: &mut Criterion) {
    for (alg, key) in [
        ("RS256", TestKey::rsa("r1")),
        ("ES256", TestKey::es256("e1")),
    ] {
        let t = token(&key, alg);
        let mut forged = t.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let mut g = c.benchmark_group(format!("verify/{alg}"));
        let cached = verifier(&key, true);
        g.bench_function("cache_hit", |b| {
            b.iter(|| cached.verify(black_box(&t)).unwrap());
        });
        let uncached = verifier(&key, false);
        g.bench_function("no_cache", |b| {
            b.iter(|| uncached.verify(black_box(&t)).unwrap());
        });
        g.bench_function("bad_signature", |b| {
            b.iter(|| uncached.verify(black_box(&forged)).unwrap_err());
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
