//! Signed-request verification cost: hmac-sha256 and ed25519, without and with a body
//! digest set up, a bad signature (must cost no more than a good one), and the in-memory
//! nonce store alone. The nonce store in the verifier benches always answers "fresh", so
//! one signed request can be verified repeatedly; the store is measured on its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_sig::nonce::NonceFuture;
use rampart_sig::*;

const NOW: u64 = 1_800_000_000;

struct AlwaysFresh;
impl NonceStore for AlwaysFresh {
    fn remember<'a>(&'a self, _: &'a str, _: &'a str, _: u64, _: u64) -> NonceFuture<'a> {
        Box::pin(std::future::ready(Ok(NonceOutcome::Fresh)))
    }
}

fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("in-memory stores answer at once"),
    }
}

fn signed(key: &SigningKey, keyid: &str, body: bool) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("host", "api.example.com".parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    let mut comps = vec![Component::Method, Component::TargetUri];
    if body {
        headers.insert(
            "content-digest",
            content_digest(DigestAlg::Sha256, b"{\"temp\": 21.5}")
                .parse()
                .unwrap(),
        );
        comps.push(Component::Field("content-digest".into()));
    }
    let req = RequestParts {
        method: "POST",
        scheme: "https",
        authority: "api.example.com",
        target: "/devices/d1/readings?batch=3",
        headers: &headers,
    };
    let f = sign(
        &req,
        &SignParams {
            label: "sig1",
            components: &comps,
            created: NOW,
            expires: None,
            nonce: Some("bench-nonce-0001"),
            keyid,
            include_alg: true,
        },
        key,
    )
    .unwrap();
    headers.insert("signature-input", f.input.parse().unwrap());
    headers.insert("signature", f.signature.parse().unwrap());
    headers
}

fn bench(c: &mut Criterion) {
    let seed = [7u8; 32];
    let ed = SigningKey::ed25519_seed(&seed).unwrap();
    let ed_pub: [u8; 32] = {
        use aws_lc_rs::signature::KeyPair;
        aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .unwrap()
            .public_key()
            .as_ref()
            .try_into()
            .unwrap()
    };
    let mut keys = StaticKeys::new();
    keys.insert("dev-h", DeviceKey::hmac(&[0x42; 32]).unwrap());
    keys.insert("dev-e", DeviceKey::ed25519(ed_pub));
    let v = Verifier::new(
        Arc::new(keys),
        Arc::new(AlwaysFresh),
        Policy { max_age_s: 300 },
    );

    for (alg, keyid, key) in [
        ("hmac-sha256", "dev-h", SigningKey::hmac(&[0x42; 32])),
        ("ed25519", "dev-e", ed),
    ] {
        let mut g = c.benchmark_group(format!("verify/{alg}"));
        for body in [false, true] {
            let headers = signed(&key, keyid, body);
            let req = RequestParts {
                method: "POST",
                scheme: "https",
                authority: "api.example.com",
                target: "/devices/d1/readings?batch=3",
                headers: &headers,
            };
            g.bench_function(if body { "with_digest" } else { "no_body" }, |b| {
                b.iter(|| ready(v.verify(black_box(&req), body, NOW)).unwrap());
            });
        }
        let mut headers = signed(&key, keyid, false);
        // Change the first base64 character after "sig1=:": same length, wrong signature.
        let good = headers["signature"].to_str().unwrap().to_owned();
        let (head, rest) = good.split_at("sig1=:".len());
        let swap = if rest.starts_with('A') { "B" } else { "A" };
        let bad = format!("{head}{swap}{}", &rest[1..]);
        headers.insert("signature", bad.parse().unwrap());
        let req = RequestParts {
            method: "POST",
            scheme: "https",
            authority: "api.example.com",
            target: "/devices/d1/readings?batch=3",
            headers: &headers,
        };
        g.bench_function("bad_signature", |b| {
            b.iter(|| ready(v.verify(black_box(&req), false, NOW)).unwrap_err());
        });
        g.finish();
    }

    let store = MemoryNonceStore::new(1 << 20);
    let mut n = 0u64;
    c.bench_function("nonce/memory_remember", |b| {
        b.iter(|| {
            n += 1;
            let nonce = n.to_string();
            // Expiry 300 s after a clock that advances 1 s per 1000 nonces: the store
            // stays near a steady state instead of filling up.
            let now = NOW + n / 1000;
            ready(store.remember("dev-h", &nonce, now, now + 300)).unwrap()
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
