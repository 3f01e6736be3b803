//! `audit verify` finds every kind of tampering and names the right `seq`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read as _, Write as _};

use common::*;
use rampart_audit::note;
use rampart_audit::record::{self, GENESIS};
use rampart_audit::segment::{CheckpointEntry, Tier};
use rampart_audit::verify::Break;
use rampart_crypto::SigningKey;

/// A log of 200 records over several segments; returns it and a middle segment.
fn log() -> (Log, std::path::PathBuf) {
    let l = Log::new();
    l.fill(200);
    let r = l.verify().unwrap();
    assert_eq!(r.records, 200);
    assert!(r.segments >= 4, "{} segments", r.segments);
    assert_eq!(r.latest.as_ref().unwrap().0, 200);
    assert_eq!(r.uncovered, 0);
    let seg = l.segments()[2].path.clone();
    (l, seg)
}

fn broken_seq(l: &Log) -> u64 {
    let e = l.verify().unwrap_err();
    e.seq().unwrap_or_else(|| panic!("no seq named: {e}"))
}

#[test]
fn edited_record_is_named() {
    let (l, seg) = log();
    let mut ls = lines(&seg);
    let k = seq_of(&ls[3]);
    ls[3] = ls[3].replace("\"status\":200", "\"status\":404");
    write_lines(&seg, &ls);
    let e = l.verify().unwrap_err();
    assert_eq!(e.seq(), Some(k), "{e}");
    assert!(e.to_string().contains("changed"), "{e}");
}

#[test]
fn edited_record_with_fixed_hash_is_named() {
    // The attacker recomputes the edited record's own hash: the next record's `prev` no
    // longer matches, and the checkpoint root differs.
    let (l, seg) = log();
    let mut ls = lines(&seg);
    let p = record::parse(ls[3].as_bytes()).unwrap();
    let k = p.record.seq;
    let mut e = common::entry(0);
    e.request_id = p.record.request_id.clone();
    e.path = "/innocent".into();
    let mut out = Vec::new();
    record::encode(&mut out, k, &p.record.ts, &e, &p.prev);
    ls[3] = String::from_utf8(out).unwrap().trim_end().to_owned();
    write_lines(&seg, &ls);
    let err = l.verify().unwrap_err();
    assert_eq!(err.seq(), Some(k + 1), "{err}");
}

#[test]
fn deleted_record_is_named() {
    let (l, seg) = log();
    let mut ls = lines(&seg);
    let k = seq_of(&ls[5]);
    ls.remove(5);
    write_lines(&seg, &ls);
    assert_eq!(broken_seq(&l), k);
}

#[test]
fn reordered_records_are_named() {
    let (l, seg) = log();
    let mut ls = lines(&seg);
    let k = seq_of(&ls[4]);
    ls.swap(4, 5);
    write_lines(&seg, &ls);
    assert_eq!(broken_seq(&l), k);
}

#[test]
fn inserted_record_is_named() {
    let (l, seg) = log();
    let mut ls = lines(&seg);
    // A well-formed record that chains onto its predecessor, inserted before seq k.
    let before = record::parse(ls[6].as_bytes()).unwrap();
    let k = before.record.seq + 1;
    let mut out = Vec::new();
    record::encode(
        &mut out,
        k,
        &before.record.ts,
        &common::entry(999),
        &before.stated_hash,
    );
    ls.insert(7, String::from_utf8(out).unwrap().trim_end().to_owned());
    write_lines(&seg, &ls);
    let e = l.verify().unwrap_err();
    assert_eq!(e.seq(), Some(k), "{e}");
}

#[test]
fn first_record_edit_and_genesis() {
    let (l, _) = log();
    let first = l.segments()[0].path.clone();
    let mut ls = lines(&first);
    assert!(ls[0].contains(&record::hex(&GENESIS)));
    ls[0] = ls[0].replace("req-0", "req-X");
    write_lines(&first, &ls);
    assert_eq!(broken_seq(&l), 0);
}

fn gunzip(p: &std::path::Path) -> Vec<String> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s.lines().map(str::to_owned).collect()
}

fn gzip(p: &std::path::Path, ls: &[String]) {
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(p).unwrap(),
        flate2::Compression::default(),
    );
    for l in ls {
        enc.write_all(l.as_bytes()).unwrap();
        enc.write_all(b"\n").unwrap();
    }
    enc.finish().unwrap();
}

#[test]
fn tampering_inside_a_compressed_warm_segment_is_named() {
    let (l, _) = log();
    for s in &l.segments()[..3] {
        rampart_audit::retention::compress(s).unwrap();
    }
    let segs = l.segments();
    assert_eq!(segs[1].tier, Tier::Warm);
    assert!(segs[1].path.to_string_lossy().ends_with(".jsonl.gz"));
    assert_eq!(l.verify().unwrap().records, 200, "warm segments verify");
    let mut ls = gunzip(&segs[1].path);
    let k = seq_of(&ls[2]);
    ls[2] = ls[2].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    gzip(&segs[1].path, &ls);
    assert_eq!(broken_seq(&l), k);
    // Deletion inside a warm segment as well.
    let mut ls = gunzip(&segs[1].path);
    ls[2] = ls[2].replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
    gzip(&segs[1].path, &ls);
    assert!(l.verify().is_ok());
    let k = seq_of(&ls[4]);
    ls.remove(4);
    gzip(&segs[1].path, &ls);
    assert_eq!(broken_seq(&l), k);
}

#[test]
fn dropped_tail_is_caught_by_the_shutdown_checkpoint() {
    let l = Log::new();
    let mut cfg = l.config();
    cfg.checkpoint_every_records = 1_000_000; // only the shutdown checkpoint covers the tail
    let h = l.start(cfg);
    append(&h, 57);
    h.shutdown().unwrap();
    assert_eq!(l.verify().unwrap().latest.unwrap().0, 57);
    let last = l.segments().last().unwrap().path.clone();
    let mut ls = lines(&last);
    let cut = ls.len() - 3;
    let k = seq_of(&ls[cut]);
    ls.truncate(cut);
    write_lines(&last, &ls);
    let e = l.verify().unwrap_err();
    assert!(matches!(e, Break::Tail { .. }), "{e}");
    assert_eq!(e.seq(), Some(k));
    assert_eq!(k, 54);
}

#[test]
fn checkpoint_signed_by_an_outside_key_is_refused() {
    let (l, seg) = log();
    // The attacker edits a record, recomputes the whole chain and tree, and signs new
    // checkpoints with a key of their own (even under the same key id).
    let mut ls = lines(&seg);
    ls[1] = ls[1].replace("\"status\":200", "\"status\":500");
    write_lines(&seg, &ls);
    let mut prev = GENESIS;
    let mut tree = rampart_audit::merkle::CompactRange::new();
    for s in l.segments() {
        let mut out_lines = Vec::new();
        for line in lines(&s.path) {
            let p = record::parse(line.as_bytes()).unwrap();
            let r = &p.record;
            let e = rampart_audit::Entry {
                request_id: r.request_id.clone(),
                subject: r.subject.clone(),
                tenant: r.tenant.clone(),
                auth: r.auth.clone().into(),
                client_ip: r.client_ip.clone(),
                method: r.method.clone().into(),
                route: r.route.clone(),
                path: r.path.clone(),
                status: r.status,
                decision: r.decision.clone().into(),
                reason: r.reason.clone().into(),
                latency_us: r.latency_us,
            };
            let mut out = Vec::new();
            prev = record::encode(&mut out, r.seq, &r.ts, &e, &prev);
            let text = String::from_utf8(out).unwrap().trim_end().to_owned();
            tree.push(rampart_audit::merkle::leaf_hash(text.as_bytes()));
            out_lines.push(text);
        }
        write_lines(&s.path, &out_lines);
    }
    let evil = SigningKey::generate("k1").unwrap();
    let cp = note::Checkpoint {
        origin: "example.com/rampart-test".into(),
        size: tree.size(),
        root: tree.root(),
        extensions: vec![],
    };
    let text = note::sign(&cp.body(), evil.public(), |m| evil.sign(m));
    let entry = CheckpointEntry {
        size: cp.size,
        ts: "2026-01-01T00:00:00.000000Z".into(),
        key_id: "k1".into(),
        fingerprint: evil.public().fingerprint().into(),
        why: "shutdown".into(),
        note: text,
    };
    let cps = l.dir.join("checkpoints.jsonl");
    std::fs::write(
        &cps,
        format!("{}\n", serde_json::to_string(&entry).unwrap()),
    )
    .unwrap();
    let e = l.verify().unwrap_err();
    assert!(e.to_string().contains("not in the keyring"), "{e}");
}

#[test]
fn key_rotation_mid_log_verifies() {
    let l = Log::new();
    l.fill(40);
    l.rotate("k2");
    l.fill(40);
    let r = l.verify().unwrap();
    assert_eq!(r.records, 80);
    let (size, key, fp) = r.latest.unwrap();
    assert_eq!((size, key.as_str()), (80, "k2"));
    assert!(fp.starts_with("SHA256:"));
    let cps = std::fs::read_to_string(l.dir.join("checkpoints.jsonl")).unwrap();
    assert!(cps.contains("\"key_id\":\"k1\"") && cps.contains("\"key_id\":\"k2\""));
    // Without the retired key, the old checkpoints no longer verify.
    let only_new = rampart_crypto::TrustedKeys::new(
        l.trusted()
            .keys()
            .iter()
            .filter(|k| k.key_id() == "k2")
            .cloned()
            .collect(),
    );
    let e = rampart_audit::verify::verify(&l.dir, &only_new, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("`k1`"), "{e}");
}

#[test]
fn torn_last_record_is_cut_at_start_and_the_chain_continues() {
    let l = Log::new();
    l.fill(30);
    let last = l.segments().last().unwrap().path.clone();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(b"{\"seq\":30,\"ts\":\"2026-").unwrap();
    drop(f);
    let (h, report) = rampart_audit::AuditHandle::start(
        l.config(),
        l.keyring(),
        rampart_http::GatewayMetrics::new(),
    )
    .unwrap();
    assert_eq!(report.records, 30);
    assert_eq!(report.truncated_bytes, 21);
    let seqs = append(&h, 5);
    assert_eq!(seqs, vec![30, 31, 32, 33, 34]);
    h.shutdown().unwrap();
    assert_eq!(l.verify().unwrap().records, 35);
}

#[test]
fn write_failure_refuses_records_and_loses_none_that_were_acked() {
    let l = Log::new();
    let mut cfg = l.config();
    cfg.fault = Some(rampart_audit::danger::FaultInjection {
        fail_after_bytes: 20_000,
        ..Default::default()
    });
    let m = rampart_http::GatewayMetrics::new();
    let (h, _) = rampart_audit::AuditHandle::start(cfg, l.keyring(), m.clone()).unwrap();
    let mut ok = 0u64;
    let mut failed = 0u64;
    for i in 0..200 {
        let rx = h.submit(common::entry(i)).map_err(|e| e.1).unwrap();
        match rx.blocking_recv().unwrap() {
            Ok(seq) => {
                assert_eq!(seq, ok);
                ok += 1;
            }
            Err(rampart_audit::AppendError::Io(m)) => {
                assert!(
                    m.contains("No space left") || m.contains("os error 28"),
                    "{m}"
                );
                failed += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ok > 10 && failed > 10, "ok {ok} failed {failed}");
    assert!(h.is_failing());
    h.shutdown().unwrap();
    use std::sync::atomic::Ordering;
    assert_eq!(m.audit.written.load(Ordering::Relaxed), ok);
    assert_eq!(m.audit.failed.load(Ordering::Relaxed), failed);
    // Every acknowledged record is there, the partial write was rolled back.
    let r = l.verify().unwrap();
    assert_eq!(r.records, ok);
}

#[test]
fn retention_prunes_with_a_signed_statement_and_the_rest_verifies() {
    let (l, _) = log();
    let n_segs = l.segments().len();
    let ring = l.keyring();
    let report = rampart_audit::retention::apply(
        &l.dir,
        &ring,
        "example.com/rampart-test",
        rampart_audit::retention::Retention {
            hot: std::time::Duration::ZERO,
            cold: std::time::Duration::ZERO,
        },
        std::time::SystemTime::now() + std::time::Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(
        report.deleted.len(),
        n_segs - 1,
        "all closed segments deleted"
    );
    let below = report.pruned_below.unwrap();
    let r = l.verify().unwrap();
    assert_eq!(r.first_seq, below);
    assert_eq!(r.records, 200 - below);
    // The writer continues the chain after a prune.
    l.fill(10);
    assert_eq!(l.verify().unwrap().records, 210 - below);
    // A forged prune statement is refused.
    let evil = SigningKey::generate("k1").unwrap();
    let pruned = l.dir.join("pruned.jsonl");
    let text = std::fs::read_to_string(&pruned).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let n = note::Note::parse(v["note"].as_str().unwrap()).unwrap();
    let forged = note::sign(&n.body, evil.public(), |m| evil.sign(m));
    let mut v2 = v.clone();
    v2["note"] = serde_json::Value::String(forged);
    std::fs::write(&pruned, format!("{v2}\n")).unwrap();
    assert!(
        l.verify()
            .unwrap_err()
            .to_string()
            .contains("not in the keyring")
    );
}
