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

/// Runs `sql` with psql as the superuser (or `user`) in schema `schema`; returns
/// (success, stderr).
fn psql_as(user: &str, schema: &str, sql: &str) -> (bool, String) {
    let o = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            user,
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-X",
            "-q",
        ])
        .args(["-c", sql])
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .output()
        .expect("psql (postgresql-client) is needed for this test");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout),
    )
}

/// The rows of a query, one per line, unaligned.
fn psql_rows(schema: &str, sql: &str) -> String {
    let o = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-X",
            "-tA",
            "-c",
            sql,
        ])
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn psql_ok(schema: &str, sql: &str) -> String {
    let (ok, out) = psql_as("postgres", schema, sql);
    assert!(ok, "{sql}: {out}");
    out
}

/// A schema holding the tables of `deploy/postgres/audit.sql`, run as an administrator
/// would; dropped at the end.
struct PgSchema(String);

impl PgSchema {
    fn create(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("audit_{tag}_{}_{nanos}", std::process::id());
        psql_ok("public", &format!("CREATE SCHEMA {name}"));
        let sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/postgres/audit.sql");
        let o = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-q",
                "-f",
            ])
            .arg(&sql)
            .env("PGOPTIONS", format!("-c search_path={name}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Self(name)
    }

    /// The URL the gateways use: the INSERT/SELECT-only role of the deploy SQL.
    fn url(&self) -> String {
        format!(
            "postgres://rampart_audit@127.0.0.1:5432/test?options=-c%20search_path%3D{}",
            self.0
        )
    }

    fn count(&self, node: &str) -> u64 {
        psql_rows(
            &self.0,
            &format!("SELECT count(*) FROM rampart_audit_records WHERE node = '{node}'"),
        )
        .trim()
        .parse()
        .unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = psql_as(
            "postgres",
            "public",
            &format!("DROP SCHEMA {} CASCADE", self.0),
        );
    }
}

fn pg_setup(name: &str, pg: &PgSchema, node: &str) -> Setup {
    setup(
        name,
        &format!("postgres_url = \"{}\"\nnode_id = \"{node}\"\n", pg.url()),
    )
}

/// Two gateways (two nodes) write their chains into one database as the role without
/// UPDATE or DELETE; each chain verifies from the database; PostgreSQL refuses that role
/// UPDATE, DELETE and TRUNCATE; a refused commit gives 503 with no record anywhere; rows
/// lost after the file write are re-inserted at start; a row tampered with by a
/// superuser is named by its seq.
#[test]
fn postgres_sink_two_nodes_append_only_role_and_tamper_named() {
    let pg = PgSchema::create("sink");
    let a = pg_setup("pg-a", &pg, "gw-a");
    let b = pg_setup("pg-b", &pg, "gw-b");
    let ga = Gateway::spawn(a.dir.clone(), a.config.clone()).unwrap();
    let gb = Gateway::spawn(b.dir.clone(), b.config.clone()).unwrap();
    for i in 0..30 {
        assert_eq!(ga.get(&format!("/status?a={i}")).status, 200);
        assert_eq!(gb.get(&format!("/status?b={i}")).status, 200);
    }
    assert_eq!(pg.count("gw-a"), 30);
    assert_eq!(pg.count("gw-b"), 30);

    // The role may not rewrite or remove what it wrote: PostgreSQL's privilege check.
    for sql in [
        "UPDATE rampart_audit_records SET record = 'x' WHERE node = 'gw-a' AND seq = 3",
        "DELETE FROM rampart_audit_records WHERE node = 'gw-a' AND seq = 29",
        "UPDATE rampart_audit_checkpoints SET note = 'x'",
        "DELETE FROM rampart_audit_checkpoints",
        "TRUNCATE rampart_audit_records",
    ] {
        let (ok, out) = psql_as("rampart_audit", &pg.0, sql);
        assert!(!ok, "{sql} was allowed");
        assert!(out.contains("permission denied for table"), "{sql}: {out}");
    }
    // It can read (the verifier) and insert (the gateway did).
    let (ok, out) = psql_as(
        "rampart_audit",
        &pg.0,
        "SELECT count(*) FROM rampart_audit_records",
    );
    assert!(ok, "{out}");

    // A commit refused (INSERT taken away): deny answers 503, and the record is in
    // neither the database nor the files.
    psql_ok(
        &pg.0,
        "REVOKE INSERT ON rampart_audit_records FROM rampart_audit",
    );
    let r = ga.get("/status?refused=1");
    assert_problem(&r, 503);
    psql_ok(
        &pg.0,
        "GRANT INSERT ON rampart_audit_records TO rampart_audit",
    );
    assert_eq!(ga.get("/status?a=after").status, 200);
    assert_eq!(pg.count("gw-a"), 31);
    assert!(
        !records(&a.data)
            .iter()
            .any(|r| r["path"].as_str().unwrap().contains("refused")),
        "a refused request left a record in the files"
    );
    stop(&ga);
    stop(&gb);
    std::thread::sleep(Duration::from_millis(300));

    let verify = |args: &[&str], envs: &[(&str, String)]| {
        let o = Command::new(bin())
            .args(["audit", "verify"])
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let cfg_a = a.config.to_str().unwrap();
    let cfg_b = b.config.to_str().unwrap();
    let (code, out) = verify(&["--postgres", "--config", cfg_a], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("node gw-a: 31 records"), "{out}");
    assert!(out.contains("latest checkpoint: size 31"), "{out}");
    let (code, out) = verify(&["--postgres", "--config", cfg_b], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("node gw-b: 30 records"), "{out}");
    // An auditor's form: URL from the environment, the node named, their keyring.
    let ring_b = b.data.join("keys/keyring.json");
    let (code, out) = verify(
        &[
            "--postgres",
            "env:AUDIT_DB",
            "--node",
            "gw-b",
            "--keyring",
            ring_b.to_str().unwrap(),
        ],
        &[("AUDIT_DB", pg.url())],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !out.contains("rampart_audit@"),
        "the URL was printed: {out}"
    );
    // The database holds exactly the lines of the files.
    let files_b: Vec<String> = records(&b.data)
        .iter()
        .map(|r| r["hash"].as_str().unwrap().to_owned())
        .collect();
    let db_b = psql_rows(
        &pg.0,
        "SELECT hash FROM rampart_audit_records WHERE node = 'gw-b' ORDER BY seq",
    );
    let db_b: Vec<String> = db_b.split_whitespace().map(str::to_owned).collect();
    assert_eq!(files_b, db_b);

    // Rows lost between the file write and the commit (a crash; simulated by a
    // superuser) are inserted again from the files at the next start.
    psql_ok(
        &pg.0,
        "SET session_replication_role = replica; DELETE FROM rampart_audit_records WHERE node = 'gw-b' AND seq >= 20",
    );
    let gb = Gateway::spawn(b.dir.clone(), b.config.clone()).unwrap();
    assert!(
        gb.wait_log("inserted records into PostgreSQL", Duration::from_secs(10)),
        "{}",
        gb.logs()
    );
    assert_eq!(gb.get("/status?b=again").status, 200);
    stop(&gb);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pg.count("gw-b"), 31);
    let (code, out) = verify(&["--postgres", "--config", cfg_b], &[]);
    assert_eq!(code, Some(0), "{out}");

    // A superuser edits one row of gw-a: verify names its seq; gw-b still verifies.
    psql_ok(
        &pg.0,
        "SET session_replication_role = replica; UPDATE rampart_audit_records SET record = replace(record, '\"status\":200', '\"status\":403') WHERE node = 'gw-a' AND seq = 5",
    );
    let (code, out) = verify(&["--postgres", "--config", cfg_a], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL: node gw-a: seq 5:"), "{out}");
    // Every node at once (no --node, no config): gw-a fails, gw-b passes.
    let ring_a = a.data.join("keys/keyring.json");
    let (code, out) = verify(
        &[
            "--postgres",
            &pg.url(),
            "--keyring",
            ring_a.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL: node gw-a: seq 5:"), "{out}");
    // The files of gw-a were not touched: they still verify.
    let v = rampart(&["audit", "verify", "--config"], &a.config);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // A second gateway given gw-a's node id (fresh files, 31 rows in the database)
    // refuses to start rather than fork the chain.
    let c = pg_setup("pg-c", &pg, "gw-a");
    let e = Gateway::spawn(c.dir.clone(), c.config.clone())
        .err()
        .expect("a gateway reusing another's node_id started");
    assert!(e.contains("node `gw-a`"), "{e}");
    drop(gb);
}

/// A tmpfs of `kib` KiB mounted on `dir` (created 0750) for the test's duration: a real
/// ENOSPC. The tests run as root (CI too); a failed mount fails the test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u64) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0750"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mount -t tmpfs (needs root, as in CI): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Self(dir.to_owned())
    }

    fn resize(&self, kib: u64) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k"), "tmpfs"])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn metric(g: &Gateway, name: &str) -> u64 {
    let m = g.admin_get("/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{m}")) as u64
}

/// The audit directory on a full file system (a 64 KiB tmpfs) with `on_failure =
/// "deny"`: once it fills, requests get 503 `audit_unavailable`; every 200 has its
/// record (counted by request id) and every 503 has none; when space returns, requests
/// pass again and the log verifies with exactly the served requests' records.
#[test]
fn disk_full_with_deny_gives_503_and_no_response_without_its_record() {
    let s = setup(
        "diskfull-deny",
        "on_failure = \"deny\"\nwrite_timeout_ms = 2000\n",
    );
    let fs = Tmpfs::mount(&s.data.join("audit"), 64);
    let g = Gateway::spawn(s.dir.clone(), s.config.clone()).unwrap();
    let (mut ok, mut refused) = (Vec::new(), Vec::new());
    for i in 0..600 {
        let r = g.get(&format!("/status?n={i}"));
        let id = r.header("x-request-id").unwrap().to_owned();
        match r.status {
            200 => ok.push(id),
            503 => {
                assert_eq!(assert_problem(&r, 503)["code"], "audit_unavailable");
                refused.push(id);
            }
            other => panic!("status {other}"),
        }
    }
    eprintln!(
        "disk full (deny): {} served, {} refused",
        ok.len(),
        refused.len()
    );
    assert!(
        ok.len() > 20,
        "the tmpfs filled before any record: {}",
        ok.len()
    );
    assert!(
        refused.len() > 100,
        "the disk never filled: {} refused",
        refused.len()
    );
    let h = g.admin_get("/healthz").text();
    assert!(h.contains("audit_write_failing"), "{h}");
    assert!(metric(&g, "rampart_audit_denied_total") >= refused.len() as u64);

    // Space returns: served again, and the records are exactly those of the 200s.
    fs.resize(4096);
    let mut after = 0;
    for i in 0..20 {
        let r = g.get(&format!("/status?after={i}"));
        if r.status == 200 {
            after += 1;
            ok.push(r.header("x-request-id").unwrap().to_owned());
        }
    }
    assert_eq!(after, 20, "{}", g.logs());
    stop(&g);
    std::thread::sleep(Duration::from_millis(300));
    let ids: Vec<String> = records(&s.data)
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    let written: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let missing: Vec<&String> = ok
        .iter()
        .filter(|id| !written.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "200s without a record: {missing:?}");
    let leaked: Vec<&String> = refused
        .iter()
        .filter(|id| written.contains(id.as_str()))
        .collect();
    assert!(leaked.is_empty(), "503s with a record: {leaked:?}");
    assert_eq!(ids.len(), ok.len(), "records != served requests");
    let v = rampart(&["audit", "verify", "--config"], &s.config);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    drop(fs);
}

/// The same full disk with `on_failure = "allow"`: requests are served, counted in
/// `rampart_audit_unaudited_total`, and `/healthz` carries the `warn` reason
/// `audit_write_failing`.
#[test]
fn disk_full_with_allow_serves_and_raises_a_warning() {
    let s = setup("diskfull-allow", "on_failure = \"allow\"\n");
    let _fs = Tmpfs::mount(&s.data.join("audit"), 64);
    let g = Gateway::spawn(s.dir.clone(), s.config.clone()).unwrap();
    for i in 0..400 {
        assert_eq!(g.get(&format!("/status?n={i}")).status, 200);
    }
    let unaudited = metric(&g, "rampart_audit_unaudited_total");
    assert!(unaudited > 100, "unaudited {unaudited}");
    let h: serde_json::Value = g.admin_get("/healthz").json();
    let reason = h["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "audit_write_failing")
        .unwrap_or_else(|| panic!("{h}"));
    assert_eq!(reason["severity"], "warn", "{h}");
    let written = records(&s.data).len() as u64;
    assert_eq!(
        written + unaudited,
        400,
        "every request is either recorded or counted"
    );
    g.signal(rustix::process::Signal::TERM);
}
