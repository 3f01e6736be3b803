//! The operator status page on the admin listener, against the real binary: the JSON
//! twin counts what `/metrics` counts and lists refusals with their stage, reason and
//! request id; the page is loopback-only without admin authentication and needs the
//! admin scope with it; and headless Chromium sees a fresh refusal appear with its
//! reason, with the CSP header set and no console error (screenshot in the test output).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::*;

const INGRESS: &str = "[auth]
modes = [\"mtls\"]
[auth.mtls]
identity_header = \"x-ssl-client-subject\"
";

#[test]
fn status_json_and_page_show_traffic_and_refusals() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, INGRESS));
    assert_eq!(gw.get("/status").status, 200);
    let refused = gw.get("/private");
    assert_eq!(refused.status, 401);
    let rid = refused.header("x-request-id").unwrap().to_owned();

    let r = gw.admin_get("/admin/status.json");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["profile"], "dev");
    assert!(
        v["config"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(v["config"]["configured"], true);
    assert!(!v["build"]["version"].as_str().unwrap().is_empty());
    let route = |id: &str| {
        v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("route {id} in {v}"))
    };
    assert_eq!(route("status")["requests"], 1);
    assert_eq!(route("status")["denied"], 0);
    assert!(route("status")["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(route("private")["denied"], 1);
    let newest = &v["refusals"]["recent"][0];
    assert_eq!(newest["request_id"], rid.as_str());
    assert_eq!(newest["stage"], "authenticate");
    assert_eq!(newest["status"], 401);
    assert_eq!(newest["route"], "private");
    assert!(!newest["reason"].as_str().unwrap().is_empty());
    assert_eq!(v["refusals"]["total"], 1);
    // Not configured here, and said so.
    for k in ["rate_limit", "jwks", "audit", "signing"] {
        assert_eq!(v[k]["configured"], false, "{k}");
    }
    assert_eq!(v["health"]["status"], "ok");
    assert!(v["connections"]["total"].as_u64().unwrap() >= 2);

    // The same counters as /metrics.
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("rampart_requests_total{route=\"private\",status=\"401\",decision=\"deny\"} 1")
    );

    let page = gw.admin_get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let html = page.text();
    assert!(html.contains(&rid));
    assert!(html.contains("<section id=audit><h2>Audit trail</h2><p class=off>Not configured."));
    assert_eq!(gw.admin_get("/status.css").status, 200);
}

/// With a credential store the admin API exists, and the page follows its rule; with
/// audit, signing and rate limits configured their sections fill in.
#[test]
fn with_admin_authentication_the_page_needs_the_admin_scope() {
    let up = Upstream::start();
    let dir = private_dir("status-admin");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    write_private(
        &dir.join("jwt"),
        "status-page-hs256-secret-0123456789abcdef-0123",
        0o600,
    );
    let cfg = base_config(up.addr, "").replace(
        "drain_timeout_ms = 10000",
        &format!(
            "drain_timeout_ms = 10000\ndata_dir = \"{0}/data\"\nallowed_data_roots = [\"{0}\"]",
            dir.display()
        ),
    ) + &format!(
        "[auth]\nmodes = [\"jwt\"]\n[auth.jwt]\nissuer = \"rampart-dev\"\naudience = [\"rampart\"]\n\
         hs256_secret = \"file:{0}/jwt\"\nallowed_algs = [\"HS256\"]\n\
         [audit]\ncheckpoint_every_records = 1\n[signing]\nprovider = \"file\"\nkey_id = \"audit-1\"\n\
         [rate_limit]\nbackend = \"memory\"\ntiers.default = {{ per_minute = 600, burst = 100 }}\n",
        dir.display()
    );
    let path = dir.join("rampart.toml");
    std::fs::write(&path, &cfg).unwrap();
    let o = Command::new(bin())
        .args(["keys", "generate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gw = Gateway::spawn(dir.clone(), path.clone()).unwrap();
    let mint = |scopes: &str| {
        let o = Command::new(bin())
            .args([
                "token", "mint", "--sub", "ops", "--scopes", scopes, "--config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };
    let get = |path: &str, token: Option<&str>| {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        raw(
            gw.admin.unwrap(),
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    for p in ["/", "/admin/status.json"] {
        // Loopback is not enough once admin authentication exists.
        let r = get(p, None);
        assert_eq!(r.status, 401, "{p}");
        assert!(!r.text().contains("<section"));
        assert_eq!(get(p, Some(&mint("jobs"))).status, 403, "{p}");
        assert_eq!(get(p, Some(&mint("admin"))).status, 200, "{p}");
    }
    // Traffic the sections count: an allowed request (rate-limited tier `default`).
    let user = mint("jobs");
    let r = raw(
        gw.addr,
        &format!(
            "GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {user}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let admin = mint("admin");
    let mut v = serde_json::Value::Null;
    for _ in 0..100 {
        v = get("/admin/status.json", Some(&admin)).json();
        if v["audit"]["checkpoint_size"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(v["revocations"]["configured"], true);
    assert_eq!(v["revocations"]["entries"], 0);
    assert_eq!(v["jwks"]["configured"], true);
    assert_eq!(v["jwks"]["source"], "static");
    // Audit: every public-listener request above has its record; the head is a hash.
    let audit = &v["audit"];
    assert_eq!(audit["configured"], true);
    assert!(audit["records"].as_u64().unwrap() >= 1, "{audit}");
    assert!(audit["checkpoint_size"].as_u64().unwrap() >= 1, "{audit}");
    assert!(audit["checkpoint_ts"].is_string(), "{audit}");
    let head = audit["head_hash"].as_str().unwrap();
    assert!(head.len() == 64 && head != "0".repeat(64), "{head}");
    assert_eq!(audit["failing"], false);
    // Signing: the key `rampart keys generate` made, by fingerprint.
    let keys = v["signing"]["keys"].as_array().unwrap();
    assert_eq!(v["signing"]["active_key_id"], "audit-1");
    assert_eq!(keys[0]["status"], "active");
    assert!(
        keys[0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert!(keys[0]["age_s"].as_u64().unwrap() < 600);
    // Rate limits: the tier with its limit and the allowed decision.
    let tiers = v["rate_limit"]["tiers"].as_array().unwrap();
    let default = tiers.iter().find(|t| t["tier"] == "default").unwrap();
    assert_eq!(default["per_minute"], 600);
    assert_eq!(default["allowed"], 1, "{default}");
    assert_eq!(v["rate_limit"]["backend"], "memory");
    // Nothing secret: the JWT secret and the key material are not on the page.
    let html = get("/", Some(&admin)).text();
    assert!(!html.contains("status-page-hs256-secret"));
    assert!(html.contains(keys[0]["fingerprint"].as_str().unwrap()));
    // The stylesheet holds no data.
    assert_eq!(get("/status.css", None).status, 200);
}

/// Headless Chromium against the live gateway (see tests/support/status_browser.py).
#[test]
fn a_refusal_appears_on_the_page_in_a_real_browser() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, INGRESS));
    let out = private_dir("status-browser");
    let profile = out.join("chromium-profile");
    std::fs::create_dir(&profile).unwrap();
    // Kept where the test output lives (the gateway's own dir is removed on drop).
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/status_browser.py"
    );
    let o = Command::new("python3")
        .arg(script)
        .arg("--admin")
        .arg(format!("http://{}", gw.admin.unwrap()))
        .arg("--refuse")
        .arg(format!("http://127.0.0.1:{}/private", gw.addr.port()))
        .arg("--profile-dir")
        .arg(&profile)
        .arg("--screenshot")
        .arg(&shot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "browser check failed: {}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["status"], 401);
    let row: Vec<String> = serde_json::from_value(seen["row"].clone()).unwrap();
    assert!(row.contains(&"authenticate".to_owned()), "{row:?}");
    assert!(row.contains(&"private".to_owned()), "{row:?}");
    // The reason on the page is the one the access log recorded for that request.
    let rid = seen["request_id"].as_str().unwrap();
    let reason = seen["reason"].as_str().unwrap();
    assert!(gw.wait_access(rid, std::time::Duration::from_secs(2)));
    assert!(gw.wait_access(
        &format!("\"reason\":\"{reason}\""),
        std::time::Duration::from_secs(2)
    ));
    assert_eq!(seen["th_border"], "solid", "the stylesheet did not apply");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
