//! What the status page reads of the audit writer: the chain head (records and the last
//! record's hash), the last checkpoint and the queue depth, live and after a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn last_hash(l: &Log) -> String {
    let segs = l.segments();
    let ls = lines(&segs.last().unwrap().path);
    let v: serde_json::Value = serde_json::from_str(ls.last().unwrap()).unwrap();
    v["hash"].as_str().unwrap().to_owned()
}

#[test]
fn status_follows_the_chain_head_and_checkpoints() {
    let l = Log::new();
    let h = l.start(l.config());
    let s = h.status();
    assert_eq!(s.records, 0);
    assert_eq!(s.head_hash, "0".repeat(64));
    assert_eq!(s.queue_depth, 0);
    assert!(s.queue_capacity > 0);
    assert!(!s.failing);

    append(&h, 5);
    // Published by the writer thread right after the batch.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.status().records < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = h.status();
    assert_eq!(s.records, 5);
    assert_eq!(s.queue_depth, 0);
    assert_eq!(s.head_hash, last_hash(&l));

    h.checkpoint().unwrap().unwrap();
    let s = h.status();
    assert_eq!(s.checkpoint_size, 5);
    assert!(s.checkpoint_ts.is_some());
    h.shutdown().unwrap();

    // A restart recovers the same head and the shutdown checkpoint.
    let h = l.start(l.config());
    let s = h.status();
    assert_eq!((s.records, s.checkpoint_size), (5, 5));
    assert_eq!(s.head_hash, last_hash(&l));
    assert!(s.checkpoint_ts.is_some());
    h.shutdown().unwrap();
}
