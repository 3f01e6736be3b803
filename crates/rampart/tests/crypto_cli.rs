//! `rampart crypto` and the crypto side of `serve`, as the real binary against an SQLite
//! store in a private data root: encrypt/decrypt (tamper and wrong key exit 1 with no
//! plaintext), rotate-dek and rewrap on a populated store, a wrong KEK refusing the
//! start (exit 2 naming crypto.kek), `crypto_disabled`, the `crypto_*` metrics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;

struct Env {
    dir: PathBuf,
}

fn kek_b64(byte: u8) -> String {
    STANDARD.encode([byte; 32])
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = private_dir(name);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::set_permissions(
            dir.join("data"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let e = Env { dir };
        e.set_kek("kek1", 1);
        e.write_config("with-kek.toml", Some("kek1"));
        e.write_config("no-kek.toml", None);
        e
    }

    fn set_kek(&self, name: &str, byte: u8) -> PathBuf {
        let p = self.dir.join(name);
        write_private(&p, &format!("{}\n", kek_b64(byte)), 0o600);
        p
    }

    fn write_config(&self, file: &str, kek: Option<&str>) -> PathBuf {
        let crypto = kek
            .map(|k| format!("[crypto]\nkek = \"file:{}\"\n", self.dir.join(k).display()))
            .unwrap_or_default();
        let p = self.dir.join(file);
        std::fs::write(
            &p,
            format!(
                "profile = \"dev\"\n[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
                 trusted_hosts = [\"127.0.0.1\"]\ndata_dir = \"{d}/data\"\nallowed_data_roots = [\"{d}\"]\n\
                 [upstreams.app]\nurl = \"http://127.0.0.1:1\"\n\
                 [[routes]]\nid = \"status\"\npath = \"/status\"\nupstream = \"app\"\npublic = true\n\
                 {crypto}",
                d = self.dir.display()
            ),
        )
        .unwrap();
        p
    }

    fn config(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn run(&self, config: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--config")
            .arg(self.config(config))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn sqlite(&self, sql: &str) -> String {
        let o = Command::new("sqlite3")
            .arg(self.dir.join("data/rampart.db"))
            .arg(sql)
            .output()
            .expect("sqlite3 (Debian package sqlite3) reads the raw tables");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SECRETS: [(&str, &str); 3] = [
    ("device:alpha", "CLEAR-alpha-secret-7f3a9"),
    ("device:beta", "CLEAR-beta-secret-0c21e"),
    ("smtp-password", "CLEAR-smtp-hunter2-x"),
];

#[test]
fn status_disabled_without_kek() {
    let env = Env::new("crypto-disabled");
    let o = env.run("no-kek.toml", &["crypto", "status"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("disabled"), "{}", out(&o));
    let o = env.run(
        "no-kek.toml",
        &["crypto", "status", "--format", "json"],
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["mode"], "disabled");
    // Commands that need a key say which setting is missing (exit 2).
    let o = env.run("no-kek.toml", &["crypto", "encrypt"], b"x");
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("crypto.kek"), "{}", err(&o));
    // A file: KEK that group or other can read is refused, naming the setting.
    std::fs::set_permissions(
        env.dir.join("kek1"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let o = env.run("with-kek.toml", &["crypto", "status"], b"");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("crypto.kek") && err(&o).contains("group/other"),
        "{}",
        err(&o)
    );
}

#[test]
fn encrypt_decrypt_tamper_and_wrong_key() {
    let env = Env::new("crypto-encdec");
    let plain = b"CLEAR-operator-payload \x00\x01\xff binary too";
    let o = env.run("with-kek.toml", &["crypto", "encrypt"], plain);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let ct_text = out(&o);
    assert!(!ct_text.contains("CLEAR"));
    let ct = STANDARD.decode(ct_text.trim()).unwrap();
    assert_eq!(ct[0], 1, "format version byte");

    // File in, file out (0600).
    let ct_file = env.dir.join("msg.enc");
    std::fs::write(&ct_file, &ct_text).unwrap();
    let pt_file = env.dir.join("msg.txt");
    let o = env.run(
        "with-kek.toml",
        &[
            "crypto",
            "decrypt",
            ct_file.to_str().unwrap(),
            "--out",
            pt_file.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(std::fs::read(&pt_file).unwrap(), plain);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&pt_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // stdin to stdout.
    let o = env.run(
        "with-kek.toml",
        &["crypto", "decrypt", "-"],
        ct_text.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(o.stdout, plain);

    // Every single-bit flip anywhere: exit 1, nothing on stdout.
    for i in [0, 1, 5, ct.len() / 2, ct.len() - 1] {
        let mut t = ct.clone();
        t[i] ^= 0x04;
        let o = env.run(
            "with-kek.toml",
            &["crypto", "decrypt"],
            STANDARD.encode(&t).as_bytes(),
        );
        assert_eq!(o.status.code(), Some(1), "flip at {i}: {}", err(&o));
        assert!(o.stdout.is_empty(), "flip at {i} printed plaintext");
        assert!(!err(&o).contains("CLEAR"));
    }
    // A wrong KEK: exit 1, nothing printed.
    env.set_kek("kek-wrong", 9);
    env.write_config("wrong.toml", Some("kek-wrong"));
    let o = env.run("wrong.toml", &["crypto", "decrypt"], ct_text.as_bytes());
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(o.stdout.is_empty());
    assert!(err(&o).contains("crypto.kek"), "{}", err(&o));
    assert!(!err(&o).contains(&kek_b64(9)) && !err(&o).contains(&kek_b64(1)));
}

#[test]
fn rotate_and_rewrap_on_a_populated_store_then_everything_decrypts() {
    let env = Env::new("crypto-rotate");
    for (n, s) in SECRETS {
        let o = env.run("with-kek.toml", &["crypto", "put", n], s.as_bytes());
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    }
    let o = env.run(
        "with-kek.toml",
        &["crypto", "encrypt"],
        b"CLEAR-cli-message",
    );
    let cli_ct = out(&o);

    let o = env.run("with-kek.toml", &["crypto", "rotate-dek"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = env.run("with-kek.toml", &["crypto", "verify"], b"");
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("3 secrets decrypt, 0 do not"));
    // Secrets still name the first data key; a new one goes under the new primary.
    assert_eq!(
        env.sqlite("SELECT COUNT(DISTINCT dek_id) FROM secrets")
            .trim(),
        "1"
    );
    let o = env.run(
        "with-kek.toml",
        &["crypto", "rotate-dek", "--reencrypt"],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("re-encrypted 3 secrets"), "{}", out(&o));
    let primary = env.sqlite("SELECT id FROM data_keys WHERE is_primary = 1");
    assert_eq!(
        env.sqlite("SELECT DISTINCT dek_id FROM secrets").trim(),
        primary.trim()
    );
    assert_eq!(env.sqlite("SELECT COUNT(*) FROM data_keys").trim(), "3");

    // Rewrap under a new KEK from a file; a group-readable one is refused.
    let new_kek = env.set_kek("kek2", 2);
    std::fs::set_permissions(
        &new_kek,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let arg = format!("file:{}", new_kek.display());
    let o = env.run(
        "with-kek.toml",
        &["crypto", "rewrap", "--new-kek", &arg],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("group/other"), "{}", err(&o));
    std::fs::set_permissions(
        &new_kek,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let wrapped_before = env.sqlite("SELECT wrapped FROM data_keys ORDER BY id");
    let cts_before = env.sqlite("SELECT ciphertext FROM secrets ORDER BY name");
    let o = env.run(
        "with-kek.toml",
        &["crypto", "rewrap", "--new-kek", &arg],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("rewrapped 3 data keys"), "{}", out(&o));
    assert_ne!(
        env.sqlite("SELECT wrapped FROM data_keys ORDER BY id"),
        wrapped_before
    );
    assert_eq!(
        env.sqlite("SELECT ciphertext FROM secrets ORDER BY name"),
        cts_before,
        "rewrap re-encrypts no payload"
    );
    // The old KEK is now wrong; the new one decrypts everything, old CLI output too.
    let o = env.run("with-kek.toml", &["crypto", "verify"], b"");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    env.write_config("new.toml", Some("kek2"));
    let o = env.run("new.toml", &["crypto", "verify"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("3 secrets decrypt, 0 do not"));
    let o = env.run("new.toml", &["crypto", "decrypt"], cli_ct.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(o.stdout, b"CLEAR-cli-message");

    // Status: counts and age, never key material.
    let o = env.run("new.toml", &["crypto", "status", "--format", "json"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["mode"], "enabled");
    assert_eq!(v["data_keys"], 3);
    assert_eq!(v["secrets"], 3);
    assert!(v["active_key_age_seconds"].as_i64().unwrap() >= 0);
    assert!(!out(&o).contains(&kek_b64(2)));

    // The raw tables, read with sqlite3: no clear secret, no base64 of one.
    let raw = env.sqlite("SELECT * FROM secrets; SELECT * FROM data_keys;");
    for (_, s) in SECRETS {
        assert!(!raw.contains(s));
        assert!(!raw.contains(&STANDARD.encode(s)));
    }
    assert!(!raw.contains("CLEAR"));
    let db = std::fs::read(env.dir.join("data/rampart.db")).unwrap();
    assert!(!db.windows(5).any(|w| w == b"CLEAR"));
}

/// Runs `serve` expecting it to refuse the start; returns (exit code, stderr).
fn serve_refused(config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(config)
        .env("RAMPART_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(_s) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            return (o.status.code(), err(&o));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("serve did not refuse to start:\n{}", err(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_refuses_a_wrong_kek_and_reports_crypto() {
    let env = Env::new("crypto-serve");
    let o = env.run("with-kek.toml", &["crypto", "put", "device:a"], b"CLEAR-x");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));

    // Right KEK: starts; metrics say ready with one data key; promtool accepts them.
    let gw = Gateway::spawn(env.dir.join("gw-ok"), env.config("with-kek.toml")).unwrap();
    let m = gw.admin_get("/metrics").text();
    for line in [
        "crypto_ready 1",
        "crypto_keys_total 1",
        "# TYPE crypto_keys_total counter",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
    assert!(m.contains("crypto_active_label_age_seconds "));
    let f = env.dir.join("metrics.txt");
    std::fs::write(&f, &m).unwrap();
    let p = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", f.display()))
        .output()
        .unwrap();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stdout));
    let h = gw.admin_get("/healthz").json();
    assert!(
        !h["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "crypto_disabled")
    );
    // The store rewrapped under a new KEK while this gateway runs on the old one: within
    // a few seconds a `warn` reason says so and crypto is no longer ready.
    let new_kek = env.set_kek("kek-new", 9);
    let arg = format!("file:{}", new_kek.display());
    let o = env.run(
        "with-kek.toml",
        &["crypto", "rewrap", "--new-kek", &arg],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    let mismatch = loop {
        let h = gw.admin_get("/healthz");
        let seen = h.json()["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "crypto_kek_mismatch" && r["severity"] == "warn");
        if seen || std::time::Instant::now() > deadline {
            break (seen, h.status);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_eq!(mismatch, (true, 503));
    let m = gw.admin_get("/metrics").text();
    assert!(m.contains("crypto_ready 0"), "{m}");
    drop(gw);
    // with-kek.toml names the KEK the store is now wrapped under, for what follows.
    env.set_kek("kek1", 9);

    // Wrong KEK: exit 2, the message names crypto.kek, no key material.
    env.set_kek("kek-wrong", 7);
    let wrong = env.write_config("wrong.toml", Some("kek-wrong"));
    let (code, stderr) = serve_refused(&wrong);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("crypto.kek"), "{stderr}");
    assert!(!stderr.contains(&kek_b64(7)) && !stderr.contains(&kek_b64(1)));
    assert!(!stderr.contains("listening"));
    // `rampart check` says so beforehand (exit 1, the finding names crypto.kek, no key),
    // and passes with the KEK the store is wrapped under.
    let o = env.run("wrong.toml", &["check"], b"");
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("[crypto-kek] crypto.kek"), "{e}");
    assert!(!e.contains(&kek_b64(7)) && !e.contains(&kek_b64(9)), "{e}");
    let o = env.run("with-kek.toml", &["check"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(!err(&o).contains("crypto-kek"), "{}", err(&o));

    // A malformed KEK (not 32 bytes) is refused as configuration.
    write_private(&env.dir.join("kek-short"), "c2hvcnQ=\n", 0o600);
    let short = env.write_config("short.toml", Some("kek-short"));
    let (code, stderr) = serve_refused(&short);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("crypto.kek"), "{stderr}");

    // No KEK: starts, `crypto_disabled` is an info reason (healthz stays 200), not ready.
    let gw = Gateway::spawn(env.dir.join("gw-none"), env.config("no-kek.toml")).unwrap();
    let h = gw.admin_get("/healthz");
    assert_eq!(h.status, 200, "{}", h.text());
    let v = h.json();
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "crypto_disabled" && r["severity"] == "info"),
        "{v}"
    );
    let m = gw.admin_get("/metrics").text();
    assert!(m.contains("crypto_ready 0"), "{m}");
    assert!(m.contains("health_reason{reason=\"crypto_disabled\",severity=\"info\"} 1"));
}
