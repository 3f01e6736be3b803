//! AES-256-GCM throughput of envelope encryption against aws-lc-rs's raw AEAD on the same
//! buffer sizes (64 B, 1 KiB, 64 KiB): the envelope adds a header, a random nonce and one
//! allocation per call (and a wipe of the decrypted buffer),
//! and must stay within 20% of the raw seal/open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rampart_crypto::{DataKey, Keyset};

fn bench(c: &mut Criterion) {
    let mut ks = Keyset::new();
    ks.insert(DataKey::generate(1).unwrap(), true);
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    for size in [64usize, 1024, 64 * 1024] {
        let pt = vec![0x5au8; size];
        let mut g = c.benchmark_group("aes256gcm_seal");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("envelope", size), &pt, |b, pt| {
            b.iter(|| ks.encrypt(pt, b"ctx").unwrap());
        });
        g.bench_with_input(BenchmarkId::new("raw_aws_lc", size), &pt, |b, pt| {
            b.iter(|| {
                // Same work as the envelope: a random nonce, a fresh output buffer.
                let mut nonce = [0u8; NONCE_LEN];
                aws_lc_rs::rand::fill(&mut nonce).unwrap();
                let mut buf = Vec::with_capacity(pt.len() + 16);
                buf.extend_from_slice(pt);
                raw.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(b"ctx"),
                    &mut buf,
                )
                .unwrap();
                buf
            });
        });
        g.finish();
        let ct = ks.encrypt(&pt, b"ctx").unwrap();
        let mut rawct = pt.clone();
        raw.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([1u8; NONCE_LEN]),
            Aad::from(b"ctx"),
            &mut rawct,
        )
        .unwrap();
        let mut g = c.benchmark_group("aes256gcm_open");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("envelope", size), &ct, |b, ct| {
            b.iter(|| ks.decrypt(ct, b"ctx").unwrap());
        });
        g.bench_with_input(BenchmarkId::new("raw_aws_lc", size), &rawct, |b, ct| {
            b.iter(|| {
                let mut buf = ct.clone();
                let n = raw
                    .open_in_place(
                        Nonce::assume_unique_for_key([1u8; NONCE_LEN]),
                        Aad::from(b"ctx"),
                        &mut buf,
                    )
                    .unwrap()
                    .len();
                buf.truncate(n);
                buf
            });
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
