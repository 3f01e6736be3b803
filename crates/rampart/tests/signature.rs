//! Signed device requests (RFC 9421) end to end against the real binary: devices made
//! with `rampart device create`, requests signed by the independent PyPI
//! `http-message-signatures` (scripts/test installs it), hmac-sha256 and ed25519, with
//! and without a body, accepted and forwarded with the device's identity; replayed,
//! expired, future-dated, body-altered (the upstream never sees a complete request),
//! component-stripped, wrong-key, alg-confused, revoked and unknown devices refused with
//! 401 + `Accept-Signature`; rotation with an overlap (both verify) and `--overlap 0s`
//! (old refused); the raw SQLite tables hold no clear HMAC secret.
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
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use serde_json::{Value, json};

fn python(spec: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/sign_request.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs PyPI http-message-signatures)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python signer failed (scripts/test installs http-message-signatures): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Env {
    dir: PathBuf,
    config: PathBuf,
}

impl Env {
    fn new(upstream: std::net::SocketAddr) -> Env {
        let dir = private_dir("sig");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        write_private(
            &dir.join("kek"),
            &format!("{}\n", STANDARD.encode([5u8; 32])),
            0o600,
        );
        let config = dir.join("rampart.toml");
        std::fs::write(
            &config,
            format!(
                r#"profile = "dev"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
trusted_hosts = ["127.0.0.1"]
data_dir = "{d}/data"
allowed_data_roots = ["{d}"]
request_timeout_ms = 5000

[upstreams.app]
url = "http://{upstream}"

[auth]
modes = ["signature"]

[auth.signature]
max_age_s = 300
nonce_store = "memory"

[crypto]
kek = "file:{d}/kek"

[[routes]]
id = "api"
path = "/api"
upstream = "app"
scopes = ["telemetry"]
"#,
                d = dir.display()
            ),
        )
        .unwrap();
        Env { dir, config }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    fn gateway(&self) -> Gateway {
        Gateway::spawn(self.dir.clone(), self.config.clone()).unwrap()
    }
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a device signs with.
#[derive(Clone)]
enum Key {
    Hmac(String),
    Ed { private_pem: String },
}

struct Signed {
    headers: Vec<(String, String)>,
}

#[derive(Clone)]
struct Sign<'a> {
    keyid: &'a str,
    key: &'a Key,
    method: &'a str,
    target: &'a str,
    body: Option<&'a [u8]>,
    created: i64,
    nonce: String,
    covered: Option<Vec<&'a str>>,
    alg: Option<&'a str>,
}

impl<'a> Sign<'a> {
    fn new(keyid: &'a str, key: &'a Key, body: Option<&'a [u8]>) -> Self {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Sign {
            keyid,
            key,
            method: if body.is_some() { "POST" } else { "GET" },
            target: "/api/readings?batch=3",
            body,
            created: now(),
            nonce: format!(
                "n-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            covered: None,
            alg: None,
        }
    }

    fn sign(&self, host: &str) -> Signed {
        let (alg, key) = match self.key {
            Key::Hmac(s) => ("hmac-sha256", json!({ "secret_b64url": s })),
            Key::Ed { private_pem } => ("ed25519", json!({ "private_pem": private_pem })),
        };
        let mut spec = json!({
            "mode": "sign",
            "alg": self.alg.unwrap_or(alg),
            "keyid": self.keyid,
            "method": self.method,
            "url": format!("http://{host}{}", self.target),
            "headers": [["Host", host], ["Content-Type", "application/json"]],
            "body_b64": self.body.map(|b| STANDARD.encode(b)),
            "nonce": self.nonce,
            "created": self.created,
        });
        for (k, v) in key.as_object().unwrap() {
            spec[k] = v.clone();
        }
        if let Some(c) = &self.covered {
            spec["covered"] = json!(c);
            spec["cover_digest"] = json!(false);
        }
        let out = python(&spec);
        Signed {
            headers: out["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
        }
    }
}

fn host(gw: &Gateway) -> String {
    format!("127.0.0.1:{}", gw.addr.port())
}

/// Sends a signed request; `body` may differ from what was signed.
fn send(gw: &Gateway, s: &Sign<'_>, signed: &Signed, body: Option<&[u8]>) -> Resp {
    send_to(gw.addr, s, signed, body, &[])
}

/// Sends a signed request to `addr` with `extra` header fields (not signed).
fn send_to(
    addr: std::net::SocketAddr,
    s: &Sign<'_>,
    signed: &Signed,
    body: Option<&[u8]>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut req = format!("{} {} HTTP/1.1\r\n", s.method, s.target).into_bytes();
    for (n, v) in &signed.headers {
        req.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    for (n, v) in extra {
        req.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if let Some(b) = body {
        req.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    if let Some(b) = body {
        req.extend_from_slice(b);
    }
    raw_bytes(addr, &req)
}

fn sign_and_send(gw: &Gateway, s: &Sign<'_>) -> Resp {
    let signed = s.sign(&host(gw));
    send(gw, s, &signed, s.body)
}

fn assert_refused(r: &Resp, body: bool) {
    let v = assert_problem(r, 401);
    assert_eq!(
        v["detail"], "Valid credentials are required to access this route.",
        "one generic detail"
    );
    let accept = r.header("accept-signature").expect("Accept-Signature");
    assert!(accept.contains("\"@method\"") && accept.contains("\"@target-uri\""));
    assert!(
        accept.contains("created") && accept.contains("nonce"),
        "{accept}"
    );
    assert_eq!(accept.contains("content-digest"), body, "{accept}");
}

fn failures(gw: &Gateway, reason: &str) -> u64 {
    let m = gw.admin_get("/metrics").text();
    let needle =
        format!("rampart_auth_failures_total{{method=\"signature\",reason=\"{reason}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Retries `f` until it holds, for at most 5 s (the device sync promise).
fn within_5s(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

fn create_hmac(env: &Env, name: &str) -> Key {
    let out = ok(&env.cli(&[
        "device",
        "create",
        "--name",
        name,
        "--tenant",
        "acme",
        "--scopes",
        "telemetry jobs",
        "--roles",
        "sensor",
        "--alg",
        "hmac-sha256",
        "--format",
        "json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
    assert!(!secret.contains('='));
    Key::Hmac(secret)
}

fn create_ed(env: &Env, name: &str, form: &str) -> (Key, String) {
    let k = python(&json!({ "mode": "genkey" }));
    let pub_file = env.dir.join(format!("{name}.pub"));
    std::fs::write(&pub_file, k[form].as_str().unwrap()).unwrap();
    ok(&env.cli(&[
        "device",
        "create",
        "--name",
        name,
        "--tenant",
        "acme",
        "--scopes",
        "telemetry",
        "--alg",
        "ed25519",
        "--public-key",
        pub_file.to_str().unwrap(),
    ]));
    (
        Key::Ed {
            private_pem: k["private_pem"].as_str().unwrap().to_owned(),
        },
        k["public_pem"].as_str().unwrap().to_owned(),
    )
}

fn sqlite_dump(dir: &Path) -> String {
    let o = Command::new("sqlite3")
        .arg(dir.join("data/rampart.db"))
        .arg(".dump")
        .output()
        .expect("sqlite3 (Debian package sqlite3, installed by scripts/test)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn signed_requests_end_to_end() {
    let upstream = Upstream::start();
    let env = Env::new(upstream.addr);
    let hm = create_hmac(&env, "sensor-hmac");
    let (ed, ed_pub_pem) = create_ed(&env, "sensor-ed", "openssh");
    let (ed2, _) = create_ed(&env, "sensor-ed-pem", "public_pem");
    let gw = env.gateway();
    let body: &[u8] = b"{\"temp\": 21.5, \"unit\": \"C\"}";

    // Accepted: both algorithms, with and without a body, identity from the record.
    for (name, key) in [
        ("sensor-hmac", &hm),
        ("sensor-ed", &ed),
        ("sensor-ed-pem", &ed2),
    ] {
        for b in [None, Some(body)] {
            upstream.clear();
            let s = Sign::new(name, key, b);
            let r = sign_and_send(&gw, &s);
            assert_eq!(r.status, 200, "{name} body={}: {}", b.is_some(), r.text());
            let seen = upstream.last();
            assert_eq!(seen.header("x-rampart-subject"), Some(name));
            assert_eq!(seen.header("x-rampart-tenant"), Some("acme"));
            assert_eq!(seen.header("x-rampart-auth"), Some("signature"));
            assert!(
                seen.header("x-rampart-scopes")
                    .unwrap()
                    .contains("telemetry")
            );
            assert!(seen.body_complete);
            assert_eq!(seen.body_bytes, b.map_or(0, |b| b.len() as u64));

            // The same signed request again: a replay.
            let signed = s.sign(&host(&gw));
            assert_refused(&send(&gw, &s, &signed, b), b.is_some());
        }
    }
    assert!(failures(&gw, "signature_replay") >= 6);

    // Expired, future-dated.
    let mut s = Sign::new("sensor-hmac", &hm, None);
    s.created = now() - 301;
    assert_refused(&sign_and_send(&gw, &s), false);
    assert!(failures(&gw, "signature_expired") >= 1);
    let mut s = Sign::new("sensor-ed", &ed, None);
    s.created = now() + 120;
    assert_refused(&sign_and_send(&gw, &s), false);
    assert!(failures(&gw, "signature_future") >= 1);

    // Body altered after signing (same length): the upstream never sees it complete.
    for (name, key) in [("sensor-hmac", &hm), ("sensor-ed", &ed)] {
        upstream.clear();
        let s = Sign::new(name, key, Some(body));
        let signed = s.sign(&host(&gw));
        let altered: &[u8] = b"{\"temp\": 99.9, \"unit\": \"C\"}";
        assert_eq!(altered.len(), body.len());
        let r = send(&gw, &s, &signed, Some(altered));
        // Refused like any other signature, once the body shows the mismatch.
        assert_refused(&r, true);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            upstream.seen().iter().all(|x| !x.body_complete),
            "the upstream saw a complete altered request: {:?}",
            upstream.seen()
        );
    }

    // Components stripped: only @method; or a body without content-digest covered.
    let mut s = Sign::new("sensor-hmac", &hm, None);
    s.covered = Some(vec!["@method"]);
    assert_refused(&sign_and_send(&gw, &s), false);
    // (the Python signer always covers a digest of a body it is given: sign without it)
    let mut s = Sign::new("sensor-hmac", &hm, None);
    s.method = "POST";
    let signed = s.sign(&host(&gw));
    assert_refused(&send(&gw, &s, &signed, Some(body)), true);
    assert!(failures(&gw, "signature_components") >= 2);

    // Wrong key: another secret under the device's name.
    let wrong = Key::Hmac(URL_SAFE_NO_PAD.encode([42u8; 32]));
    assert_refused(
        &sign_and_send(&gw, &Sign::new("sensor-hmac", &wrong, None)),
        false,
    );
    let (other_ed, _) = (
        Key::Ed {
            private_pem: python(&json!({"mode": "genkey"}))["private_pem"]
                .as_str()
                .unwrap()
                .to_owned(),
        },
        (),
    );
    assert_refused(
        &sign_and_send(&gw, &Sign::new("sensor-ed", &other_ed, None)),
        false,
    );
    assert!(failures(&gw, "signature_invalid") >= 2);

    // Alg confusion: HMAC keyed with the Ed25519 device's public key, claiming hmac.
    let spki = ed_pub_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let raw_pub = &STANDARD.decode(spki).unwrap()[12..];
    let confused = Key::Hmac(URL_SAFE_NO_PAD.encode(raw_pub));
    assert_refused(
        &sign_and_send(&gw, &Sign::new("sensor-ed", &confused, None)),
        false,
    );
    assert!(failures(&gw, "signature_alg_mismatch") >= 1);
    // And without an alg parameter: still verified with the device's algorithm only.
    let s = Sign::new("sensor-ed", &confused, None);
    let mut signed = s.sign(&host(&gw));
    for (n, v) in &mut signed.headers {
        if n.eq_ignore_ascii_case("signature-input") {
            *v = v.replace(";alg=\"hmac-sha256\"", "");
        }
    }
    assert_refused(&send(&gw, &s, &signed, None), false);

    // Unknown device.
    assert_refused(&sign_and_send(&gw, &Sign::new("nobody", &hm, None)), false);
    assert!(failures(&gw, "signature_unknown_key") >= 1);

    // Rotation with the default overlap: old and new both verify.
    let out = ok(&env.cli(&["device", "rotate", "sensor-hmac", "--format", "json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let hm2 = Key::Hmac(v["secret"].as_str().unwrap().to_owned());
    assert!(v["previous_valid_until"].is_string());
    assert!(within_5s(|| sign_and_send(
        &gw,
        &Sign::new("sensor-hmac", &hm2, None)
    )
    .status
        == 200));
    assert_eq!(
        sign_and_send(&gw, &Sign::new("sensor-hmac", &hm, None)).status,
        200
    );
    // --overlap 0s: the previous secret stops at once.
    let out = ok(&env.cli(&[
        "device",
        "rotate",
        "sensor-hmac",
        "--overlap",
        "0s",
        "--format",
        "json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let hm3 = Key::Hmac(v["secret"].as_str().unwrap().to_owned());
    assert!(within_5s(|| sign_and_send(
        &gw,
        &Sign::new("sensor-hmac", &hm3, None)
    )
    .status
        == 200));
    assert_refused(
        &sign_and_send(&gw, &Sign::new("sensor-hmac", &hm2, None)),
        false,
    );
    assert_refused(
        &sign_and_send(&gw, &Sign::new("sensor-hmac", &hm, None)),
        false,
    );
    // An Ed25519 rotation with overlap.
    let k = python(&json!({ "mode": "genkey" }));
    let p = env.dir.join("ed-new.pub");
    std::fs::write(&p, k["public_pem"].as_str().unwrap()).unwrap();
    ok(&env.cli(&[
        "device",
        "rotate",
        "sensor-ed",
        "--public-key",
        p.to_str().unwrap(),
        "--overlap",
        "1h",
    ]));
    let ed_new = Key::Ed {
        private_pem: k["private_pem"].as_str().unwrap().to_owned(),
    };
    assert!(within_5s(|| sign_and_send(
        &gw,
        &Sign::new("sensor-ed", &ed_new, None)
    )
    .status
        == 200));
    assert_eq!(
        sign_and_send(&gw, &Sign::new("sensor-ed", &ed, None)).status,
        200
    );

    // The raw SQLite file holds no clear HMAC secret (any encoding).
    let dump = sqlite_dump(&env.dir);
    assert!(dump.contains("CREATE TABLE devices"));
    for k in [&hm, &hm2, &hm3] {
        let Key::Hmac(s) = k else { unreachable!() };
        let raw = URL_SAFE_NO_PAD.decode(s).unwrap();
        assert!(!dump.contains(s.as_str()));
        assert!(!dump.contains(&STANDARD.encode(&raw)));
        assert!(
            !dump
                .to_ascii_lowercase()
                .contains(&raw.iter().map(|b| format!("{b:02x}")).collect::<String>())
        );
    }
    // `list` never shows a secret.
    let list = ok(&env.cli(&["device", "list", "--format", "json"]));
    let Key::Hmac(s3) = &hm3 else { unreachable!() };
    assert!(!list.contains(s3.as_str()));
    let v: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);

    // Revoke: refused within 5 s.
    ok(&env.cli(&["device", "revoke", "sensor-hmac"]));
    assert!(within_5s(|| sign_and_send(
        &gw,
        &Sign::new("sensor-hmac", &hm3, None)
    )
    .status
        == 401));
    assert_refused(
        &sign_and_send(&gw, &Sign::new("sensor-hmac", &hm3, None)),
        false,
    );
    // Unsigned requests get the challenge too.
    let r = gw.get("/api/readings");
    assert_eq!(r.status, 401);
}

#[test]
fn device_cli_usage_errors() {
    let upstream = Upstream::start();
    let env = Env::new(upstream.addr);
    // No KEK: an HMAC device cannot be created (exit 2 naming crypto.kek).
    let text = std::fs::read_to_string(&env.config).unwrap();
    let no_kek = env.dir.join("no-kek.toml");
    std::fs::write(
        &no_kek,
        text.replace(
            &format!("[crypto]\nkek = \"file:{}/kek\"\n", env.dir.display()),
            "",
        ),
    )
    .unwrap();
    let o = Command::new(bin())
        .args([
            "device",
            "create",
            "--name",
            "x",
            "--tenant",
            "acme",
            "--alg",
            "hmac-sha256",
            "--config",
        ])
        .arg(&no_kek)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("crypto.kek"));
    // ed25519 without a key, a private key given as public, a bad overlap: exit 2.
    let o = env.cli(&[
        "device", "create", "--name", "y", "--tenant", "acme", "--alg", "ed25519",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let k = python(&json!({ "mode": "genkey" }));
    let p = env.dir.join("priv.pem");
    std::fs::write(&p, k["private_pem"].as_str().unwrap()).unwrap();
    let o = env.cli(&[
        "device",
        "create",
        "--name",
        "y",
        "--tenant",
        "acme",
        "--alg",
        "ed25519",
        "--public-key",
        p.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("private key"));
    let o = env.cli(&["device", "rotate", "y", "--overlap", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    // Unknown device: exit 1.
    let o = env.cli(&["device", "revoke", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let o = env.cli(&["device", "rotate", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    // Duplicate name: exit 2 (usage).
    create_hmac(&env, "dup");
    let o = env.cli(&[
        "device",
        "create",
        "--name",
        "dup",
        "--tenant",
        "acme",
        "--alg",
        "hmac-sha256",
    ]);
    assert_eq!(o.status.code(), Some(2));
    // --help has an example.
    let o = Command::new(bin())
        .args(["device", "create", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("Example"));
    let _ = std::fs::remove_dir_all(&env.dir);
}

/// Adds the `jwt` mode (HS256, dev) after `signature` in `auth.modes`.
fn with_jwt(env: &Env) {
    write_private(
        &env.dir.join("jwt"),
        "dev-jwt-secret-0123456789abcdef0123456789",
        0o600,
    );
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "modes = [\"signature\"]",
        "modes = [\"signature\", \"jwt\"]",
    ) + &format!(
        "[auth.jwt]\nissuer = \"rampart-dev\"\naudience = [\"rampart\"]\nhs256_secret = \"file:{}/jwt\"\nallowed_algs = [\"HS256\"]\n",
        env.dir.display()
    );
    std::fs::write(&env.config, text).unwrap();
}

fn mint(env: &Env, sub: &str, scopes: &str) -> String {
    ok(&env.cli(&["token", "mint", "--sub", sub, "--scopes", scopes]))
        .trim()
        .to_owned()
}

/// Issue 12 on signed requests: a signature and a JWT on one request must both verify;
/// the caller is the signature's device (`signature` is listed first).
#[test]
fn signature_beside_a_jwt_must_both_verify() {
    let upstream = Upstream::start();
    let env = Env::new(upstream.addr);
    with_jwt(&env);
    let (ed, _) = create_ed(&env, "sensor-both", "openssh");
    let gw = env.gateway();
    let good = mint(&env, "alice", "telemetry");
    let bad = format!("{}x", &good[..good.len() - 1]);
    let body: &[u8] = b"{\"temp\": 20}";
    let bearer = |t: &str| format!("Bearer {t}");

    // Valid signature + bad JWT: refused with the JWT's challenge, nothing forwarded.
    for b in [None, Some(body)] {
        upstream.clear();
        let s = Sign::new("sensor-both", &ed, b);
        let signed = s.sign(&host(&gw));
        let r = send_to(gw.addr, &s, &signed, b, &[("Authorization", &bearer(&bad))]);
        assert_problem(&r, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
        assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    }
    // Bad signature (another key) + valid JWT: refused with Accept-Signature.
    let (other, _) = (
        Key::Ed {
            private_pem: python(&json!({"mode": "genkey"}))["private_pem"]
                .as_str()
                .unwrap()
                .to_owned(),
        },
        (),
    );
    let s = Sign::new("sensor-both", &other, None);
    let signed = s.sign(&host(&gw));
    let r = send_to(
        gw.addr,
        &s,
        &signed,
        None,
        &[("Authorization", &bearer(&good))],
    );
    assert_refused(&r, false);
    assert!(failures(&gw, "signature_invalid") >= 1);
    // Both valid: the device is the caller, with or without a body.
    for b in [None, Some(body)] {
        upstream.clear();
        let s = Sign::new("sensor-both", &ed, b);
        let signed = s.sign(&host(&gw));
        let r = send_to(
            gw.addr,
            &s,
            &signed,
            b,
            &[("Authorization", &bearer(&good))],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = upstream.last();
        assert_eq!(seen.header("x-rampart-auth"), Some("signature"));
        assert_eq!(seen.header("x-rampart-subject"), Some("sensor-both"));
        assert!(seen.body_complete);
    }
    // The JWT alone still works, and counted failures name the failing mode.
    upstream.clear();
    let r = raw(
        gw.addr,
        &format!(
            "GET /api/readings HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {good}\r\nConnection: close\r\n\r\n",
            host(&gw)
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(upstream.last().header("x-rampart-subject"), Some("alice"));
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("rampart_auth_failures_total{method=\"jwt\"")),
        "{m}"
    );
}

/// Issue 18: devices on `/admin/*`. A signed request from a device with the `admin` scope
/// lists devices and adds a revocation (the body's digest checked); a replay, a body
/// altered after signing and a device without the scope are refused.
#[test]
fn signed_requests_on_the_admin_api() {
    let upstream = Upstream::start();
    let env = Env::new(upstream.addr);
    with_jwt(&env);
    let k = python(&json!({ "mode": "genkey" }));
    let pub_file = env.dir.join("ops.pub");
    std::fs::write(&pub_file, k["openssh"].as_str().unwrap()).unwrap();
    ok(&env.cli(&[
        "device",
        "create",
        "--name",
        "ops-console",
        "--tenant",
        "acme",
        "--scopes",
        "admin",
        "--alg",
        "ed25519",
        "--public-key",
        pub_file.to_str().unwrap(),
    ]));
    let ops = Key::Ed {
        private_pem: k["private_pem"].as_str().unwrap().to_owned(),
    };
    let (sensor, _) = create_ed(&env, "plain-sensor", "openssh");
    let gw = env.gateway();
    let admin = gw.admin.unwrap();
    let admin_host = format!("127.0.0.1:{}", admin.port());
    let at = |s: &mut Sign<'_>, method: &'static str, target: &'static str| {
        s.method = method;
        s.target = target;
    };

    // GET /admin/devices, signed for the admin listener.
    let mut s = Sign::new("ops-console", &ops, None);
    at(&mut s, "GET", "/admin/devices");
    let signed = s.sign(&admin_host);
    let r = send_to(admin, &s, &signed, None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let names: Vec<String> = r.json()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"ops-console".to_owned()), "{names:?}");
    // The same request again: a replay.
    let r = send_to(admin, &s, &signed, None, &[]);
    assert_eq!(r.status, 401);
    assert!(
        r.header("accept-signature")
            .unwrap()
            .contains("\"@method\"")
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("Signature realm=\"rampart-admin\"")
    );
    assert!(failures(&gw, "signature_replay") >= 1);

    // POST /admin/revocations with a signed body.
    let body = br#"{"kind":"subject","value":"mallory","until":null,"reason":"signed"}"#;
    let mut s = Sign::new("ops-console", &ops, Some(body));
    at(&mut s, "POST", "/admin/revocations");
    let signed = s.sign(&admin_host);
    let r = send_to(admin, &s, &signed, Some(body), &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["value"], "mallory");
    // Altered after signing (same length): refused, nothing written.
    let altered = br#"{"kind":"subject","value":"mallorz","until":null,"reason":"signed"}"#;
    assert_eq!(altered.len(), body.len());
    let mut s = Sign::new("ops-console", &ops, Some(body));
    at(&mut s, "POST", "/admin/revocations");
    let signed = s.sign(&admin_host);
    let r = send_to(admin, &s, &signed, Some(altered), &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.header("accept-signature")
            .unwrap()
            .contains("content-digest")
    );
    assert!(failures(&gw, "digest_mismatch") >= 1);
    // The target URI is the one the admin listener rebuilds: a signature made for
    // another path, or another authority, does not verify.
    let mut s = Sign::new("ops-console", &ops, None);
    at(&mut s, "GET", "/admin/revocations");
    let signed = s.sign(&admin_host);
    at(&mut s, "GET", "/admin/devices");
    assert_eq!(send_to(admin, &s, &signed, None, &[]).status, 401);
    let mut s = Sign::new("ops-console", &ops, None);
    at(&mut s, "GET", "/admin/devices");
    let mut signed = s.sign(&admin_host);
    for (n, v) in &mut signed.headers {
        if n.eq_ignore_ascii_case("host") {
            *v = format!("localhost:{}", admin.port());
        }
    }
    assert_eq!(send_to(admin, &s, &signed, None, &[]).status, 401);
    assert!(failures(&gw, "signature_invalid") >= 2);
    // A device without the admin scope.
    let mut s = Sign::new("plain-sensor", &sensor, None);
    at(&mut s, "GET", "/admin/devices");
    let signed = s.sign(&admin_host);
    assert_eq!(send_to(admin, &s, &signed, None, &[]).status, 403);
    // No credential at all: asked to sign (RFC 9421 §5.1), beside the bearer challenge
    // (JWTs are accepted too here), on both listeners; `content-digest` with a body.
    let r = admin_call(&gw, "GET", "/admin/devices", None, "");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"rampart-admin\", Signature realm=\"rampart-admin\"")
    );
    assert_eq!(
        r.header("accept-signature"),
        Some("sig=(\"@method\" \"@target-uri\");created;nonce")
    );
    let r = raw(
        gw.addr,
        "POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"rampart\", Signature realm=\"rampart\"")
    );
    assert_eq!(
        r.header("accept-signature"),
        Some("sig=(\"@method\" \"@target-uri\" \"content-digest\");created;nonce")
    );
    // The status page (`/admin/status.json`, `/`): the same rule, signed requests included.
    for page in ["/admin/status.json", "/"] {
        let mut s = Sign::new("ops-console", &ops, None);
        at(&mut s, "GET", page);
        let signed = s.sign(&admin_host);
        let r = send_to(admin, &s, &signed, None, &[]);
        assert_eq!(r.status, 200, "{page}: {}", r.text());
        if page == "/" {
            assert!(r.text().contains("<html"), "{}", r.text());
        } else {
            assert!(r.json()["build"].is_object(), "{}", r.text());
        }
        // Replayed, signed for another page, or by a device without the scope.
        assert_eq!(send_to(admin, &s, &signed, None, &[]).status, 401);
        let mut s = Sign::new("ops-console", &ops, None);
        at(&mut s, "GET", "/admin/devices");
        let signed = s.sign(&admin_host);
        at(&mut s, "GET", page);
        assert_eq!(send_to(admin, &s, &signed, None, &[]).status, 401);
        let mut s = Sign::new("plain-sensor", &sensor, None);
        at(&mut s, "GET", page);
        let signed = s.sign(&admin_host);
        assert_eq!(send_to(admin, &s, &signed, None, &[]).status, 403);
    }
    // A signature and a JWT together on the admin API: two credentials.
    let root = mint(&env, "root", "admin");
    let mut s = Sign::new("ops-console", &ops, None);
    at(&mut s, "GET", "/admin/devices");
    let signed = s.sign(&admin_host);
    let r = send_to(
        admin,
        &s,
        &signed,
        None,
        &[("Authorization", &format!("Bearer {root}"))],
    );
    assert_eq!(r.status, 401);
    // Only the one good revocation was written.
    let r = admin_call(&gw, "GET", "/admin/revocations", Some(&root), "");
    assert_eq!(r.status, 200);
    let values: Vec<String> = r.json()["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(values, vec!["mallory".to_owned()]);
}

fn admin_call(gw: &Gateway, method: &str, path: &str, token: Option<&str>, body: &str) -> Resp {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    raw(
        gw.admin.unwrap(),
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// `/admin/devices`: the same access rule as `/admin/revocations` (admin scope), create
/// (HMAC secret once), rotate, revoke, list; changes reach the gateway within 5 s.
#[test]
fn admin_devices_api() {
    let upstream = Upstream::start();
    let env = Env::new(upstream.addr);
    with_jwt(&env);
    let gw = env.gateway();
    let mint = |sub: &str, scopes: &str| {
        ok(&env.cli(&["token", "mint", "--sub", sub, "--scopes", scopes]))
            .trim()
            .to_owned()
    };
    let root = mint("root", "admin");
    let user = mint("user", "telemetry");
    assert_eq!(
        admin_call(&gw, "GET", "/admin/devices", None, "").status,
        401
    );
    assert_eq!(
        admin_call(&gw, "GET", "/admin/devices", Some(&user), "").status,
        403
    );

    let r = admin_call(
        &gw,
        "POST",
        "/admin/devices",
        Some(&root),
        r#"{"name":"adm-1","tenant":"acme","scopes":["telemetry"],"alg":"hmac-sha256"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(
        (v["name"].as_str(), v["alg"].as_str()),
        (Some("adm-1"), Some("hmac-sha256"))
    );
    let k1 = Key::Hmac(v["secret"].as_str().unwrap().to_owned());
    let again = admin_call(
        &gw,
        "POST",
        "/admin/devices",
        Some(&root),
        r#"{"name":"adm-1","tenant":"acme","alg":"hmac-sha256"}"#,
    );
    assert_eq!(again.status, 409);
    let kp = python(&json!({ "mode": "genkey" }));
    let body =
        json!({"name": "adm-ed", "tenant": "acme", "scopes": ["telemetry"], "alg": "ed25519",
                      "public_key": kp["openssh"]})
        .to_string();
    let r = admin_call(&gw, "POST", "/admin/devices", Some(&root), &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.json().get("secret").is_none());
    let body = json!({"name": "adm-bad", "tenant": "acme", "alg": "ed25519",
                      "public_key": kp["private_pem"]})
    .to_string();
    assert_eq!(
        admin_call(&gw, "POST", "/admin/devices", Some(&root), &body).status,
        400
    );
    assert_eq!(
        admin_call(
            &gw,
            "POST",
            "/admin/devices",
            Some(&root),
            r#"{"name":"x","tenant":"a","alg":"rsa"}"#
        )
        .status,
        400
    );

    // Made through the API, usable within 5 s.
    assert!(within_5s(|| sign_and_send(
        &gw,
        &Sign::new("adm-1", &k1, None)
    )
    .status
        == 200));
    let ed = Key::Ed {
        private_pem: kp["private_pem"].as_str().unwrap().to_owned(),
    };
    assert!(within_5s(|| sign_and_send(
        &gw,
        &Sign::new("adm-ed", &ed, None)
    )
    .status
        == 200));

    // Rotate with no overlap: the new secret works, the old one stops.
    let r = admin_call(
        &gw,
        "POST",
        "/admin/devices/adm-1/rotate",
        Some(&root),
        r#"{"overlap_s":0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let k2 = Key::Hmac(r.json()["secret"].as_str().unwrap().to_owned());
    assert!(within_5s(|| sign_and_send(
        &gw,
        &Sign::new("adm-1", &k2, None)
    )
    .status
        == 200));
    assert_refused(&sign_and_send(&gw, &Sign::new("adm-1", &k1, None)), false);
    assert_eq!(
        admin_call(&gw, "POST", "/admin/devices/nope/rotate", Some(&root), "").status,
        404
    );

    // List and get: metadata only.
    let r = admin_call(&gw, "GET", "/admin/devices", Some(&root), "");
    assert_eq!(r.status, 200);
    let Key::Hmac(s2) = &k2 else { unreachable!() };
    assert!(!r.text().contains(s2.as_str()));
    assert_eq!(r.json()["devices"].as_array().unwrap().len(), 2);
    let r = admin_call(&gw, "GET", "/admin/devices/adm-ed", Some(&root), "");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("active"))
    );
    assert_eq!(
        admin_call(&gw, "GET", "/admin/devices/nope", Some(&root), "").status,
        404
    );

    // Revoke: refused within 5 s.
    let r = admin_call(&gw, "POST", "/admin/devices/adm-1/revoke", Some(&root), "");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("revoked"))
    );
    assert!(within_5s(|| sign_and_send(
        &gw,
        &Sign::new("adm-1", &k2, None)
    )
    .status
        == 401));
    assert_eq!(
        admin_call(&gw, "POST", "/admin/devices/nope/revoke", Some(&root), "").status,
        404
    );
    assert_eq!(
        admin_call(&gw, "DELETE", "/admin/devices/adm-ed", Some(&root), "").status,
        405
    );
}

/// `nonce_store = "redis"`: two gateways on the same store and Redis; a request accepted
/// by one is a replay at the other.
#[test]
fn redis_nonce_store_shares_nonces_between_gateways() {
    let upstream = Upstream::start();
    let env = Env::new(upstream.addr);
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("nonce_store = \"memory\"", "nonce_store = \"redis\"")
        + "[redis]\nurl = \"redis://127.0.0.1:6379\"\n";
    std::fs::write(&env.config, text).unwrap();
    let hm = create_hmac(&env, "shared-dev");
    let a = env.gateway();
    let b = Gateway::spawn(env.dir.clone(), env.config.clone()).unwrap();
    for gw in [&a, &b] {
        let s = Sign::new("shared-dev", &hm, Some(b"{}"));
        // Both gateways listen on 127.0.0.1 with their own port: sign for the one that
        // accepts, replay (same Host, same target) at the other through its own socket.
        let signed = s.sign(&host(gw));
        assert_eq!(send(gw, &s, &signed, Some(b"{}")).status, 200);
        let other = if std::ptr::eq(gw, &a) { &b } else { &a };
        let mut req = format!("{} {} HTTP/1.1\r\n", s.method, s.target).into_bytes();
        for (n, v) in &signed.headers {
            req.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        req.extend_from_slice(b"Content-Length: 2\r\nConnection: close\r\n\r\n{}");
        let r = raw_bytes(other.addr, &req);
        assert_refused(&r, true);
        assert!(
            failures(other, "signature_replay") >= 1,
            "replay counted at the other gateway"
        );
    }
}
