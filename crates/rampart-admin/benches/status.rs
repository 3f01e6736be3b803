//! Rendering the status page from its data with 10,000 routes (the issue asks for under
//! 100 ms of server time) and the JSON twin of the same data.

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_admin::status::{render_html, synthetic, to_json};

fn bench(c: &mut Criterion) {
    let s = synthetic(10_000);
    c.bench_function("status_html_10k_routes", |b| {
        b.iter(|| render_html(std::hint::black_box(&s)));
    });
    c.bench_function("status_json_10k_routes", |b| {
        b.iter(|| to_json(std::hint::black_box(&s)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
