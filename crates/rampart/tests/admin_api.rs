//! The `/admin/*` API against the real binary: who may call it (anonymous 401, a
//! non-admin 403, two credentials 401), API keys created, listed and revoked through it
//! taking effect on the gateway within 5 s, the OpenAPI document served without
//! authentication, and schemathesis (PyPI, installed by `scripts/test`) run against that
//! document on a live gateway finding no server error and no response outside it.
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

const PEPPER: &str = "admin-api-pepper-0123456789abcdef-0123456789abcdef";
const JWT_SECRET: &str = "admin-api-hs256-secret-0123456789abcdef-0123";

/// A gateway with a SQLite store, JWT (HS256) and API-key authentication.
fn start(up: &Upstream, name: &str) -> (Gateway, PathBuf) {
    let dir = private_dir(name);
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    write_private(&dir.join("pepper"), PEPPER, 0o600);
    write_private(&dir.join("jwt"), JWT_SECRET, 0o600);
    let cfg = base_config(up.addr, "").replace(
        "drain_timeout_ms = 10000",
        &format!(
            "drain_timeout_ms = 10000\ndata_dir = \"{0}/data\"\nallowed_data_roots = [\"{0}\"]",
            dir.display()
        ),
    ) + &format!(
        "[auth]\nmodes = [\"jwt\", \"api_key\"]\n[auth.api_key]\npepper = \"file:{0}/pepper\"\n\
         [auth.jwt]\nissuer = \"rampart-dev\"\naudience = [\"rampart\"]\nhs256_secret = \"file:{0}/jwt\"\n\
         allowed_algs = [\"HS256\"]\n",
        dir.display()
    );
    std::fs::write(dir.join("rampart.toml"), &cfg).unwrap();
    let gw = Gateway::spawn(dir.clone(), dir.join("rampart.toml")).unwrap();
    (gw, dir)
}

fn cli(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("rampart.toml"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn mint(dir: &Path, sub: &str, scopes: &str) -> String {
    cli(
        dir,
        &[
            "token", "mint", "--sub", sub, "--scopes", scopes, "--ttl", "10m",
        ],
    )
}

/// One admin request; `auth` is a header line or two (`"Authorization: Bearer …\r\n"`).
fn call(gw: &Gateway, method: &str, path: &str, auth: &str, body: Option<&str>) -> Resp {
    let body_headers = body.map_or(String::new(), |b| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        )
    });
    raw(
        gw.admin.unwrap(),
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{body_headers}Connection: close\r\n\r\n{}",
            body.unwrap_or("")
        ),
    )
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}\r\n")
}

fn with_key(gw: &Gateway, key: &str) -> u16 {
    raw(
        gw.addr,
        &format!(
            "GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
        ),
    )
    .status
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

/// An admin problem document: status, media type, stable members.
fn problem(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(v["status"], status);
    assert_eq!(v["code"], code, "{v}");
    assert!(v["title"].is_string() && v["detail"].is_string());
}

const KEY_BODY: &str = "{\"name\":\"ci deploy\",\"tenant\":\"acme\",\"scopes\":[\"jobs\"],\"roles\":[\"reader\"],\"expires\":\"30d\"}";

/// Anonymous callers get 401, callers without the admin scope 403, a request with two
/// credentials 401, on every authenticated operation; the document is public.
#[test]
fn access_rules() {
    let up = Upstream::start();
    let (gw, dir) = start(&up, "admin-access");
    let root = mint(&dir, "root", "admin");
    let user = mint(&dir, "user", "jobs");
    let admin_key = cli(
        &dir,
        &[
            "apikey", "create", "--name", "ops", "--tenant", "ops", "--scopes", "admin",
        ],
    );
    let ops: [(&str, &str, Option<&str>); 5] = [
        ("GET", "/admin/apikeys", None),
        ("POST", "/admin/apikeys", Some(KEY_BODY)),
        ("GET", "/admin/apikeys/AAAAAAAAAAAA", None),
        ("POST", "/admin/apikeys/AAAAAAAAAAAA/revoke", None),
        ("GET", "/admin/revocations", None),
    ];
    for (m, p, b) in ops {
        let r = call(&gw, m, p, "", b);
        problem(&r, 401, "unauthenticated");
        assert!(r.header("www-authenticate").is_some(), "{m} {p}");
        problem(&call(&gw, m, p, &bearer(&user), b), 403, "forbidden");
        problem(
            &call(&gw, m, p, &bearer("not.a.token"), b),
            401,
            "unauthenticated",
        );
        // A valid admin token beside a bad API key: not "the first one wins".
        let both = format!("{}x-api-key: rpk_bogus\r\n", bearer(&root));
        problem(&call(&gw, m, p, &both, b), 401, "unauthenticated");
    }
    // An admin API key (made by the CLI while the gateway runs: it arrives by store
    // polling) is as good as an admin token.
    within(
        Duration::from_secs(5),
        "an admin API key administers",
        || {
            call(
                &gw,
                "GET",
                "/admin/apikeys",
                &format!("x-api-key: {admin_key}\r\n"),
                None,
            )
            .status
                == 200
        },
    );
    // The document: no authentication, valid JSON naming both schemes.
    let r = call(&gw, "GET", "/admin/openapi.json", "", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKeyAuth"]["name"],
        "x-api-key"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    // Unknown paths, methods, media types, members.
    problem(&call(&gw, "GET", "/admin/nope", "", None), 404, "not_found");
    let r = call(&gw, "DELETE", "/admin/revocations", &bearer(&root), None);
    problem(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    problem(
        &call(&gw, "DELETE", "/admin/revocations", "", None),
        401,
        "unauthenticated",
    );
    let r = raw(
        gw.admin.unwrap(),
        &format!(
            "POST /admin/apikeys HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{KEY_BODY}",
            bearer(&root),
            KEY_BODY.len()
        ),
    );
    problem(&r, 415, "unsupported_media_type");
    let extra = KEY_BODY.replace("\"name\"", "\"owner\":\"x\",\"name\"");
    problem(
        &call(&gw, "POST", "/admin/apikeys", &bearer(&root), Some(&extra)),
        400,
        "bad_request",
    );
    let past = KEY_BODY.replace("\"30d\"", "1");
    problem(
        &call(&gw, "POST", "/admin/apikeys", &bearer(&root), Some(&past)),
        400,
        "bad_request",
    );
    // Nothing was created by any refused call: only the CLI's key exists.
    let list = call(&gw, "GET", "/admin/apikeys", &bearer(&root), None).json();
    assert_eq!(list["apikeys"].as_array().unwrap().len(), 1, "{list}");
}

/// Created through the API: the key is shown once, works on the gateway within 5 s, is
/// listed without secret; revoked through the API: refused within 5 s. Every change is
/// logged with the admin's subject and never the key.
#[test]
fn apikey_lifecycle() {
    let up = Upstream::start();
    let (gw, dir) = start(&up, "admin-keys");
    let root = mint(&dir, "root-admin", "admin");
    let r = call(
        &gw,
        "POST",
        "/admin/apikeys",
        &bearer(&root),
        Some(KEY_BODY),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("rpk_{id}_")), "{key}");
    assert_eq!(created["status"], "active");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["scopes"], serde_json::json!(["jobs"]));
    assert!(created["expires"].is_string());
    let took = within(Duration::from_secs(5), "a created key works", || {
        with_key(&gw, &key) == 200
    });
    eprintln!("created key accepted after {took:?}");
    let seen = up.last();
    assert_eq!(seen.header("x-rampart-tenant"), Some("acme"));
    assert_eq!(seen.header("x-rampart-subject"), Some("ci deploy"));
    // Listed and read back without the key or its hash.
    for r in [
        call(&gw, "GET", "/admin/apikeys", &bearer(&root), None),
        call(
            &gw,
            "GET",
            &format!("/admin/apikeys/{id}"),
            &bearer(&root),
            None,
        ),
    ] {
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert!(text.contains(&id));
        assert!(!text.contains(&key) && !text.contains("\"key\"") && !text.contains("hash"));
    }
    // The key cannot administer (no admin scope).
    problem(
        &call(
            &gw,
            "GET",
            "/admin/apikeys",
            &format!("x-api-key: {key}\r\n"),
            None,
        ),
        403,
        "forbidden",
    );
    // Revoked through the API: refused within 5 s (this node at once).
    let path = format!("/admin/apikeys/{id}/revoke");
    let r = call(&gw, "POST", &path, &bearer(&root), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let revoked = r.json();
    assert_eq!(revoked["status"], "revoked");
    let took = within(Duration::from_secs(5), "a revoked key is refused", || {
        with_key(&gw, &key) == 401
    });
    eprintln!("revoked key refused after {took:?}");
    // Idempotent: the first revocation time stays.
    let again = call(&gw, "POST", &path, &bearer(&root), None);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["revoked"], revoked["revoked"]);
    problem(
        &call(
            &gw,
            "POST",
            "/admin/apikeys/AAAAAAAAAAAA/revoke",
            &bearer(&root),
            None,
        ),
        404,
        "not_found",
    );
    problem(
        &call(&gw, "GET", "/admin/apikeys/not-an-id", &bearer(&root), None),
        404,
        "not_found",
    );
    // The revocation is listed; the change log names the admin and the id, never the key.
    let list = call(&gw, "GET", "/admin/revocations", &bearer(&root), None).json();
    assert!(
        list["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "apikey" && e["value"] == id.as_str())
    );
    assert!(gw.wait_log(
        "API key revoked through the admin API",
        Duration::from_secs(2)
    ));
    let logs = gw.logs();
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in the log"))
            .to_owned()
    };
    for needle in [
        "API key created through the admin API",
        "API key revoked through the admin API",
    ] {
        let l = line(needle);
        assert!(l.contains("root-admin") && l.contains(&id), "{l}");
    }
    let all = logs + &gw.stdout.lock().unwrap().join("\n");
    assert!(!all.contains(&key) && !all.contains(PEPPER) && !all.contains(&root));
}

/// schemathesis generates requests from `/admin/openapi.json` (examples, coverage,
/// fuzzing and stateful phases, positive and negative data) against a live gateway and
/// checks every answer: no 5xx, status documented, content type and body as documented,
/// the document's authentication not ignored.
#[test]
fn schemathesis_finds_nothing() {
    let up = Upstream::start();
    let (gw, dir) = start(&up, "admin-st");
    let root = mint(&dir, "schemathesis", "admin");
    let admin = gw.admin.unwrap();
    let report = dir.join("st-report");
    let started = Instant::now();
    let out = Command::new("st")
        .args(["run", &format!("http://{admin}/admin/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {root}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,ignored_auth,\
             unsupported_method,allow_header_conformance,negative_data_rejection",
        ])
        .args([
            "--max-examples",
            "25",
            "--workers",
            "2",
            "--request-timeout",
            "5",
        ])
        .arg("--report-dir")
        .arg(&report)
        // Its caches (.hypothesis, .schemathesis) go to the test's own directory.
        .current_dir(&dir)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis (`st`, PyPI) is needed: scripts/test installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("schemathesis took {:?}", started.elapsed());
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It really tested every operation.
    assert!(stdout.contains("11 selected / 11 total"), "{stdout}");
    assert!(stdout.contains("Tested: 11"), "{stdout}");
    assert!(!gw.logs().contains("\"level\":\"ERROR\""), "{}", gw.logs());
}
