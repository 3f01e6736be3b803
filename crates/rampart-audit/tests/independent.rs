//! Checkpoints, inclusion proofs and consistency proofs checked by an independent
//! implementation: Go's golang.org/x/mod sumdb/note and sumdb/tlog (Debian
//! golang-go + golang-golang-x-mod-dev; scripts/test installs them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use rampart_audit::{note, prove};

fn go_verifier(out: &Path) -> PathBuf {
    let bin = out.join("verify");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/verify.go");
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", out.join("gocache"))
        .output()
        .expect(
            "go must be installed (scripts/test installs golang-go and golang-golang-x-mod-dev)",
        );
    assert!(
        o.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

fn run(bin: &Path, mode: &str, file: &Path, vkeys: &[String]) -> (bool, String) {
    let o = Command::new(bin)
        .arg(mode)
        .arg(file)
        .args(vkeys)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn go_sumdb_checks_our_checkpoints_and_proofs() {
    let l = Log::new();
    l.fill(60);
    l.rotate("k2");
    l.fill(77); // checkpoints at 70, 80, ... and shutdown ones at 60 and 137
    let tmp = tempfile::tempdir().unwrap();
    let bin = go_verifier(tmp.path());
    let vkeys: Vec<String> = l.trusted().keys().iter().map(note::verifier_key).collect();
    assert_eq!(vkeys.len(), 2);

    // Every checkpoint note opens with Go's verifier and names the size we think.
    let cps = rampart_audit::segment::read_checkpoints(&l.dir).unwrap();
    assert!(cps.len() >= 10);
    for (_, e) in &cps {
        let e = e.as_ref().unwrap();
        let f = tmp.path().join("note");
        std::fs::write(&f, &e.note).unwrap();
        let (ok, out) = run(&bin, "note", &f, &vkeys);
        assert!(ok, "{out}");
        assert!(out.starts_with(&format!("OK {} ", e.size)), "{out}");
    }
    // The latest-checkpoint file too.
    let (ok, out) = run(&bin, "note", &l.dir.join("checkpoint"), &vkeys);
    assert!(ok && out.starts_with("OK 137 "), "{out}");
    // A note signed by a key Go does not know is refused.
    let (ok, _) = run(&bin, "note", &l.dir.join("checkpoint"), &vkeys[..1]);
    assert!(!ok, "k2's checkpoint must not open with k1 only");

    // Inclusion proofs for records under both keys, against the covering checkpoint.
    for seq in [0u64, 1, 59, 60, 64, 99, 136] {
        let p = prove::inclusion(&l.dir, seq, None).unwrap();
        assert!(p.checkpoint.is_some(), "seq {seq}");
        let f = tmp.path().join(format!("incl-{seq}.json"));
        std::fs::write(&f, serde_json::to_vec(&p).unwrap()).unwrap();
        let (ok, out) = run(&bin, "incl", &f, &vkeys);
        assert!(ok, "seq {seq}: {out}");
        // A changed record fails Go's check.
        let mut bad = serde_json::to_value(&p).unwrap();
        bad["leaf_data"] = serde_json::Value::String(p.leaf_data.replace("alice", "mallory"));
        std::fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
        assert!(
            !run(&bin, "incl", &f, &vkeys).0,
            "tampered seq {seq} accepted"
        );
    }

    // Consistency proofs between checkpoints, across the key rotation.
    for (a, b) in [
        (10u64, 20u64),
        (20, 137),
        (60, 70),
        (60, 137),
        (137, 137),
        (1, 60),
    ] {
        let p = prove::consistency(&l.dir, a, b).unwrap();
        let f = tmp.path().join(format!("cons-{a}-{b}.json"));
        if p.old_checkpoint.is_none() || p.new_checkpoint.is_none() {
            assert_eq!(a, 1, "checkpoints exist for {a} and {b}");
            continue;
        }
        std::fs::write(&f, serde_json::to_vec(&p).unwrap()).unwrap();
        let (ok, out) = run(&bin, "cons", &f, &vkeys);
        assert!(ok, "{a}..{b}: {out}");
        if !p.proof.is_empty() {
            let mut bad = serde_json::to_value(&p).unwrap();
            bad["proof"][0] = serde_json::Value::String(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                [9u8; 32],
            ));
            std::fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
            assert!(
                !run(&bin, "cons", &f, &vkeys).0,
                "bad proof {a}..{b} accepted"
            );
        }
    }
}
