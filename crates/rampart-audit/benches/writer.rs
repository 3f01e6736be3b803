//! Appends per second of the writer alone: records queued from one thread, group
//! commit, fdatasync on the sync thread (one per batches written while the previous one
//! ran; target ≥ 200,000 records/s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rampart_audit::{AuditHandle, Entry, WriterConfig};
use rampart_crypto::{FileProvider, Keyring};
use rampart_http::GatewayMetrics;

fn entry(i: u64) -> Entry {
    Entry {
        request_id: Some(format!("{i:032x}")),
        subject: Some("user-123".into()),
        tenant: Some("acme".into()),
        auth: "jwt".into(),
        client_ip: Some("10.1.2.3".into()),
        method: "GET".into(),
        route: Some("tenant-jobs".into()),
        path: "/tenants/acme/jobs?page=2&token=REDACTED".into(),
        status: 200,
        decision: "allow".into(),
        reason: "forwarded".into(),
        latency_us: 812,
    }
}

/// Appends `N` records per iteration through a writer with checkpoints every
/// `checkpoint_every` records.
fn run(c: &mut Criterion, name: &str, checkpoint_every: u64) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let ring = Arc::new(
        Keyring::generate(
            &FileProvider::new(&keys),
            &keys.join("keyring.json"),
            "bench",
        )
        .unwrap(),
    );
    let mut cfg = WriterConfig::new(dir.path().join("audit"), "bench");
    cfg.checkpoint_every_records = checkpoint_every;
    let (h, _) = AuditHandle::start(cfg, ring, GatewayMetrics::new()).unwrap();
    const N: u64 = 10_000;
    let mut g = c.benchmark_group("audit_writer");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut acks = Vec::with_capacity(N as usize);
                for i in 0..N {
                    let mut e = entry(i);
                    loop {
                        match h.submit(e) {
                            Ok(rx) => {
                                acks.push(rx);
                                break;
                            }
                            Err((back, _)) => {
                                e = back;
                                std::thread::yield_now();
                            }
                        }
                    }
                }
                for a in acks {
                    a.blocking_recv().unwrap().unwrap();
                }
            }
            start.elapsed()
        });
    });
    g.finish();
    h.shutdown().unwrap();
}

fn writer(c: &mut Criterion) {
    // The default: a signed checkpoint (and its own fsyncs) every 1,000 records.
    run(c, "append_10k", 1000);
    // The append path alone: group commit, coalesced fdatasyncs; checkpoints
    // every 100,000 records (a busy gateway's setting; checkpoint_every_s still bounds
    // their age).
    run(c, "append_10k_checkpoint_every_100k", 100_000);
}

criterion_group!(benches, writer);
criterion_main!(benches);
