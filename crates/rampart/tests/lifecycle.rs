//! Reload, drain, admin endpoints and `rampart check`, against the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rustix::process::Signal;

#[test]
fn sighup_reload_good_then_bad() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, ""));
    assert_eq!(gw.get("/added").status, 404);
    // Good: a new route appears.
    let good = base_config(
        up.addr,
        "\n[[routes]]\nid = \"added\"\npath = \"/added\"\nupstream = \"app\"\npublic = true\n",
    );
    std::fs::write(&gw.config, good).unwrap();
    gw.signal(Signal::HUP);
    assert!(
        gw.wait_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        gw.logs()
    );
    assert_eq!(gw.get("/added").status, 200);
    // Bad: a typo is rejected with the reason; the running config keeps serving.
    std::fs::write(
        &gw.config,
        "profile = \"dev\"\n[server]\nlistne = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    gw.signal(Signal::HUP);
    assert!(
        gw.wait_log("reload rejected", Duration::from_secs(5)),
        "{}",
        gw.logs()
    );
    assert!(
        gw.logs().contains("listne"),
        "reason not logged: {}",
        gw.logs()
    );
    assert_eq!(gw.get("/added").status, 200);
    assert_eq!(gw.get("/status").status, 200);
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("rampart_config_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rampart_config_reloads_total{result=\"rejected\"} 1"),
        "{m}"
    );
}

#[test]
fn sigterm_drains_in_flight_request() {
    let up = Upstream::start();
    let mut gw = Gateway::start(&base_config(up.addr, ""));
    let addr = gw.addr;
    let slow = std::thread::spawn(move || {
        raw(
            addr,
            "GET /slow/1500 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
    });
    // Let the request reach the upstream, then ask the gateway to stop.
    let end = Instant::now() + Duration::from_secs(5);
    while up.seen().is_empty() {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(10));
    }
    gw.signal(Signal::TERM);
    assert!(gw.wait_log("shutting down", Duration::from_secs(5)));
    // New connections are refused once draining.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "new connection accepted while draining"
    );
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "in-flight request did not complete");
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(gw.logs().contains("drained"));
}

#[test]
fn admin_endpoints_and_promtool() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, ""));
    for p in ["/status", "/nowhere", "/status%2f"] {
        let _ = gw.get(p);
    }
    let live = gw.admin_get("/live");
    assert_eq!(live.status, 200);
    let h = gw.admin_get("/healthz");
    assert_eq!(h.status, 200, "{}", h.text());
    let v = h.json();
    assert_eq!(v["status"], "ok");
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "profile_dev" && r["severity"] == "info")
    );
    let ver = gw.admin_get("/version").json();
    for k in ["version", "commit", "branch", "build_time"] {
        assert!(ver[k].as_str().is_some_and(|s| !s.is_empty()), "{k}: {ver}");
    }
    let m = gw.admin_get("/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    for name in [
        "rampart_requests_total{route=\"status\",status=\"200\",decision=\"allow\"} 1",
        "rampart_requests_total{route=\"\",status=\"404\",decision=\"deny\"} 1",
        "rampart_request_duration_seconds_bucket{route=\"status\",le=\"+Inf\"} 1",
        "health_overall 1",
        "health_reason{reason=\"profile_dev\",severity=\"info\"} 1",
        "rampart_build_info{version=",
        "# TYPE rampart_upstream_errors_total counter",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    let dir = private_dir("prom");
    let f = dir.join("metrics.txt");
    std::fs::write(&f, &text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", f.display()))
        .output()
        .expect("promtool (Debian package prometheus) must be installed; scripts/test installs it");
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn check(config: &str, dir: &std::path::Path) -> (i32, String) {
    let p = dir.join("check.toml");
    std::fs::write(&p, config).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn roots_config(root: &std::path::Path) -> String {
    format!(
        "profile = \"prod\"\n[server]\nlisten = \"127.0.0.1:8080\"\ntrusted_hosts = [\"api.example.com\"]\n\
         data_dir = \"{0}\"\nallowed_data_roots = [\"{0}\"]\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n",
        root.display()
    )
}

#[test]
fn check_accepts_a_good_root_and_refuses_bad_ones() {
    use std::os::unix::fs::PermissionsExt;
    let dir = private_dir("check");
    let good = dir.join("data");
    std::fs::create_dir(&good).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o750)).unwrap();
    let (code, out) = check(&roots_config(&good), &dir);
    assert_eq!(code, 0, "{out}");

    // Mode 0777.
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, out) = check(&roots_config(&good), &dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("mode"), "{out}");
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o750)).unwrap();

    // Under /tmp (world-writable, sticky ancestor).
    let tmp = tempfile::Builder::new()
        .prefix("rampart-root")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, out) = check(&roots_config(tmp.path()), &dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("/tmp"), "{out}");

    // Missing: refused and not created.
    let missing = dir.join("missing");
    let (code, out) = check(&roots_config(&missing), &dir);
    assert_eq!(code, 1, "{out}");
    assert!(!missing.exists(), "check created the missing root");

    // Owned by another user (needs root to chown).
    if rustix::process::geteuid().is_root() {
        let other = dir.join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o750)).unwrap();
        rustix::fs::chown(&other, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
        let (code, out) = check(&roots_config(&other), &dir);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("own"), "{out}");
    } else {
        eprintln!("not root: the other-owner case is covered by rampart-config's unit tests");
    }

    // `serve` refuses to start on a bad root, naming the check, and does not create it.
    let missing_cfg = roots_config(&missing).replace("profile = \"prod\"", "profile = \"dev\"");
    let err = Gateway::try_start(&missing_cfg)
        .err()
        .expect("serve started with a missing data root");
    assert!(
        err.contains("missing") || err.contains("does not exist"),
        "{err}"
    );
    assert!(!missing.exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_refuses_group_readable_secret_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = private_dir("secret");
    let key = dir.join("tls.key");
    let cert = dir.join("tls.crt");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    write_private(&cert, &ck.cert.pem(), 0o644);
    write_private(&key, &ck.signing_key.serialize_pem(), 0o644);
    let cfg = format!(
        "profile = \"prod\"\n[server]\nlisten = \"127.0.0.1:8443\"\ntrusted_hosts = [\"api.example.com\"]\n\
         tls = {{ cert = \"file:{}\", key = \"file:{}\" }}\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n",
        cert.display(),
        key.display()
    );
    let (code, out) = check(&cfg, &dir);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("tls.key") && (out.contains("0644") || out.contains("644")),
        "{out}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = check(&cfg, &dir);
    assert_eq!(code, 0, "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_names_unknown_keys_with_line_and_suggestion() {
    let dir = private_dir("typo");
    let (code, out) = check(
        "profile = \"dev\"\n[server]\nlisten = \"127.0.0.1:1\"\ntrusted_host = []\n",
        &dir,
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("check.toml") && out.contains(":4") && out.contains("trusted_hosts"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connection_cap_closes_excess_connections() {
    use std::io::{Read, Write};
    let up = Upstream::start();
    let cfg = base_config(up.addr, "").replace(
        "drain_timeout_ms = 10000",
        "drain_timeout_ms = 10000\nmax_connections = 2",
    );
    let gw = Gateway::start(&cfg);
    // Two idle keep-alive connections hold both slots.
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
            s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
            s
        })
        .collect();
    let mut third = std::net::TcpStream::connect(gw.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = third.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut buf = [0u8; 16];
    let n = third.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "third connection was served");
    let m = gw.admin_get("/metrics").text();
    assert!(m.contains("rampart_connections_rejected_total 1"), "{m}");
    drop(held);
    // Slots free up again.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let r = try_raw(
            gw.addr,
            b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        );
        if r.is_some_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fail_open_choices_are_visible_in_healthz_and_metrics() {
    let up = Upstream::start();
    // [audit] opens a real audit log: it needs a data root and a signing key.
    let dir = private_dir("failopen");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = format!(
        "{}\n[rate_limit]\non_backend_error = \"allow\"\n\n[audit]\non_failure = \"allow\"\n\n[signing]\nprovider = \"file\"\n",
        base_config(up.addr, "")
    )
    .replacen(
        "[server]\n",
        &format!(
            "[server]\ndata_dir = \"{0}\"\nallowed_data_roots = [\"{0}\"]\n",
            data.display()
        ),
        1,
    );
    let path = dir.join("rampart.toml");
    std::fs::write(&path, cfg).unwrap();
    let keys = std::process::Command::new(bin())
        .args(["keys", "generate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(keys.status.success());
    let gw = Gateway::spawn(dir, path).unwrap();
    let h = gw.admin_get("/healthz");
    assert_eq!(h.status, 200, "{}", h.text());
    let v = h.json();
    let reasons: Vec<&str> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"fail_open_rate_limit"), "{v}");
    assert!(reasons.contains(&"fail_open_audit"), "{v}");
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("health_reason{reason=\"fail_open_rate_limit\",severity=\"info\"} 1"),
        "{m}"
    );
}

/// `server.listen_backlog` sets the accept queue of both listeners (`ss -ltn` shows it
/// as Send-Q of a listening socket), capped by the kernel's `somaxconn`.
#[test]
fn listen_backlog_is_applied_to_both_listeners() {
    let up = Upstream::start();
    let cfg = base_config(up.addr, "").replace(
        "drain_timeout_ms = 10000",
        "drain_timeout_ms = 10000\nlisten_backlog = 3000",
    );
    let gw = Gateway::start(&cfg);
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = somaxconn.min(3000);
    let out = std::process::Command::new("ss").args(["-ltnH"]).output();
    let Ok(out) = out else {
        panic!("`ss` (iproute2) is needed for this test");
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for addr in [gw.addr, gw.admin.unwrap()] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(3) == Some(&addr.to_string()))
            .unwrap_or_else(|| panic!("{addr} not listed:\n{text}"));
        let send_q: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(send_q, want, "{line}");
    }
}
