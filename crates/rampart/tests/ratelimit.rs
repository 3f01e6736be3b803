//! Rate limiting against the real binary (issue 17): burst then steady rate, tiers,
//! tenant budgets, anonymous callers keyed by the address the gateway trusts, the
//! RateLimit headers and metrics; with `backend = "redis"`, two gateways sharing one
//! budget and a Redis that goes away and comes back. Callers are dev HS256 JWTs. Redis
//! tests run their own `redis-server` on a free port, never the shared one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rampart_test_support::OwnRedis;

const SECRET: &str = "rate-limit-test-secret-0123456789abcdef";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A dev HS256 token for `sub`, with a tenant claim when given.
fn token(sub: &str, tenant: Option<&str>) -> String {
    let mut claims = serde_json::json!({
        "sub": sub, "iss": "dev", "aud": "rampart", "exp": now() + 600, "iat": now(),
    });
    if let Some(t) = tenant {
        claims["tenant"] = t.into();
    }
    rampart_test_support::jws(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims.to_string(),
        |input| {
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
            aws_lc_rs::hmac::sign(&k, input).as_ref().to_vec()
        },
    )
}

/// Starts the binary with JWT authentication, a `heavy` route and `rate_limit`, plus
/// `server` lines (e.g. `trusted_proxies`).
fn start(rate_limit: &str, server: &str) -> (Upstream, Gateway) {
    let up = Upstream::start();
    let gw = Gateway::spawn_with(&config(up.addr, rate_limit, server)).unwrap();
    (up, gw)
}

fn config(upstream: SocketAddr, rate_limit: &str, server: &str) -> (PathBuf, String) {
    let dir = private_dir("ratelimit");
    write_private(&dir.join("jwt"), SECRET, 0o600);
    let cfg = base_config(
        upstream,
        &format!(
            "\n[[routes]]\nid = \"heavy\"\npath = \"/heavy\"\nupstream = \"app\"\ntier = \"heavy\"\n\n\
             [auth]\nmodes = [\"jwt\"]\n[auth.jwt]\nissuer = \"dev\"\naudience = [\"rampart\"]\n\
             hs256_secret = \"file:{}/jwt\"\nallowed_algs = [\"HS256\"]\n\n[rate_limit]\n{rate_limit}\n",
            dir.display()
        ),
    )
    .replace(
        "drain_timeout_ms = 10000",
        &format!("drain_timeout_ms = 10000\n{server}"),
    );
    (dir, cfg)
}

trait SpawnWith {
    fn spawn_with(c: &(PathBuf, String)) -> Result<Gateway, String>;
}

impl SpawnWith for Gateway {
    fn spawn_with((dir, cfg): &(PathBuf, String)) -> Result<Gateway, String> {
        let path = dir.join("rampart.toml");
        std::fs::write(&path, cfg).unwrap();
        Gateway::spawn(dir.clone(), path)
    }
}

fn request(path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

fn as_user(gw: &Gateway, path: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    raw(gw.addr, &request(path, &[("authorization", &auth)]))
}

/// A request from the loopback address `src` (127.0.0.0/8 is all ours on Linux).
fn raw_from(src: [u8; 4], addr: SocketAddr, req: &str) -> Resp {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from((src, 0))).unwrap();
        sock.connect(addr).await.unwrap()
    });
    let mut s = stream.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut s).unwrap()
}

/// `r` in `RateLimit: "tier";r=N;t=M`.
fn remaining(r: &Resp) -> u64 {
    let h = r
        .header("ratelimit")
        .unwrap_or_else(|| panic!("no RateLimit: {:?}", r.headers));
    h.split(';')
        .find_map(|p| p.strip_prefix("r="))
        .unwrap()
        .parse()
        .unwrap()
}

/// A 429 with everything the contract asks for.
fn assert_limited(r: &Resp, tier: &str) {
    let doc = assert_problem(r, 429);
    assert_eq!(doc["code"], "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert!(
        r.header("ratelimit-policy")
            .unwrap()
            .starts_with(&format!("\"{tier}\";q=")),
        "{:?}",
        r.headers
    );
    assert_eq!(remaining(r), 0);
}

/// Sends `n` requests, returns (allowed, limited); anything else fails the test.
fn burst(n: usize, mut send: impl FnMut() -> Resp, tier: &str) -> (usize, usize) {
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..n {
        let r = send();
        match r.status {
            200 => {
                ok += 1;
                assert!(r.header("ratelimit-policy").is_some(), "{:?}", r.headers);
                assert!(r.header("ratelimit").is_some());
            }
            429 => {
                limited += 1;
                assert_limited(&r, tier);
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    (ok, limited)
}

#[test]
fn burst_then_steady_rate_within_5_percent_over_10_s() {
    // 600 a minute = 10 a second, burst 20: in a 10 s window, 20 + 10 × 10 = 120.
    let (up, gw) = start("tiers.default = { per_minute = 600, burst = 20 }", "");
    let t = token("alice", None);
    let first = as_user(&gw, "/private", &t);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"default\";q=600;w=60")
    );
    assert_eq!(first.header("ratelimit"), Some("\"default\";r=19;t=1"));
    let start = Instant::now();
    let (mut ok, mut limited) = (1usize, 0usize);
    let mut elapsed;
    loop {
        let r = as_user(&gw, "/private", &t);
        elapsed = start.elapsed();
        match r.status {
            200 => {
                ok += 1;
                assert!(remaining(&r) < 20);
            }
            429 => {
                limited += 1;
                assert_limited(&r, "default");
            }
            s => panic!("unexpected {s}"),
        }
        if elapsed >= Duration::from_secs(10) {
            break;
        }
        // Keep well above 10/s without saturating the two cores.
        std::thread::sleep(Duration::from_millis(2));
    }
    let expected = 20.0 + 10.0 * elapsed.as_secs_f64();
    let got = ok as f64;
    eprintln!("memory: accepted {ok}, expected {expected:.1}, refused {limited}, in {elapsed:?}");
    assert!(
        (got - expected).abs() <= expected * 0.05,
        "accepted {ok} in {elapsed:?}, expected {expected:.1} (±5%); refused {limited}"
    );
    assert!(
        limited > ok,
        "the client must outpace the limit: {limited} refused"
    );
    // Refused requests never reached the upstream.
    assert_eq!(up.seen().len(), ok);
    // The counters and their exposition.
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains(&format!(
            "rampart_ratelimit_decisions_total{{tier=\"default\",decision=\"allow\"}} {ok}"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "rampart_ratelimit_decisions_total{{tier=\"default\",decision=\"deny\"}} {limited}"
        )),
        "{m}"
    );
    assert!(
        m.contains("rampart_ratelimit_backend_errors_total 0"),
        "{m}"
    );
    assert!(
        m.contains("rampart_requests_total{route=\"private\",status=\"429\",decision=\"deny\"}")
    );
    let f = private_dir("ratelimit-prom").join("metrics.txt");
    std::fs::write(&f, &m).unwrap();
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
}

#[test]
fn heavy_and_default_tiers_are_independent() {
    let (_up, gw) = start(
        "tiers.default = { per_minute = 2, burst = 5 }\ntiers.heavy = { per_minute = 1, burst = 2 }",
        "",
    );
    let t = token("alice", None);
    let (ok, limited) = burst(4, || as_user(&gw, "/heavy", &t), "heavy");
    assert_eq!((ok, limited), (2, 2));
    let r = as_user(&gw, "/heavy", &t);
    assert_eq!(r.header("ratelimit-policy"), Some("\"heavy\";q=1;w=60"));
    // The heavy budget is spent; the default one is whole.
    let (ok, limited) = burst(7, || as_user(&gw, "/private", &t), "default");
    assert_eq!((ok, limited), (5, 2));
    // And spending the default budget did not give heavy anything back.
    assert_limited(&as_user(&gw, "/heavy", &t), "heavy");
}

#[test]
fn subjects_of_a_tenant_share_its_budget_and_not_each_others() {
    let (_up, gw) = start(
        "tiers.default = { per_minute = 1, burst = 5 }\ntenant = { per_minute = 1, burst = 7 }",
        "",
    );
    let (alice, bob, carol, dave) = (
        token("alice", Some("acme")),
        token("bob", Some("acme")),
        token("carol", Some("globex")),
        token("dave", None),
    );
    // alice spends her own burst (5 of acme's 7) and is refused.
    assert_eq!(
        burst(6, || as_user(&gw, "/private", &alice), "default"),
        (5, 1)
    );
    // bob has his own 5, but acme has only 2 left: the tenant budget binds.
    let (ok, limited) = burst(5, || as_user(&gw, "/private", &bob), "default");
    assert_eq!((ok, limited), (2, 3));
    // Another tenant and a caller without one are untouched.
    assert_eq!(
        burst(5, || as_user(&gw, "/private", &carol), "default"),
        (5, 0)
    );
    assert_eq!(
        burst(6, || as_user(&gw, "/private", &dave), "default"),
        (5, 1)
    );
}

#[test]
fn anonymous_callers_are_keyed_by_peer_address_and_spoofed_xff_does_not_help() {
    // No trusted proxies: X-Forwarded-For is never read.
    let (up, gw) = start("tiers.default = { per_minute = 2, burst = 4 }", "");
    let mut n = 0u32;
    let mut spoofed = || {
        n += 1;
        let xff = format!("198.51.100.{n}, 203.0.113.{n}");
        raw_from(
            [127, 0, 0, 2],
            gw.addr,
            &request("/status", &[("x-forwarded-for", &xff)]),
        )
    };
    assert_eq!(burst(8, &mut spoofed, "default"), (4, 4));
    // Every request the upstream saw came with the peer's address, not the spoofed one.
    assert_eq!(up.seen().len(), 4);
    // Another peer address has its own budget.
    let other = || raw_from([127, 0, 0, 3], gw.addr, &request("/status", &[]));
    assert_eq!(burst(5, other, "default"), (4, 1));
}

#[test]
fn behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_key() {
    let (_up, gw) = start(
        "tiers.default = { per_minute = 2, burst = 3 }",
        "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]",
    );
    // The client rotates what it writes on the left; the trusted proxy appends the
    // address it saw (203.0.113.7), then another trusted hop (10.1.2.3).
    let mut n = 0u32;
    let rotating = || {
        n += 1;
        let xff = format!("192.0.2.{n}, 203.0.113.7, 10.1.2.3");
        raw(gw.addr, &request("/status", &[("x-forwarded-for", &xff)]))
    };
    assert_eq!(burst(6, rotating, "default"), (3, 3));
    // Another client behind the same proxy is its own key.
    let other = || {
        raw(
            gw.addr,
            &request("/status", &[("x-forwarded-for", "203.0.113.8")]),
        )
    };
    assert_eq!(burst(4, other, "default"), (3, 1));
    // A peer that is not a trusted proxy is keyed by itself, whatever it forwards.
    let mut m = 0u32;
    let untrusted = || {
        m += 1;
        let xff = format!("203.0.113.{}", 100 + m);
        raw_from(
            [127, 0, 0, 4],
            gw.addr,
            &request("/status", &[("x-forwarded-for", &xff)]),
        )
    };
    assert_eq!(burst(5, untrusted, "default"), (3, 2));
}

// ---- Redis --------------------------------------------------------------------------

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 15 s");
}

fn warn_reasons(gw: &Gateway) -> (u16, Vec<String>) {
    let h = gw.admin_get("/healthz");
    let v = h.json();
    let reasons = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["severity"] == "warn")
        .filter_map(|r| r["reason"].as_str().map(str::to_owned))
        .collect();
    (h.status, reasons)
}

#[test]
fn two_gateways_sharing_one_redis_enforce_one_budget() {
    let redis = OwnRedis::start();
    // 1200 a minute = 20 a second, burst 20; the tenant budget is far larger, so the
    // script evaluates both keys but the identity binds.
    let rl = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\ntiers.default = {{ per_minute = 1200, burst = 20 }}\n\
         tenant = {{ per_minute = 60000, burst = 1000 }}",
        redis.url()
    );
    let up = Upstream::start();
    let a = Gateway::spawn_with(&config(up.addr, &rl, "")).unwrap();
    let b = Gateway::spawn_with(&config(up.addr, &rl, "")).unwrap();
    let t = token("alice", Some("acme"));
    let first = as_user(&a, "/private", &t);
    assert_eq!(first.status, 200, "{}", first.text());
    let start = Instant::now();
    let (mut ok, mut per_gw, mut limited) = (1usize, [1usize, 0], 0usize);
    let mut i = 0usize;
    let elapsed = loop {
        i += 1;
        let gw = if i.is_multiple_of(2) { &a } else { &b };
        let r = as_user(gw, "/private", &t);
        match r.status {
            200 => {
                ok += 1;
                per_gw[i % 2] += 1;
            }
            429 => {
                limited += 1;
                assert_limited(&r, "default");
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
        let e = start.elapsed();
        if e >= Duration::from_secs(6) {
            break e;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let expected = 20.0 + 20.0 * elapsed.as_secs_f64();
    eprintln!(
        "redis: accepted {ok} {per_gw:?}, expected {expected:.1}, refused {limited}, in {elapsed:?}"
    );
    assert!(
        (ok as f64 - expected).abs() <= expected * 0.05,
        "accepted {ok} ({per_gw:?}) in {elapsed:?}, expected {expected:.1} (±5%); refused {limited}"
    );
    assert!(per_gw[0] > 10 && per_gw[1] > 10, "{per_gw:?}");
    assert!(limited > 0);
    // Keys carry hash tags and expire once idle; no raw subject is stored.
    let keys = redis.cmd("KEYS *");
    assert!(keys.contains("rampart:rl:{t:"), "{keys}");
    assert!(!keys.contains("alice") && !keys.contains("acme"), "{keys}");
}

/// Sends one inline command, returns the raw reply.
fn redis_outage(on_error: &str) {
    let mut redis = OwnRedis::start();
    // The URL comes from [redis] url here (rate_limit.redis_url absent).
    let rl = format!(
        "backend = \"redis\"\non_backend_error = \"{on_error}\"\n\
         tiers.default = {{ per_minute = 2, burst = 3 }}\n\n[redis]\nurl = \"{}\"",
        redis.url()
    );
    let up = Upstream::start();
    let gw = Gateway::spawn_with(&config(up.addr, &rl, "")).unwrap();
    let t = token("alice", None);
    assert_eq!(burst(4, || as_user(&gw, "/private", &t), "default"), (3, 1));
    assert_eq!(warn_reasons(&gw), (200, vec![]));

    redis.stop();
    for _ in 0..3 {
        let r = as_user(&gw, "/private", &t);
        if on_error == "deny" {
            let doc = assert_problem(&r, 503);
            assert_eq!(doc["code"], "ratelimit_unavailable");
        } else {
            // Fail open: served, and the response claims no budget it could not check.
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(r.header("ratelimit").is_none());
        }
    }
    let (status, reasons) = warn_reasons(&gw);
    assert_eq!(status, 503);
    assert_eq!(reasons, vec!["ratelimit_backend".to_owned()]);
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("rampart_ratelimit_decisions_total{tier=\"default\",decision=\"error\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("rampart_ratelimit_backend_up{backend=\"redis\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("health_reason{reason=\"ratelimit_backend\",severity=\"warn\"} 1"),
        "{m}"
    );
    assert!(
        !m.contains("rampart_ratelimit_backend_errors_total 0\n"),
        "{m}"
    );
    let logs = gw.logs();
    assert!(
        logs.contains("rate limit backend (Redis) cannot decide"),
        "{logs}"
    );
    assert!(
        !logs.contains(&redis.url()),
        "the URL never reaches the logs"
    );

    // Back: health recovers by itself (no traffic needed), then decisions resume
    // (the restarted Redis has no memory: a whole burst again).
    redis.restart();
    eventually("healthz recovers", || warn_reasons(&gw) == (200, vec![]));
    let r = as_user(&gw, "/private", &t);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("ratelimit"), Some("\"default\";r=2;t=30"));
    assert!(
        gw.admin_get("/metrics")
            .text()
            .contains("rampart_ratelimit_backend_up{backend=\"redis\"} 1")
    );
}

#[test]
fn redis_outage_with_deny_answers_503_and_recovers() {
    redis_outage("deny");
}

#[test]
fn redis_outage_with_allow_passes_and_recovers() {
    redis_outage("allow");
}

/// Per-identity overrides from API-key records (`rampart apikey create --rate-…`): a
/// key's own burst or rate replaces its tier's, a key's own tier replaces the route's,
/// and a key without an override keeps the route's tier.
#[test]
fn api_key_records_override_the_tier_budget() {
    let up = Upstream::start();
    let dir = private_dir("ratelimit-override");
    write_private(
        &dir.join("pepper"),
        "override-test-pepper-0123456789abcdef-0123456789",
        0o600,
    );
    std::fs::create_dir(dir.join("data")).unwrap();
    std::fs::set_permissions(
        dir.join("data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let cfg = base_config(
        up.addr,
        &format!(
            "\n[auth]\nmodes = [\"api_key\"]\n[auth.api_key]\npepper = \"file:{d}/pepper\"\n\n\
             [rate_limit]\ntiers.default = {{ per_minute = 1, burst = 3 }}\n\
             tiers.heavy = {{ per_minute = 1, burst = 1 }}\n",
            d = dir.display()
        ),
    )
    .replace(
        "drain_timeout_ms = 10000",
        &format!(
            "drain_timeout_ms = 10000\ndata_dir = \"{d}/data\"\nallowed_data_roots = [\"{d}\"]",
            d = dir.display()
        ),
    );
    let path = dir.join("rampart.toml");
    std::fs::write(&path, &cfg).unwrap();
    let create = |name: &str, extra: &[&str]| -> String {
        let mut args = vec!["apikey", "create", "--name", name, "--tenant", "acme"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--config", path.to_str().unwrap()]);
        let o = Command::new(bin()).args(&args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let plain = create("plain", &[]);
    let bigger = create("bigger-burst", &["--rate-burst", "6"]);
    let faster = create("faster", &["--rate-per-minute", "600", "--rate-burst", "2"]);
    let heavy = create("heavy-tier", &["--rate-tier", "heavy"]);
    // Zero would be an unlimited (or dead) key: refused when written.
    let mut args = vec!["apikey", "create", "--name", "zero", "--tenant", "acme"];
    args.extend_from_slice(&["--rate-burst", "0", "--config", path.to_str().unwrap()]);
    let o = Command::new(bin()).args(&args).output().unwrap();
    assert_ne!(o.status.code(), Some(0), "a zero burst was accepted");

    let gw = Gateway::spawn(dir.clone(), path).unwrap();
    let with_key = |key: &str| raw(gw.addr, &request("/private", &[("x-api-key", key)]));

    assert_eq!(burst(4, || with_key(&plain), "default"), (3, 1));
    let r = with_key(&bigger);
    assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=1;w=60"));
    assert_eq!(remaining(&r), 5);
    assert_eq!(burst(6, || with_key(&bigger), "default"), (5, 1));
    let r = with_key(&faster);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=600;w=60"));
    assert_eq!(burst(2, || with_key(&faster), "default"), (1, 1));
    // 600/min: one request's worth comes back within 100 ms.
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(with_key(&faster).status, 200);
    // The record's tier replaces the route's (default) tier.
    assert_eq!(burst(2, || with_key(&heavy), "heavy"), (1, 1));
}
