//! Envelope encryption against aws-lc-rs's raw AES-256-GCM, measured to survive a busy
//! machine: the four loops (envelope/raw × seal/open) run interleaved, many short rounds
//! each, and the fastest round counts (other processes only ever add time). The same
//! work as `benches/aead.rs`; use it when criterion's figures swing with the load.
//!
//! `CARGO_PROFILE_BENCH_LTO=false cargo run --profile bench -p rampart-crypto --example aead_overhead`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rampart_crypto::{DataKey, Keyset};

/// Nanoseconds per call of the fastest of `rounds` rounds of `iters` calls.
fn fastest(rounds: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn main() {
    let mut ks = Keyset::new();
    ks.insert(DataKey::generate(1).unwrap(), true);
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    println!("size     seal: envelope / raw           open: envelope / raw");
    for size in [64usize, 1024, 64 * 1024] {
        let iters = if size > 4096 { 50 } else { 2000 };
        let pt = vec![0x5au8; size];
        let ct = ks.encrypt(&pt, b"ctx").unwrap();
        let mut rawct = pt.clone();
        raw.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([1u8; NONCE_LEN]),
            Aad::from(b"ctx"),
            &mut rawct,
        )
        .unwrap();
        let mut best = [f64::MAX; 4];
        for _ in 0..40 {
            let t = [
                fastest(5, iters, || {
                    black_box(ks.encrypt(black_box(&pt), b"ctx").unwrap());
                }),
                fastest(5, iters, || {
                    let mut nonce = [0u8; NONCE_LEN];
                    aws_lc_rs::rand::fill(&mut nonce).unwrap();
                    let mut buf = Vec::with_capacity(pt.len() + 16);
                    buf.extend_from_slice(black_box(&pt));
                    raw.seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(b"ctx"),
                        &mut buf,
                    )
                    .unwrap();
                    black_box(buf);
                }),
                fastest(5, iters, || {
                    black_box(ks.decrypt(black_box(&ct), b"ctx").unwrap());
                }),
                fastest(5, iters, || {
                    let mut buf = black_box(&rawct).clone();
                    let n = raw
                        .open_in_place(
                            Nonce::assume_unique_for_key([1u8; NONCE_LEN]),
                            Aad::from(b"ctx"),
                            &mut buf,
                        )
                        .unwrap()
                        .len();
                    buf.truncate(n);
                    black_box(buf);
                }),
            ];
            for (b, t) in best.iter_mut().zip(t) {
                *b = b.min(t);
            }
        }
        let [se, sr, oe, or] = best;
        println!(
            "{size:>6} B  {se:8.1} / {sr:8.1} ns ({:+5.1}%)   {oe:8.1} / {or:8.1} ns ({:+5.1}%)",
            (se / sr - 1.0) * 100.0,
            (oe / or - 1.0) * 100.0
        );
    }
}
