//! JWT authentication against the real binary, with a JWKS served on loopback by a test
//! server that rotates keys, goes down and counts every fetch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use rampart_test_support::{Reply, TestKey, TestServer, jws};
use serde_json::{Value, json};

const ISS: &str = "https://id.example.com/";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISS, "aud": "rampart", "exp": now() + 300, "iat": now(),
           "scope": "jobs metrics", "tenant": "acme", "jti": format!("jti-{sub}")})
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

fn config(up: &Upstream, jwks_url: &str) -> String {
    base_config(
        up.addr,
        &format!(
            "[auth]\nmodes = [\"jwt\"]\n[auth.jwt]\nissuer = \"{ISS}\"\naudience = [\"rampart\"]\n\
             allowed_algs = [\"RS256\", \"ES256\", \"EdDSA\"]\njwks_url = \"{jwks_url}\"\njwks_ttl_s = 1\n\
             jwks_timeout_ms = 500\njwks_max_attempts = 2\njwks_backoff_ms = 50\njwks_max_backoff_ms = 100\n"
        ),
    )
}

fn bearer(gw: &Gateway, token: &str) -> Resp {
    raw(
        gw.addr,
        &format!(
            "GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn refused(gw: &Gateway, token: &str, what: &str) {
    let r = bearer(gw, token);
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{what}"
    );
    assert_security_headers(&r);
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 10 s");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tokens_accepted_attacks_refused_keys_rotated() {
    let rt = runtime();
    let idp = rt.block_on(TestServer::start());
    let (k1, k2, k3) = (
        TestKey::rsa("k1"),
        TestKey::es256("k2"),
        TestKey::ed25519("k3"),
    );
    idp.set("/jwks.json", Reply::Json(jwks(&[&k1, &k2])));
    idp.set("/attacker.json", Reply::Json(jwks(&[&k1])));
    let up = Upstream::start();
    let gw = Gateway::start(&config(&up, &idp.url("/jwks.json")));
    eventually("first key set", || {
        bearer(&gw, &k1.token("RS256", &claims("alice"))).status == 200
    });
    let seen = up.last();
    assert_eq!(seen.header("x-rampart-auth"), Some("jwt"));
    assert_eq!(seen.header("x-rampart-subject"), Some("alice"));
    assert_eq!(seen.header("x-rampart-tenant"), Some("acme"));
    assert_eq!(seen.header("x-rampart-scopes"), Some("jobs metrics"));
    assert_eq!(bearer(&gw, &k2.token("ES256", &claims("bob"))).status, 200);
    up.clear();

    let good = k1.token("RS256", &claims("alice"));
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims("alice");
    c["exp"] = json!(now() - 3600);
    refused(&gw, &k1.token("RS256", &c), "expired");
    let mut c = claims("alice");
    c["nbf"] = json!(now() + 3600);
    refused(&gw, &k1.token("RS256", &c), "not yet valid");
    let mut c = claims("alice");
    c["aud"] = json!(["someone-else"]);
    refused(&gw, &k1.token("RS256", &c), "aud array without ours");
    let mut c = claims("alice");
    c["iss"] = json!("https://evil.example/");
    refused(&gw, &k1.token("RS256", &c), "wrong iss");
    let mut c = claims("alice");
    c["exp"] = json!((now() + 300).to_string());
    refused(&gw, &k1.token("RS256", &c), "string exp");
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = jws(
            &json!({"alg": alg, "kid": "k1"}).to_string(),
            &claims("alice").to_string(),
            |_| Vec::new(),
        );
        refused(&gw, &t, alg);
    }
    // HS/RS confusion: the RSA public key (PEM and DER) used as an HMAC secret.
    for secret in [k1.public_pem().into_bytes(), k1.public_spki_der()] {
        let t = jws(
            &json!({"alg": "HS256", "kid": "k1"}).to_string(),
            &claims("mallory").to_string(),
            |input| {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
                aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
            },
        );
        refused(&gw, &t, "HS/RS confusion");
    }
    refused(
        &gw,
        &format!("{}.{}.", parts[0], parts[1]),
        "stripped signature",
    );
    let other = k1.token("RS256", &claims("mallory"));
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    refused(&gw, &swapped, "swapped payload");
    refused(
        &gw,
        &k1.token("RS384", &claims("alice")),
        "alg outside the allowlist",
    );
    refused(
        &gw,
        &k1.token_with_header("RS256", &json!({"crit": ["exp"]}), &claims("alice")),
        "unknown crit",
    );
    for h in ["jku", "x5u"] {
        let t = k1.token_with_header(
            "RS256",
            &json!({h: idp.url("/attacker.json")}),
            &claims("alice"),
        );
        refused(&gw, &t, h);
    }
    refused(
        &gw,
        &k1.token_with_header("RS256", &json!({"jwk": k1.jwk()}), &claims("alice")),
        "embedded jwk",
    );
    // The kid of the EC key on an RS256 token: key type must match the algorithm.
    let t = jws(
        &json!({"alg": "RS256", "kid": "k2"}).to_string(),
        &claims("alice").to_string(),
        |i| k1.sign("RS256", i),
    );
    refused(&gw, &t, "kid of another key type");
    // Psychic signature: r = s = 0.
    let t = jws(
        &json!({"alg": "ES256", "kid": "k2"}).to_string(),
        &claims("alice").to_string(),
        |_| vec![0u8; 64],
    );
    refused(&gw, &t, "psychic ES256");
    let mut big = claims("alice");
    big["pad"] = json!("x".repeat(10_000));
    refused(&gw, &k1.token("RS256", &big), "oversized token");
    assert_eq!(idp.hits("/attacker.json"), 0, "a jku/x5u URL was fetched");
    assert!(up.seen().is_empty(), "a refused token reached the upstream");

    // Rotation: k3 added, k1 removed; no restart.
    idp.set("/jwks.json", Reply::Json(jwks(&[&k2, &k3])));
    eventually("new key accepted", || {
        bearer(&gw, &k3.token("EdDSA", &claims("carol"))).status == 200
    });
    eventually("old key refused", || {
        bearer(&gw, &k1.token("RS256", &claims("alice"))).status == 401
    });

    // 50 forged kids cause at most a handful of fetches (besides the 1 s TTL refreshes
    // of this configuration, hence the bound of 5 over the ~1 s the loop takes).
    let forged: Vec<String> = (0..50)
        .map(|i| TestKey::es256(&format!("forged-{i}")).token("ES256", &claims("mallory")))
        .collect();
    let before = idp.hits("/jwks.json");
    let started = Instant::now();
    for t in &forged {
        refused(&gw, t, "forged kid");
    }
    let fetched = idp.hits("/jwks.json") - before;
    let ttl_refreshes = started.elapsed().as_secs() + 1;
    assert!(
        fetched <= 4 + ttl_refreshes,
        "{fetched} JWKS fetches for 50 forged kids in {:?}",
        started.elapsed()
    );
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("rampart_auth_failures_total{method=\"jwt\",reason=\"expired\"} 1"),
        "{m}"
    );
    drop(rt);
}

#[test]
fn jwks_down_at_start_answers_503_then_recovers() {
    let rt = runtime();
    let idp = rt.block_on(TestServer::start());
    idp.set("/jwks.json", Reply::Status(503));
    let k = TestKey::es256("e1");
    let up = Upstream::start();
    let gw = Gateway::start(&config(&up, &idp.url("/jwks.json")));
    // The gateway starts; JWT callers get 503 + Retry-After, not 401.
    let r = bearer(&gw, &k.token("ES256", &claims("alice")));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_problem(&r, 503);
    let h = gw.admin_get("/healthz");
    assert_eq!(h.status, 503);
    assert!(h.text().contains("jwks_unavailable"), "{}", h.text());
    // Garbage never becomes a key set.
    idp.set(
        "/jwks.json",
        Reply::Raw(b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}".to_vec()),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bearer(&gw, &k.token("ES256", &claims("alice"))).status, 503);
    idp.set("/jwks.json", Reply::Json(jwks(&[&k])));
    eventually("recovered", || {
        bearer(&gw, &k.token("ES256", &claims("alice"))).status == 200
    });
    eventually("healthy", || gw.admin_get("/healthz").status == 200);
    drop(rt);
}

/// A key rotated in at the identity provider is accepted on its first use (the gateway
/// waits, bounded, for the refresh the unknown kid triggered), while 50 forged kids
/// still fail at once and cost at most a handful of JWKS fetches. The TTL is long, so
/// only the unknown-kid refresh can have fetched the new key.
#[test]
fn rotated_kid_accepted_on_first_use() {
    let rt = runtime();
    let idp = rt.block_on(TestServer::start());
    let (k1, k2) = (TestKey::rsa("k1"), TestKey::ed25519("k2-new"));
    idp.set("/jwks.json", Reply::Json(jwks(&[&k1])));
    let up = Upstream::start();
    let cfg = config(&up, &idp.url("/jwks.json")).replace("jwks_ttl_s = 1", "jwks_ttl_s = 300");
    let gw = Gateway::start(&cfg);
    eventually("first key set", || {
        bearer(&gw, &k1.token("RS256", &claims("alice"))).status == 200
    });

    // A refresh forced by an unknown kid may have happened at start (no key set yet):
    // let the once-per-interval limit (rampart_jwt DEFAULT_UNKNOWN_KID_INTERVAL) pass.
    std::thread::sleep(rampart_jwt::DEFAULT_UNKNOWN_KID_INTERVAL + Duration::from_secs(1));
    // Rotation at the identity provider: the very first request with the new kid passes.
    idp.set("/jwks.json", Reply::Json(jwks(&[&k1, &k2])));
    let before = idp.hits("/jwks.json");
    let r = bearer(&gw, &k2.token("EdDSA", &claims("carol")));
    assert_eq!(r.status, 200, "first use of a rotated-in kid: {}", r.text());
    assert_eq!(up.last().header("x-rampart-subject"), Some("carol"));
    assert!(
        idp.hits("/jwks.json") > before,
        "the unknown kid triggered no fetch"
    );

    // Forged kids: refused, and they cost at most a handful of fetches (the refresh
    // requests are rate-limited; the wait is bounded by the one refresh in flight).
    let forged: Vec<String> = (0..50)
        .map(|i| TestKey::es256(&format!("forged-{i}")).token("ES256", &claims("mallory")))
        .collect();
    let before = idp.hits("/jwks.json");
    let started = Instant::now();
    for t in &forged {
        refused(&gw, t, "forged kid");
    }
    let fetched = idp.hits("/jwks.json") - before;
    assert!(
        fetched <= 5,
        "{fetched} JWKS fetches for 50 forged kids in {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "forged kids were held for {:?}",
        started.elapsed()
    );
    drop(rt);
}
