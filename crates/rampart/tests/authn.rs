//! Authentication against the real binary: identity headers from trusted and untrusted
//! peers, anonymous access, refusals that say nothing about why.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(gw.addr, &req)
}

const INGRESS: &str = "[auth]
modes = [\"mtls\"]
identity_header = \"x-auth-request-user\"
[auth.mtls]
identity_header = \"x-ssl-client-subject\"
scopes_header = \"x-ssl-client-scopes\"
roles_header = \"x-ssl-client-roles\"
";

#[test]
fn spoofed_identity_headers_from_an_untrusted_peer_are_ignored() {
    let up = Upstream::start();
    // 127.0.0.1 is not a trusted proxy here.
    let gw = Gateway::start(&base_config(up.addr, INGRESS));
    for h in [
        ("x-ssl-client-subject", "CN=admin"),
        ("x-auth-request-user", "admin"),
        ("X_SSL_Client_Subject", "CN=admin"),
    ] {
        let r = get(&gw, "/private", &[h, ("x-ssl-client-scopes", "admin")]);
        let doc = assert_problem(&r, 401);
        assert_eq!(doc["code"], "unauthenticated");
        assert_security_headers(&r);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"rampart\"")
        );
    }
    assert!(up.seen().is_empty());
}

#[test]
fn identity_headers_from_a_trusted_ingress_authenticate() {
    let up = Upstream::start();
    let cfg = base_config(up.addr, INGRESS).replace(
        "drain_timeout_ms = 10000",
        "drain_timeout_ms = 10000\ntrusted_proxies = [\"127.0.0.1/32\"]",
    );
    let gw = Gateway::start(&cfg);
    let r = get(
        &gw,
        "/private",
        &[
            ("x-ssl-client-subject", "CN=svc,O=Acme"),
            ("x-ssl-client-scopes", "jobs metrics"),
            ("x-rampart-subject", "forged"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-rampart-auth"), Some("mtls"));
    assert_eq!(seen.header("x-rampart-subject"), Some("CN=svc,O=Acme"));
    assert_eq!(seen.header("x-rampart-scopes"), Some("jobs metrics"));
    // The identity header of an authenticating proxy in front.
    let r = get(&gw, "/private", &[("x-auth-request-user", "carol")]);
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-rampart-subject"), Some("carol"));
    assert_eq!(up.last().header("x-rampart-auth"), Some("proxy"));
    // Two subjects: refused, never "the first one wins".
    let r = get(
        &gw,
        "/private",
        &[("x-ssl-client-subject", "a"), ("x-ssl-client-subject", "b")],
    );
    assert_problem(&r, 401);
}

#[test]
fn every_refusal_has_the_same_generic_detail() {
    let up = Upstream::start();
    let dir = private_dir("generic");
    std::fs::create_dir(dir.join("data")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("data"), std::fs::Permissions::from_mode(0o700)).unwrap();
    write_private(&dir.join("pepper"), &"p".repeat(40), 0o600);
    write_private(&dir.join("jwt"), &"s".repeat(40), 0o600);
    let cfg = base_config(up.addr, "").replace(
        "drain_timeout_ms = 10000",
        &format!(
            "drain_timeout_ms = 10000\ndata_dir = \"{0}/data\"\nallowed_data_roots = [\"{0}\"]",
            dir.display()
        ),
    ) + &format!(
        "[auth]\nmodes = [\"jwt\", \"api_key\"]\n[auth.api_key]\npepper = \"file:{0}/pepper\"\n\
         [auth.jwt]\nissuer = \"dev\"\naudience = [\"rampart\"]\nhs256_secret = \"file:{0}/jwt\"\nallowed_algs = [\"HS256\"]\n",
        dir.display()
    );
    std::fs::write(dir.join("rampart.toml"), cfg).unwrap();
    let gw = Gateway::spawn(dir.clone(), dir.join("rampart.toml")).unwrap();
    let mut details = std::collections::BTreeSet::new();
    for h in [
        vec![],
        vec![("authorization", "Bearer abc.def.ghi")],
        vec![("authorization", "Bearer x"), ("authorization", "Bearer y")],
        vec![("x-api-key", "rpk_nope")],
    ] {
        let r = get(&gw, "/private", &h);
        let doc = assert_problem(&r, 401);
        details.insert(doc["detail"].as_str().unwrap().to_owned());
        assert!(r.header("www-authenticate").is_some());
    }
    assert_eq!(details.len(), 1, "{details:?}");
    // The precise reasons reach the access log only.
    assert!(gw.wait_access(
        "\"reason\":\"duplicate_credential\"",
        std::time::Duration::from_secs(5)
    ));
    assert!(up.seen().is_empty());
}

#[test]
fn anonymous_access_with_none_mode() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, "[auth]\nmodes = [\"none\"]\n"));
    let r = get(&gw, "/private", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-rampart-auth"), Some("none"));
    assert!(up.last().header("x-rampart-subject").is_none());
}

/// `check` and `serve` agree on the JWT settings: prod without an audience is refused.
#[test]
fn prod_jwt_without_audience_is_refused_by_check_and_serve() {
    let dir = private_dir("jwt-prod");
    let cfg = "profile = \"prod\"\n[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
               trusted_hosts = [\"api.example.com\"]\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n\
               [auth]\nmodes = [\"jwt\"]\n[auth.jwt]\nissuer = \"https://id.example.com/\"\n\
               jwks_url = \"https://id.example.com/jwks.json\"\n";
    let path = dir.join("rampart.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--format", "json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("audience"), "{text}");
    let err = Gateway::spawn(dir.clone(), path)
        .err()
        .expect("serve started");
    assert!(err.contains("audience"), "{err}");
}
