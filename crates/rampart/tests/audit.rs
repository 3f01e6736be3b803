//! The audit trail end to end, against the real binary: keys CLI (fingerprints checked by
//! ssh-keygen), one record per request whatever the outcome, no secret in the audit
//! directory or the logs, kill -9 under load loses no acknowledged record, verify and
//! prove from the command line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

struct Setup {
    dir: PathBuf,
    data: PathBuf,
    config: PathBuf,
    /// Kept alive for the test's duration (the gateway forwards to it).
    _upstream: Upstream,
}

fn setup(name: &str, audit_extra: &str) -> Setup {
    let upstream = Upstream::start();
    let dir = private_dir(name);
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let extra = format!(
        r#"
[audit]
checkpoint_every_records = 50
redact_query_params = ["token", "code", "password", "session_hint"]
{audit_extra}

[signing]
provider = "file"
key_id = "audit-1"
"#
    );
    let mut cfg = base_config(upstream.addr, &extra);
    cfg = cfg.replacen(
        "[server]\n",
        &format!(
            "[server]\ndata_dir = \"{}\"\nallowed_data_roots = [\"{}\"]\n",
            data.display(),
            data.display()
        ),
        1,
    );
    let config = dir.join("rampart.toml");
    std::fs::write(&config, cfg).unwrap();
    let out = rampart(&["keys", "generate", "--config"], &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Setup {
        dir,
        data,
        config,
        _upstream: upstream,
    }
}

fn rampart(args: &[&str], config: &Path) -> Output {
    Command::new(bin()).args(args).arg(config).output().unwrap()
}

fn records(data: &Path) -> Vec<serde_json::Value> {
    let audit = data.join("audit");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&audit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.split_inclusive('\n') {
            if line.ends_with('\n') {
                out.push(serde_json::from_str(line.trim_end()).unwrap());
            }
        }
    }
    out
}

fn stop(g: &Gateway) {
    g.signal(rustix::process::Signal::TERM);
    assert!(
        g.wait_log("shutdown checkpoint signed", Duration::from_secs(20)),
        "{}",
        g.logs()
    );
}

#[test]
fn keys_cli_fingerprints_match_ssh_keygen_and_rotation_keeps_old_keys() {
    let s = setup("keys", "");
    let out = rampart(
        &["keys", "rotate", "--key-id", "audit-2", "--config"],
        &s.config,
    );
    assert!(out.status.success());
    let list = String::from_utf8(rampart(&["keys", "list", "--config"], &s.config).stdout).unwrap();
    assert!(
        list.contains("audit-1") && list.contains("retired"),
        "{list}"
    );
    assert!(
        list.contains("audit-2") && list.contains("active"),
        "{list}"
    );
    let ssh = String::from_utf8(
        rampart(
            &["keys", "public", "--all", "--format", "openssh", "--config"],
            &s.config,
        )
        .stdout,
    )
    .unwrap();
    for line in ssh.lines() {
        let f = s.dir.join("k.pub");
        std::fs::write(&f, format!("{line}\n")).unwrap();
        let o = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(&f)
            .output()
            .expect("ssh-keygen (openssh-client; scripts/test installs it)");
        assert!(o.status.success());
        let fp = String::from_utf8(o.stdout)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
        let id = line.split_whitespace().nth(2).unwrap();
        let row = list.lines().find(|l| l.starts_with(id)).unwrap();
        assert!(row.ends_with(&fp), "ours: {row}\nssh-keygen: {fp}");
    }
    // The retired private key is gone; generate refuses while a key is active.
    assert!(!s.data.join("keys/audit-1.pem").exists());
    assert_eq!(
        rampart(&["keys", "generate", "--config"], &s.config)
            .status
            .code(),
        Some(2)
    );
    let jwks: serde_json::Value = serde_json::from_slice(
        &rampart(
            &["keys", "public", "--all", "--format", "jwks", "--config"],
            &s.config,
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

fn send(addr: std::net::SocketAddr, req: &str) -> Resp {
    raw(addr, req)
}

#[test]
fn one_record_per_request_any_outcome_and_no_secrets() {
    let s = setup("secrets", "");
    let g = Gateway::spawn(s.dir.clone(), s.config.clone()).unwrap();
    let secrets = [
        "BEARERSECRETd8f7a6",
        "QmFzaWNTZWNSRVQ6cHc9", // basic credentials
        "APIKEYSECRET91c2",
        "COOKIESECRETab12",
        "QUERYTOKEN7781",
        "ACCESSTOKENQ55",
        "HINTSECRET3310",
    ];
    let cases: Vec<(String, u16)> = vec![
        (
            format!(
                "GET /status?token={}&x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                secrets[4], secrets[0]
            ),
            200,
        ),
        (
            format!(
                "GET /status?access_token={}&session_hint={} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
                secrets[5], secrets[6], secrets[1]
            ),
            200,
        ),
        (
            format!(
                "GET /private?api_key={} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {}\r\nCookie: session={}\r\nConnection: close\r\n\r\n",
                secrets[2], secrets[2], secrets[3]
            ),
            401,
        ),
        (
            format!(
                "GET /nope?token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session={}\r\nConnection: close\r\n\r\n",
                secrets[4], secrets[3]
            ),
            404,
        ),
        (
            format!(
                "POST /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                secrets[0]
            ),
            405,
        ),
        (
            format!(
                "GET /status HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                secrets[0]
            ),
            400,
        ),
        (
            format!(
                "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {}\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
                secrets[2]
            ),
            413,
        ),
        (
            "GET /down HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_owned(),
            502,
        ),
    ];
    let mut ids = Vec::new();
    for (req, want) in &cases {
        let r = send(g.addr, req);
        assert_eq!(r.status, *want, "{req}");
        ids.push(r.header("x-request-id").unwrap().to_owned());
    }
    stop(&g);
    let _ = g.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let recs = records(&s.data);
    assert_eq!(recs.len(), cases.len(), "exactly one record per request");
    for ((rec, (_, want)), id) in recs.iter().zip(&cases).zip(&ids) {
        assert_eq!(rec["status"], *want);
        assert_eq!(rec["request_id"], id.as_str());
        assert_eq!(rec["auth"], "none");
        for k in [
            "seq",
            "ts",
            "request_id",
            "subject",
            "tenant",
            "auth",
            "client_ip",
            "method",
            "route",
            "path",
            "status",
            "decision",
            "reason",
            "latency_us",
            "prev",
            "hash",
        ] {
            assert!(rec.get(k).is_some(), "{k} missing in {rec}");
        }
    }
    assert_eq!(recs[2]["decision"], "deny");
    // The precise authentication reason reaches the audit record (never the client).
    assert_eq!(recs[2]["reason"], "missing_credentials");
    assert_eq!(recs[0]["path"], "/status?token=REDACTED&x=1");
    // No secret anywhere in the data root (audit, checkpoints, keys) or the logs.
    let mut files = Vec::new();
    let mut stack = vec![s.data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let mut haystack: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect();
    haystack.push(("stderr".into(), g.logs().into_bytes()));
    haystack.push((
        "stdout".into(),
        g.stdout.lock().unwrap().join("\n").into_bytes(),
    ));
    for (name, bytes) in &haystack {
        for sec in secrets {
            assert!(
                !bytes.windows(sec.len()).any(|w| w == sec.as_bytes()),
                "secret {sec} found in {name}"
            );
        }
    }
    // Files 0640 or narrower, directories 0750 or narrower.
    use std::os::unix::fs::PermissionsExt;
    let audit = s.data.join("audit");
    assert_eq!(
        std::fs::metadata(&audit).unwrap().permissions().mode() & 0o027,
        0
    );
    for f in std::fs::read_dir(&audit).unwrap() {
        let m = f.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(m & 0o137, 0, "mode {m:o}");
    }
    let v = rampart(&["audit", "verify", "--config"], &s.config);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_record_then_restart_continues() {
    let s = setup("kill9", "");
    let g = Gateway::spawn(s.dir.clone(), s.config.clone()).unwrap();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut threads = Vec::new();
    for t in 0..8 {
        let (stop_flag, acked, addr) = (Arc::clone(&stop_flag), Arc::clone(&acked), g.addr);
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            'conn: while !stop_flag.load(Ordering::Relaxed) {
                let Ok(mut c) = TcpStream::connect(addr) else {
                    return;
                };
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                loop {
                    n += 1;
                    let req =
                        format!("GET /status?t={t}&n={n} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
                    if c.write_all(req.as_bytes()).is_err() {
                        continue 'conn;
                    }
                    match read_response(&mut c) {
                        Some(r) if r.status == 200 => {
                            acked
                                .lock()
                                .unwrap()
                                .push(r.header("x-request-id").unwrap().to_owned());
                        }
                        Some(r) => panic!("unexpected status {}", r.status),
                        None => return,
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    g.signal(rustix::process::Signal::KILL);
    stop_flag.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let recs = records(&s.data);
    let written: BTreeSet<&str> = recs
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !written.contains(id.as_str()))
        .collect();
    eprintln!(
        "kill -9 under load: {} complete responses, {} records, {} missing",
        acked.len(),
        recs.len(),
        missing.len()
    );
    assert!(acked.len() > 100, "load too small: {}", acked.len());
    assert!(
        missing.is_empty(),
        "responses without a record: {missing:?}"
    );
    assert!(recs.len() >= acked.len());

    // Restart: the torn tail (if any) is cut, the chain continues, verify passes.
    let g2 = Gateway::spawn(s.dir.clone(), s.config.clone()).unwrap();
    assert_eq!(g2.get("/status?after=restart").status, 200);
    stop(&g2);
    std::thread::sleep(Duration::from_millis(300));
    let v = rampart(&["audit", "verify", "--config"], &s.config);
    let out = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success(), "{out}");
    assert!(
        out.contains(&format!("{} records", recs.len() + 1)),
        "{out}"
    );
    drop(g);
}

#[test]
fn verify_names_the_tampered_seq_and_prove_prints_proofs() {
    let s = setup("verify", "");
    let g = Gateway::spawn(s.dir.clone(), s.config.clone()).unwrap();
    for i in 0..120 {
        assert_eq!(g.get(&format!("/status?i={i}")).status, 200);
    }
    stop(&g);
    std::thread::sleep(Duration::from_millis(300));
    let ok = rampart(&["audit", "verify", "--config"], &s.config);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let p = rampart(&["audit", "prove", "--seq", "7", "--config"], &s.config);
    assert!(p.status.success());
    let v: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(v["index"], 7);
    assert_eq!(v["tree_size"], 120, "the latest checkpoint covering it");
    assert!(
        v["checkpoint"]
            .as_str()
            .unwrap()
            .contains("\n\n\u{2014} audit-1 ")
    );
    let c = rampart(
        &["audit", "prove", "--from", "50", "--to", "100", "--config"],
        &s.config,
    );
    let v: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    assert!(!v["proof"].as_array().unwrap().is_empty());
    // Edit seq 42: verify exits 1 and names it.
    let seg = s.data.join("audit/segment-00000000000000000000.jsonl");
    let text = std::fs::read_to_string(&seg).unwrap();
    let edited = text.replacen("?i=42\"", "?i=24\"", 1);
    assert_ne!(text, edited);
    std::fs::write(&seg, edited).unwrap();
    let bad = rampart(&["audit", "verify", "--config"], &s.config);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("seq 42:"), "{out}");
}

#[test]
fn tail_follows_and_prune_keeps_a_verifiable_log() {
    let s = setup(
        "tailprune",
        "segment_max_bytes = 4096\nretention = { hot_days = 0, warm_days = 0, cold_days = 0 }",
    );
    let g = Gateway::spawn(s.dir.clone(), s.config.clone()).unwrap();
    assert_eq!(g.get("/status?first").status, 200);
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut tail = Kill(
        Command::new(bin())
            .args(["audit", "tail", "-f", "-n", "1", "--config"])
            .arg(&s.config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = tail.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(first.contains("/status?first"), "{first}");
    // Enough requests to rotate segments several times while tail follows.
    for i in 0..60 {
        assert_eq!(g.get(&format!("/status?n={i}")).status, 200);
    }
    let mut seen = Vec::new();
    while seen.len() < 60 {
        seen.push(
            rx.recv_timeout(Duration::from_secs(5))
                .expect("tail -f stopped following"),
        );
    }
    for (i, l) in seen.iter().enumerate() {
        assert!(l.contains(&format!("/status?n={i}\"")), "{i}: {l}");
    }
    drop(tail);
    stop(&g);
    std::thread::sleep(Duration::from_millis(300));
    let segs_before = std::fs::read_dir(s.data.join("audit")).unwrap().count();
    let p = rampart(&["audit", "prune", "--config"], &s.config);
    let text = String::from_utf8_lossy(&p.stdout);
    assert!(p.status.success(), "{text}");
    assert!(
        text.contains("deleted segment-") && text.contains("retained log starts at seq"),
        "{text}"
    );
    assert!(std::fs::read_dir(s.data.join("audit")).unwrap().count() < segs_before);
    let v = rampart(&["audit", "verify", "--config"], &s.config);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}
