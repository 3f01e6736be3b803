//! API keys (SQLite and PostgreSQL stores) and revocation against the real binary:
//! keys made by `rampart apikey create` authenticate, a revocation made by the CLI
//! reaches a running gateway within 5 s, and through Redis reaches a second gateway
//! that shares nothing else with the first within 1 s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const PEPPER: &str = "integration-pepper-0123456789abcdef-0123456789abcdef";
const JWT_SECRET: &str = "integration-hs256-secret-0123456789abcdef-0123";

fn unique() -> String {
    format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A gateway config with its own data root; `store` is an extra `[store]` URL.
fn setup(up: &Upstream, name: &str, store: Option<&str>, extra: &str) -> (PathBuf, String) {
    let dir = private_dir(name);
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    write_private(&dir.join("pepper"), PEPPER, 0o600);
    write_private(&dir.join("jwt"), JWT_SECRET, 0o600);
    let store = store
        .map(|u| format!("[store]\nurl = \"{u}\"\n"))
        .unwrap_or_default();
    let cfg = base_config(up.addr, "").replace(
        "drain_timeout_ms = 10000",
        &format!(
            "drain_timeout_ms = 10000\ndata_dir = \"{0}/data\"\nallowed_data_roots = [\"{0}\"]",
            dir.display()
        ),
    ) + &format!(
        "[auth]\nmodes = [\"jwt\", \"api_key\"]\n[auth.api_key]\npepper = \"file:{0}/pepper\"\n\
         [auth.jwt]\nissuer = \"rampart-dev\"\naudience = [\"rampart\"]\nhs256_secret = \"file:{0}/jwt\"\n\
         allowed_algs = [\"HS256\"]\n{store}{extra}",
        dir.display()
    );
    std::fs::write(dir.join("rampart.toml"), &cfg).unwrap();
    (dir, cfg)
}

fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("rampart.toml"))
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn with_key(gw: &Gateway, key: &str) -> Resp {
    raw(
        gw.addr,
        &format!(
            "GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn with_token(gw: &Gateway, token: &str) -> Resp {
    raw(
        gw.addr,
        &format!(
            "GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {limit:?}");
}

fn api_keys_end_to_end(store: Option<&str>, name: &str) {
    let up = Upstream::start();
    let (dir, cfg) = setup(&up, name, store, "");
    let (code, out, err) = cli(
        &dir,
        &[
            "apikey",
            "create",
            "--name",
            "ci-bot",
            "--tenant",
            "acme",
            "--scopes",
            "jobs metrics",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = v["key"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();
    let gw = Gateway::spawn(dir.clone(), dir.join("rampart.toml")).unwrap();
    let _ = cfg;
    let r = with_key(&gw, &key);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-rampart-auth"), Some("api_key"));
    assert_eq!(seen.header("x-rampart-subject"), Some("ci-bot"));
    assert_eq!(seen.header("x-rampart-tenant"), Some("acme"));
    assert_eq!(seen.header("x-rampart-scopes"), Some("jobs metrics"));
    assert!(
        seen.header("x-api-key").is_none(),
        "the API key is rampart's own credential: never forwarded"
    );
    // A typo, a forged id, two keys: refused.
    let mut typo = key.clone().into_bytes();
    let last = typo.len() - 10;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    assert_problem(&with_key(&gw, std::str::from_utf8(&typo).unwrap()), 401);
    let r = raw(
        gw.addr,
        &format!(
            "GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key}\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_problem(&r, 401);
    // Revoked by the CLI: refused by the running gateway within 5 s.
    let (code, _, err) = cli(&dir, &["apikey", "revoke", &id]);
    assert_eq!(code, 0, "{err}");
    let took = within(Duration::from_secs(5), "API key revocation", || {
        with_key(&gw, &key).status == 401
    });
    eprintln!("{name}: revocation took effect after {took:?}");
    assert!(gw.wait_access("\"reason\":\"revoked\"", Duration::from_secs(2)));
    // Nothing secret in the logs.
    let logs = gw.logs() + &gw.stdout.lock().unwrap().join("\n");
    assert!(!logs.contains(&key) && !logs.contains(PEPPER));
}

#[test]
fn api_keys_on_sqlite() {
    api_keys_end_to_end(None, "keys-sqlite");
}

#[test]
fn api_keys_on_postgresql() {
    let schema = format!("it_keys_{}", unique());
    let psql = |sql: &str| {
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
                "-c",
                sql,
            ])
            .output()
            .expect("psql (postgresql-client) is needed for this test");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    psql(&format!("CREATE SCHEMA {schema}"));
    let url = format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}");
    api_keys_end_to_end(Some(&url), "keys-pg");
    psql(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// Two gateways with separate SQLite stores share only Redis: a subject revoked with the
/// CLI against the first is refused by the second within 1 s (polling could not have
/// told it: its store never saw the revocation).
#[test]
fn revocation_reaches_a_second_gateway_through_redis() {
    let redis = "[redis]\nurl = \"redis://127.0.0.1:6379\"\n";
    let up = Upstream::start();
    let (dir_a, _) = setup(&up, "revoke-a", None, redis);
    let (dir_b, _) = setup(&up, "revoke-b", None, redis);
    let _a = Gateway::spawn(dir_a.clone(), dir_a.join("rampart.toml")).unwrap();
    let b = Gateway::spawn(dir_b.clone(), dir_b.join("rampart.toml")).unwrap();
    let subject = format!("mallory-{}", unique());
    let (code, token, err) = cli(
        &dir_b,
        &["token", "mint", "--sub", &subject, "--ttl", "10m"],
    );
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert_eq!(with_token(&b, &token).status, 200);
    // Wait until gateway B is subscribed (its /healthz has no revocation_fanout_down).
    within(Duration::from_secs(5), "B subscribed to Redis", || {
        !b.admin_get("/healthz")
            .text()
            .contains("revocation_fanout_down")
    });
    let (code, _, err) = cli(&dir_a, &["revoke", "--subject", &subject, "--until", "1h"]);
    assert_eq!(code, 0, "{err}");
    let took = within(Duration::from_secs(1), "revocation through Redis", || {
        with_token(&b, &token).status == 401
    });
    eprintln!("revocation reached the second gateway after {took:?}");
}

fn admin(gw: &Gateway, method: &str, token: Option<&str>, body: &str) -> Resp {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    raw(
        gw.admin.unwrap(),
        &format!(
            "{method} /admin/revocations HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// `/admin/revocations` needs an authenticated caller with the admin scope; a revocation
/// added there is enforced by this node at once.
#[test]
fn admin_revocations_api() {
    let up = Upstream::start();
    let (dir, _) = setup(&up, "admin-revoke", None, "");
    let gw = Gateway::spawn(dir.clone(), dir.join("rampart.toml")).unwrap();
    let mint = |sub: &str, scopes: &str| {
        let (code, t, err) = cli(&dir, &["token", "mint", "--sub", sub, "--scopes", scopes]);
        assert_eq!(code, 0, "{err}");
        t.trim().to_owned()
    };
    let root = mint("root", "admin");
    let user = mint(&format!("user-{}", unique()), "jobs");
    assert_eq!(with_token(&gw, &user).status, 200);
    let body = "{\"kind\":\"jti\",\"value\":\"x\"}".to_string();
    assert_eq!(admin(&gw, "POST", None, &body).status, 401);
    assert_eq!(admin(&gw, "POST", Some(&user), &body).status, 403);
    assert_eq!(
        admin(
            &gw,
            "POST",
            Some(&root),
            "{\"kind\":\"nope\",\"value\":\"x\"}"
        )
        .status,
        400
    );
    assert_eq!(
        admin(
            &gw,
            "POST",
            Some(&root),
            "{\"kind\":\"jti\",\"value\":\"x\",\"extra\":1}"
        )
        .status,
        400
    );
    // Revoke the user's subject: refused at once on this node.
    let sub = user_subject(&user);
    let r = admin(
        &gw,
        "POST",
        Some(&root),
        &format!("{{\"kind\":\"subject\",\"value\":\"{sub}\",\"reason\":\"test\"}}"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["kind"], "subject");
    let r = with_token(&gw, &user);
    assert_eq!(r.status, 401, "{}", r.text());
    let list = admin(&gw, "GET", Some(&root), "");
    assert_eq!(list.status, 200);
    assert!(
        list.json()["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["value"] == sub.as_str())
    );
    assert!(gw.wait_log(
        "revocation added through the admin API",
        Duration::from_secs(2)
    ));
}

/// The `sub` claim of a compact JWS (test helper; no verification).
fn user_subject(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = rampart_jwt::b64::decode(payload.as_bytes()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["sub"].as_str().unwrap().to_owned()
}

fn with_both(gw: &Gateway, token: &str, key: &str) -> Resp {
    raw(
        gw.addr,
        &format!(
            "GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
        ),
    )
}

/// Issue 12, credential confusion: a JWT and an API key on one request must both verify
/// (a valid one never excuses a bad one); when they do, the caller is the first
/// configured mode's, and the key is not forwarded.
#[test]
fn a_jwt_and_an_api_key_must_both_verify() {
    let up = Upstream::start();
    let (dir, _) = setup(&up, "keys-and-jwt", None, "");
    let (code, out, err) = cli(
        &dir,
        &[
            "apikey", "create", "--name", "ci-bot", "--tenant", "globex", "--scopes", "jobs",
            "--format", "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let key = serde_json::from_str::<serde_json::Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, token, err) = cli(
        &dir,
        &["token", "mint", "--sub", "alice", "--scopes", "jobs"],
    );
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    let mut bad_key = key.clone().into_bytes();
    let i = bad_key.len() - 10;
    bad_key[i] = if bad_key[i] == b'a' { b'b' } else { b'a' };
    let bad_key = String::from_utf8(bad_key).unwrap();
    let bad_token = format!("{}x", &token[..token.len() - 1]);
    let gw = Gateway::spawn(dir.clone(), dir.join("rampart.toml")).unwrap();
    let failures = |method: &str| -> u64 {
        let m = gw.admin_get("/metrics").text();
        let p = format!("rampart_auth_failures_total{{method=\"{method}\",");
        m.lines()
            .filter(|l| l.starts_with(&p))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };

    // Valid JWT + bad API key: refused with the key's challenge, counted for the key.
    let r = with_both(&gw, &token, &bad_key);
    assert_eq!(assert_problem(&r, 401)["code"], "unauthenticated");
    assert_eq!(
        r.header("www-authenticate"),
        Some("ApiKey realm=\"rampart\"")
    );
    assert!(failures("api_key") >= 1);
    // Bad JWT + valid API key: refused with the token's challenge.
    let r = with_both(&gw, &bad_token, &key);
    assert_problem(&r, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert!(failures("jwt") >= 1);
    assert!(up.seen().is_empty(), "nothing forwarded: {:?}", up.seen());
    // Both valid: the JWT's identity (`jwt` is listed first); the key is not forwarded.
    let r = with_both(&gw, &token, &key);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-rampart-auth"), Some("jwt"));
    assert_eq!(seen.header("x-rampart-subject"), Some("alice"));
    assert!(seen.header("x-api-key").is_none());
    // A revoked key beside a valid token is refused too.
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, _, err) = cli(&dir, &["apikey", "revoke", &id]);
    assert_eq!(code, 0, "{err}");
    within(Duration::from_secs(5), "API key revocation", || {
        with_both(&gw, &token, &key).status == 401
    });

    // The other order (a second gateway on the same store): the API key names the caller.
    let (code, out, err) = cli(
        &dir,
        &[
            "apikey", "create", "--name", "ci-two", "--tenant", "globex", "--scopes", "jobs",
            "--format", "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let key2 = serde_json::from_str::<serde_json::Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(dir.join("rampart.toml"))
        .unwrap()
        .replace(
            "modes = [\"jwt\", \"api_key\"]",
            "modes = [\"api_key\", \"jwt\"]",
        );
    std::fs::write(dir.join("reversed.toml"), text).unwrap();
    let gw2 = Gateway::spawn(dir.clone(), dir.join("reversed.toml")).unwrap();
    let r = with_both(&gw2, &token, &key2);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-rampart-auth"), Some("api_key"));
    assert_eq!(seen.header("x-rampart-subject"), Some("ci-two"));
}
