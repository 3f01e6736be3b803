//! The request-path lookups: `ApiKeyCache::verify` (1,000 keys loaded from a real SQLite
//! store) for a valid key and each refusal, and `RevocationSet` lookups.
//! `cargo bench -p rampart-store`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_config::secret::Secret;
use rampart_store::{
    ApiKeyCache, ApiKeys, NewApiKey, Revocation, RevocationKind, RevocationSet, Store, key,
};

const KEYS: usize = 1000;

fn forge(id: &str) -> String {
    let body = format!("rpk_{id}_{}", "x".repeat(key::SECRET_LEN));
    let check = key::checksum(body.as_bytes());
    format!("{body}_{}", std::str::from_utf8(&check).unwrap())
}

fn setup() -> (ApiKeyCache, Vec<String>, PathBuf) {
    let base = rampart_test_support::private_dir(env!("CARGO_TARGET_TMPDIR"), "bench");
    let pepper = Secret::new(vec![42u8; 32]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cache, secrets) = rt.block_on(async {
        let store = Store::open_url("sqlite://bench.db", Some(&base))
            .await
            .unwrap();
        let keys = ApiKeys::new(store.clone(), &pepper).unwrap();
        let mut secrets = Vec::new();
        for i in 0..KEYS {
            let (_, s) = keys
                .create(NewApiKey {
                    name: format!("bench {i}"),
                    tenant: "acme".into(),
                    scopes: vec!["jobs".into(), "metrics".into()],
                    ..NewApiKey::default()
                })
                .await
                .unwrap();
            secrets.push(s.expose().to_owned());
        }
        let cache = ApiKeyCache::new(&pepper).unwrap();
        rampart_store::load_once(&store, &cache, &RevocationSet::new())
            .await
            .unwrap();
        store.close().await;
        (cache, secrets)
    });
    (cache, secrets, base)
}

fn bench(c: &mut Criterion) {
    let (cache, secrets, dir) = setup();
    let valid = secrets[KEYS / 2].clone();
    let id = key::parse(&valid).unwrap().id.to_owned();
    let mismatch = forge(&id);
    let unknown = forge("AAAAAAAAAAAA");
    let mut typo = valid.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();

    let mut g = c.benchmark_group("apikey_verify");
    g.bench_function("valid_shared", |b| {
        b.iter(|| cache.verify_shared(std::hint::black_box(&valid)).unwrap());
    });
    g.bench_function("valid_record_copy", |b| {
        b.iter(|| cache.verify(std::hint::black_box(&valid)).unwrap());
    });
    g.bench_function("mismatch", |b| {
        b.iter(|| {
            cache
                .verify_shared(std::hint::black_box(&mismatch))
                .unwrap_err()
        });
    });
    g.bench_function("unknown_id", |b| {
        b.iter(|| {
            cache
                .verify_shared(std::hint::black_box(&unknown))
                .unwrap_err()
        });
    });
    g.bench_function("bad_checksum", |b| {
        b.iter(|| {
            cache
                .verify_shared(std::hint::black_box(&typo))
                .unwrap_err()
        });
    });
    g.bench_function("malformed", |b| {
        b.iter(|| {
            cache
                .verify_shared(std::hint::black_box("Bearer abc"))
                .unwrap_err()
        });
    });
    g.finish();

    let set = RevocationSet::new();
    set.insert_many((0..10_000).map(|i| Revocation {
        kind: RevocationKind::Jti,
        value: format!("jti-{i}"),
        until: None,
        created: 0,
        reason: None,
    }));
    let mut g = c.benchmark_group("revocation_set");
    g.bench_function("jti_hit", |b| {
        b.iter(|| assert!(set.is_revoked_jti(std::hint::black_box("jti-5000"))));
    });
    g.bench_function("jti_miss", |b| {
        b.iter(|| assert!(!set.is_revoked_jti(std::hint::black_box("jti-x"))));
    });
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
