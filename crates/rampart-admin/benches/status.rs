//! Rendering the status page with 10,000 routes (the issue asks for under 100 ms of
//! server time): from its data to HTML, the JSON twin of the same data, and the whole
//! answer to `GET /` (gathering from live metrics included) with 10,000 configured
//! routes (the metrics keep 4,096 route series; the rest count as unmatched).

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_admin::status::{render_html, status_response, synthetic, to_json};
use rampart_admin::{AdminState, BuildInfo, Health};
use rampart_http::{Decision, GatewayMetrics};

fn bench(c: &mut Criterion) {
    let s = synthetic(10_000);
    c.bench_function("status_html_10k_routes", |b| {
        b.iter(|| render_html(std::hint::black_box(&s)));
    });
    c.bench_function("status_json_10k_routes", |b| {
        b.iter(|| to_json(std::hint::black_box(&s)));
    });

    let metrics = GatewayMetrics::new();
    for i in 0..10_000u32 {
        let id: Arc<str> = Arc::from(format!("route-{i}"));
        let st = metrics.route_stats(&id);
        st.record(
            200,
            Decision::Allow,
            Duration::from_micros(u64::from(i % 5000)),
        );
        st.record(401, Decision::Deny, Duration::from_micros(300));
    }
    let state = AdminState {
        metrics,
        health: Health::new(),
        build: BuildInfo {
            version: "0.1.0",
            commit: "bench",
            branch: "main",
            build_time: "2026-01-01T00:00:00Z",
        },
        sources: Vec::new(),
        api: None,
        jwks: None,
        status: Vec::new(),
    };
    c.bench_function("status_get_page_10k_configured_routes", |b| {
        b.iter(|| status_response(std::hint::black_box(&state), "/"));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
