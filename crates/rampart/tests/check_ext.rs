//! `rampart check` beyond the core: certificate expiry (a warning alone exits 0), key
//! material presence, `--online` reachability of JWKS, Redis and PostgreSQL (local
//! stand-ins on loopback ports, and the real servers when `scripts/test` has started
//! them), `--format json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{bin, private_dir};

/// Runs `rampart check --format json` on `config` with extra environment variables.
fn check(
    dir: &Path,
    config: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, serde_json::Value) {
    let p = dir.join("check.toml");
    std::fs::write(&p, config).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["check", "--format", "json", "--config"])
        .arg(&p)
        .args(args);
    cmd.env_remove("SIGNING_PRIVATE_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), v)
}

fn codes(v: &serde_json::Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_owned(),
                f["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (year, month, day) `days` from today (UTC).
fn ymd_in(days: i64) -> (i32, u8, u8) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let z = (now / 86_400 + days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

/// A self-signed certificate valid from `from` days to `to` days from today, and its key,
/// written (key mode 0600) into `dir`.
fn tls_files(dir: &Path, from: i64, to: i64) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let (y, m, d) = ymd_in(from);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd_in(to);
    p.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    (c.display().to_string(), k.display().to_string())
}

fn tls_config(cert: &str, key: &str) -> String {
    format!(
        "profile = \"prod\"\n[server]\nlisten = \"127.0.0.1:8443\"\ntrusted_hosts = [\"api.example.com\"]\n\
         tls = {{ cert = \"file:{cert}\", key = \"file:{key}\" }}\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n"
    )
}

#[test]
fn certificate_expiry_warns_under_30_days_and_fails_when_expired() {
    let dir = private_dir("check-cert");
    let (c, k) = tls_files(&dir, -300, 10);
    let (code, v) = check(&dir, &tls_config(&c, &k), &[], &[]);
    assert_eq!(code, 0, "{v:#}");
    assert!(
        codes(&v).contains(&("warn".into(), "tls-cert-expiring".into())),
        "{v:#}"
    );
    let (c, k) = tls_files(&dir, -300, 200);
    let (code, v) = check(&dir, &tls_config(&c, &k), &[], &[]);
    assert_eq!(code, 0, "{v:#}");
    assert!(
        codes(&v).contains(&("info".into(), "tls-cert-valid".into())),
        "{v:#}"
    );
    let (c, k) = tls_files(&dir, -300, -2);
    let (code, v) = check(&dir, &tls_config(&c, &k), &[], &[]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        codes(&v).contains(&("error".into(), "tls-cert-expired".into())),
        "{v:#}"
    );
    assert_eq!(v["exit_code"], 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn key_material_presence_and_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = private_dir("check-keys");
    let (c, k) = tls_files(&dir, -1, 100);
    // The key readable by the group: refused (the check reads the file's mode afresh).
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, v) = check(&dir, &tls_config(&c, &k), &[], &[]);
    assert_ne!(code, 0, "{v:#}");
    assert!(v.to_string().contains("tls.key"), "{v:#}");
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The audit signing key from the environment: required, PEM, never printed.
    let cfg = format!(
        "{}[signing]\nprovider = \"env\"\nkey_id = \"audit-2026\"\n",
        tls_config(&c, &k)
    );
    let (code, v) = check(&dir, &cfg, &[], &[]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        codes(&v).contains(&("error".into(), "signing-key-missing".into())),
        "{v:#}"
    );
    let (code, v) = check(&dir, &cfg, &[], &[("SIGNING_PRIVATE_KEY", "not a key")]);
    assert_eq!(code, 1, "{v:#}");
    assert!(codes(&v).contains(&("error".into(), "signing-key-format".into())));
    assert!(!v.to_string().contains("not a key"));
    let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let (code, v) = check(&dir, &cfg, &[], &[("SIGNING_PRIVATE_KEY", &pem)]);
    assert_eq!(code, 0, "{v:#}");
    assert!(
        !v.to_string().contains("PRIVATE KEY-----\n"),
        "key material printed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A one-shot loopback server answering every connection with `answer`.
fn stand_in(answer: &'static [u8], read_first: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = vec![0u8; read_first];
            let _ = s.read_exact(&mut buf);
            let _ = s.write_all(answer);
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn online_config(jwks: u16, redis: u16, pg: u16) -> String {
    format!(
        "profile = \"dev\"\n[server]\nlisten = \"127.0.0.1:8080\"\ntrusted_hosts = [\"a.example\"]\n\
         [upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n\
         [auth.jwt]\nissuer = \"https://id.example/\"\naudience = [\"rampart\"]\njwks_url = \"http://127.0.0.1:{jwks}/jwks.json\"\n\
         [rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://:hunter2@127.0.0.1:{redis}/0\"\n\
         [store]\nurl = \"postgres://rampart:hunter2@127.0.0.1:{pg}/rampart\"\n"
    )
}

#[test]
fn online_reachability() {
    let dir = private_dir("check-online");
    let jwks = stand_in(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\nconnection: close\r\n\r\n{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}]}",
        16,
    );
    let redis = stand_in(b"+PONG\r\n", 14);
    let pg = stand_in(b"N", 8);
    let cfg = online_config(jwks, redis, pg);
    // Offline: no probe at all.
    let (code, v) = check(&dir, &cfg, &[], &[]);
    assert_eq!(code, 0, "{v:#}");
    assert!(codes(&v).iter().all(|(_, c)| !c.starts_with("online-")));
    let (code, v) = check(&dir, &cfg, &["--online"], &[]);
    assert_eq!(code, 0, "{v:#}");
    let c = codes(&v);
    for probe in ["online-jwks", "online-redis", "online-postgres"] {
        assert!(c.contains(&("info".into(), probe.into())), "{probe}: {v:#}");
    }
    assert!(
        !v.to_string().contains("hunter2"),
        "a URL password reached the output"
    );
    // Nothing listening: each probe fails, exit 1.
    let cfg = online_config(free_port(), free_port(), free_port());
    let (code, v) = check(&dir, &cfg, &["--online"], &[]);
    assert_eq!(code, 1, "{v:#}");
    let errors: Vec<_> = codes(&v)
        .into_iter()
        .filter(|(s, _)| s == "error")
        .map(|(_, c)| c)
        .collect();
    assert_eq!(errors, ["online-jwks", "online-redis", "online-postgres"]);
    assert!(!v.to_string().contains("hunter2"));
    let _ = std::fs::remove_dir_all(dir);
}

/// The real Redis and PostgreSQL that `scripts/test` starts, when they are up.
#[test]
fn online_reaches_real_redis_and_postgres() {
    let up = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    if !up(6379) || !up(5432) {
        // CI runs through scripts/test, which starts both: there this is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "Redis (6379) or PostgreSQL (5432) is not running; scripts/test starts them"
        );
        eprintln!("Redis or PostgreSQL not running on loopback: run through scripts/test");
        return;
    }
    let dir = private_dir("check-online-real");
    let jwks = stand_in(
        b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\n{\"keys\":[1]}",
        16,
    );
    let (code, v) = check(&dir, &online_config(jwks, 6379, 5432), &["--online"], &[]);
    assert_eq!(code, 0, "{v:#}");
    let text = v.to_string();
    assert!(text.contains("PostgreSQL"), "{v:#}");
    assert!(text.contains("Redis") || text.contains("PONG"), "{v:#}");
    let _ = std::fs::remove_dir_all(dir);
}
