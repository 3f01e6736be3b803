//! fdatasync is off the ack path: a slow disk does not delay acknowledgements, while
//! checkpoints are still signed only over synced records and the records written but
//! not yet synced (the power-loss window) stay bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Log, entry};

const SLOW_SYNC: Duration = Duration::from_millis(300);

fn slow_disk(l: &Log) -> rampart_audit::WriterConfig {
    let mut cfg = l.config();
    cfg.checkpoint_every_records = 1_000_000;
    cfg.checkpoint_every = Duration::from_secs(3600);
    cfg.segment_max_bytes = 64 * 1024 * 1024;
    cfg.fault = Some(rampart_audit::danger::FaultInjection {
        sync_delay: SLOW_SYNC,
        ..Default::default()
    });
    cfg
}

#[test]
fn a_slow_fsync_does_not_delay_acks_and_checkpoints_wait_for_it() {
    let l = Log::new();
    let h = l.start(slow_disk(&l));
    // One request after another, each waiting for its ack: with an fdatasync between
    // batches on the writer thread, each one would wait for the previous one's sync.
    let start = Instant::now();
    for i in 0..10 {
        let t = Instant::now();
        let rx = h.submit(entry(i)).map_err(|e| e.1).unwrap();
        assert_eq!(rx.blocking_recv().unwrap().unwrap(), i);
        let took = t.elapsed();
        assert!(
            took < SLOW_SYNC / 2,
            "record {i} acknowledged after {took:?} (fdatasync takes {SLOW_SYNC:?})"
        );
    }
    assert!(start.elapsed() < SLOW_SYNC * 2, "{:?}", start.elapsed());
    // Written (the head is published right after the batch), but not all of it can be
    // on disk yet.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.status().records < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let s = h.status();
    assert_eq!(s.records, 10);
    assert!(
        s.durable < 10,
        "durable {} before any sync finished",
        s.durable
    );

    // The checkpoint covers all ten records and is signed only once they are synced.
    let cp = h.checkpoint().unwrap().unwrap();
    assert_eq!(cp.size, 10);
    let s = h.status();
    assert_eq!((s.durable, s.checkpoint_size), (10, 10));
    assert!(!s.failing);

    // The sync thread catches up on its own too.
    for i in 10..15 {
        let rx = h.submit(entry(i)).map_err(|e| e.1).unwrap();
        rx.blocking_recv().unwrap().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.status().durable < 15 {
        assert!(Instant::now() < deadline, "the sync thread never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }
    h.shutdown().unwrap();
    let r = l.verify().unwrap();
    assert_eq!(r.records, 15);
}

#[test]
fn records_not_yet_synced_stay_bounded() {
    let l = Log::new();
    let mut cfg = slow_disk(&l);
    cfg.fault = Some(rampart_audit::danger::FaultInjection {
        sync_delay: Duration::from_millis(40),
        ..Default::default()
    });
    cfg.max_unsynced = 20;
    cfg.max_batch = 10;
    let h = l.start(cfg);
    let start = Instant::now();
    let rxs: Vec<_> = (0..100)
        .map(|i| h.submit(entry(i)).map_err(|e| e.1).unwrap())
        .collect();
    for (i, rx) in rxs.into_iter().enumerate() {
        let seq = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(seq, i as u64);
        // Once record `seq` is written, at most 20 records lack a finished sync.
        let durable = h.status().durable;
        assert!(
            seq < durable + 20,
            "record {seq} acknowledged while only {durable} are durable"
        );
    }
    // 100 records, at most 20 ahead of the disk, 40 ms a sync: the writer waited.
    assert!(
        start.elapsed() >= Duration::from_millis(4 * 40),
        "{:?}",
        start.elapsed()
    );
    h.shutdown().unwrap();
    assert_eq!(l.verify().unwrap().records, 100);
}

/// With a long `sync_interval`, syncs wait for more records, but records become durable
/// without waiting out the interval once `max_unsynced` is reached (the writer waiting
/// for room cuts it short), and a checkpoint still covers only synced records.
#[test]
fn sync_interval_coalesces_but_never_past_max_unsynced() {
    let l = Log::new();
    let mut cfg = l.config();
    cfg.checkpoint_every_records = 1_000_000;
    cfg.checkpoint_every = Duration::from_secs(3600);
    cfg.sync_interval = Duration::from_secs(30);
    cfg.max_unsynced = 20;
    cfg.max_batch = 10;
    let h = l.start(cfg);
    let start = Instant::now();
    let rxs: Vec<_> = (0..200)
        .map(|i| h.submit(entry(i)).map_err(|e| e.1).unwrap())
        .collect();
    for (i, rx) in rxs.into_iter().enumerate() {
        let seq = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(seq, i as u64);
        let durable = h.status().durable;
        assert!(
            seq < durable + 20,
            "record {seq} acknowledged while only {durable} are durable"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the writer waited out the interval: {:?}",
        start.elapsed()
    );
    let cp = h.checkpoint().unwrap().unwrap();
    assert_eq!(cp.size, 200);
    assert_eq!(h.status().durable, 200);
    h.shutdown().unwrap();
    assert_eq!(l.verify().unwrap().records, 200);
}
