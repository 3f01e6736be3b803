//! Linting 1,000 manifests (target: under one second). The manifests are the corpus's
//! Kubernetes, Compose and Dockerfile fixtures (`../shared/corpus/lint`), written
//! round-robin into a temporary directory at run time, then linted as one directory walk
//! (reading, kind detection, parsing, rules, NetworkPolicy pass, sorting).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/lint")
}

fn fixtures(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            fixtures(&p, out);
        } else if p.file_name().unwrap() != "SOURCES.md" {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut fx = Vec::new();
    fixtures(&corpus(), &mut fx);
    fx.sort();
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..1000 {
        let (name, text) = &fx[i % fx.len()];
        std::fs::write(tmp.path().join(format!("{i:04}-{name}")), text).unwrap();
    }
    let paths = vec![tmp.path().to_path_buf()];
    let report = rampart_lint::lint_paths(&paths);
    assert_eq!(report.files, 1000);
    assert!(report.errors.is_empty());
    let mut g = c.benchmark_group("lint");
    g.sample_size(10);
    g.bench_function("1000_manifests", |b| {
        b.iter(|| rampart_lint::lint_paths(&paths).findings.len());
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
