//! The JWKS loader against a real HTTP server on 127.0.0.1 (rampart-test-support):
//! rotation, down, slow, garbage, the stale bound, discovery, the unknown-kid rate
//! limit, and the key-carrying headers whose URLs must never be fetched.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_config::Profile;
use rampart_jwt::{JwksSource, JwtFailure, JwtSettings, JwtVerifier, SystemClock};
use rampart_test_support::{Reply, TestKey, TestServer};
use serde_json::{Value, json};

const JWKS: &str = "/jwks.json";

fn claims() -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({"sub": "alice", "exp": now + 600, "iat": now})
}

fn set_of(keys: &[&TestKey]) -> Reply {
    Reply::Json(json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string())
}

fn settings(server: &TestServer) -> JwtSettings {
    let mut s = JwtSettings::new(
        Profile::Dev,
        Some(JwksSource::Url(server.url(JWKS).parse().unwrap())),
    );
    s.jwks_ttl = Duration::from_secs(300);
    s.jwks_timeout = Duration::from_millis(500);
    s.jwks_max_attempts = 2;
    s.jwks_backoff = Duration::from_millis(10);
    s.jwks_max_backoff = Duration::from_millis(20);
    s
}

/// Polls `cond` every 20 ms for up to `secs`.
async fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

async fn loaded(v: &JwtVerifier) {
    assert!(
        wait_until(5, || v.health().loaded).await,
        "{:?}",
        v.health()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_then_rotates_without_restart() {
    let server = TestServer::start().await;
    let k1 = TestKey::es256("k1");
    let k2 = TestKey::rsa("k2");
    server.set(JWKS, set_of(&[&k1]));
    let v = JwtVerifier::start(settings(&server), Arc::new(SystemClock));
    loaded(&v).await;
    let h = v.health();
    assert_eq!((h.keys, h.stale, h.reason()), (1, false, None));
    let t1 = k1.token("ES256", &claims());
    assert_eq!(v.verify(&t1).unwrap().kid.as_deref(), Some("k1"));

    // Rotation at the provider: k2 added, k1 removed. The first k2 token triggers a
    // refresh and (verify_async) waits for it: accepted on first use.
    server.set(JWKS, set_of(&[&k2]));
    let t2 = k2.token("RS256", &claims());
    assert_eq!(
        v.verify_async(&t2).await.unwrap().kid.as_deref(),
        Some("k2")
    );
    // k1 is gone: its token is refused now, even though it was cached as verified.
    assert_eq!(v.verify(&t1), Err(JwtFailure::Invalid("unknown_kid")));
    assert_eq!(server.hits(JWKS), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_refresh_picks_up_new_keys() {
    let server = TestServer::start().await;
    let k1 = TestKey::ed25519("k1");
    let k2 = TestKey::ed25519("k2");
    server.set(JWKS, set_of(&[&k1]));
    let mut s = settings(&server);
    s.jwks_ttl = Duration::from_secs(1);
    let v = JwtVerifier::start(s, Arc::new(SystemClock));
    loaded(&v).await;
    server.set(JWKS, set_of(&[&k1, &k2]));
    assert!(wait_until(5, || server.hits(JWKS) >= 2).await);
    let t2 = k2.token("EdDSA", &claims());
    // The synchronous path never waits: once the TTL refresh landed, k2 verifies.
    assert!(wait_until(5, || v.verify(&t2).is_ok()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_at_start_is_unavailable_not_invalid_then_recovers() {
    let server = TestServer::start().await;
    server.set(JWKS, Reply::Status(503));
    let k = TestKey::es256("k");
    let v = JwtVerifier::start(settings(&server), Arc::new(SystemClock));
    let t = k.token("ES256", &claims());
    assert_eq!(v.verify(&t), Err(JwtFailure::Unavailable));
    assert!(wait_until(5, || v.health().failures >= 1).await);
    let h = v.health();
    assert_eq!(h.reason(), Some("jwks_unavailable"));
    assert_eq!(h.last_error.as_deref(), Some("HTTP status 503"));
    // Each refresh makes jwks_max_attempts requests.
    assert!(server.hits(JWKS) >= 2, "{}", server.hits(JWKS));
    assert_eq!(v.verify(&t), Err(JwtFailure::Unavailable));
    // A malformed token is still just invalid.
    assert_eq!(v.verify("x.y"), Err(JwtFailure::Invalid("malformed")));
    // The provider comes back: the loader retries on its own (every ≥ 1 s).
    server.set(JWKS, set_of(&[&k]));
    assert!(wait_until(5, || v.health().loaded).await);
    assert!(v.verify(&t).is_ok());
    assert_eq!(v.health().reason(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_at_start() {
    // A port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let s = JwtSettings::new(
        Profile::Dev,
        Some(JwksSource::Url(
            format!("http://{addr}/jwks").parse().unwrap(),
        )),
    );
    let v = JwtVerifier::start(s, Arc::new(SystemClock));
    assert!(wait_until(10, || v.health().failures >= 1).await);
    assert_eq!(v.health().last_error.as_deref(), Some("connection failed"));
    assert_eq!(v.health().reason(), Some("jwks_unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_provider_times_out_and_known_keys_never_wait() {
    let server = TestServer::start().await;
    let k = TestKey::es256("k");
    server.set(
        JWKS,
        Reply::Slow(Duration::from_secs(5), Box::new(set_of(&[&k]))),
    );
    let v = JwtVerifier::start(settings(&server), Arc::new(SystemClock));
    assert!(wait_until(5, || v.health().failures >= 1).await);
    assert_eq!(
        v.health().last_error.as_deref(),
        Some("timed out after 500 ms")
    );
    // Fast again: loads.
    server.set(JWKS, set_of(&[&k]));
    loaded(&v).await;
    // Slow again, and a refresh under way (an unknown kid asks for one): requests
    // with the known key do not wait for it.
    server.set(
        JWKS,
        Reply::Slow(Duration::from_secs(3), Box::new(set_of(&[&k]))),
    );
    let forged = TestKey::es256("unknown").token("ES256", &claims());
    assert_eq!(v.verify(&forged), Err(JwtFailure::Invalid("unknown_kid")));
    let t = k.token("ES256", &claims());
    let start = Instant::now();
    for _ in 0..20 {
        assert!(v.verify(&t).is_ok());
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // verify_async on a known key does not wait either.
    let start = Instant::now();
    assert!(v.verify_async(&t).await.is_ok());
    assert!(start.elapsed() < Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_replaces_good_keys_and_stale_is_reported() {
    let server = TestServer::start().await;
    let k = TestKey::es256("k");
    server.set(JWKS, set_of(&[&k]));
    let mut s = settings(&server);
    s.jwks_ttl = Duration::from_secs(1);
    let v = JwtVerifier::start(s, Arc::new(SystemClock));
    loaded(&v).await;
    let t = k.token("ES256", &claims());
    for (garbage, err) in [
        (
            Reply::Raw(b"<html>oops</html>".to_vec()),
            "the key set is not valid JSON",
        ),
        (
            Reply::Json(r#"{"keys":[]}"#.into()),
            "the key set has no usable signing key (0 skipped)",
        ),
        (
            Reply::Json(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into()),
            "the key set has no usable signing key (1 skipped)",
        ),
        (
            Reply::Json(r#"{"kes":[]}"#.into()),
            "the key set has no `keys` array",
        ),
        (
            Reply::Raw(vec![b'x'; 600 * 1024]),
            "response larger than 524288 bytes",
        ),
    ] {
        server.set(JWKS, garbage);
        assert!(
            wait_until(6, || v.health().last_error.as_deref() == Some(err)).await,
            "{err}: {:?}",
            v.health()
        );
        let h = v.health();
        assert!(h.loaded && h.stale, "{h:?}");
        assert_eq!(h.reason(), Some("jwks_stale"));
        assert_eq!(h.keys, 1);
        assert!(v.verify(&t).is_ok(), "the last good set still serves");
    }
    server.set(JWKS, set_of(&[&k]));
    assert!(wait_until(6, || !v.health().stale).await);
    assert_eq!(v.health().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_set_stops_serving_after_the_bound() {
    let server = TestServer::start().await;
    let k = TestKey::es256("k");
    server.set(JWKS, set_of(&[&k]));
    let mut s = settings(&server);
    s.jwks_ttl = Duration::from_secs(1);
    s.jwks_max_stale = Duration::from_secs(1);
    let v = JwtVerifier::start(s, Arc::new(SystemClock));
    loaded(&v).await;
    server.set(JWKS, Reply::Status(500));
    let t = k.token("ES256", &claims());
    assert!(v.verify(&t).is_ok());
    // TTL (1 s) + stale bound (1 s) later, the set no longer serves.
    assert!(wait_until(6, || v.verify(&t) == Err(JwtFailure::Unavailable)).await);
    assert_eq!(v.health().reason(), Some("jwks_unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_discovery() {
    let server = TestServer::start().await;
    let k = TestKey::es384("k");
    server.set_discovery("/keys");
    server.set("/keys", set_of(&[&k]));
    let mut s = JwtSettings::new(Profile::Dev, None);
    s.jwks = Some(JwksSource::Discovery {
        issuer: server.url(""),
        config_url: server
            .url("/.well-known/openid-configuration")
            .parse()
            .unwrap(),
    });
    let v = JwtVerifier::start(s, Arc::new(SystemClock));
    loaded(&v).await;
    assert!(v.verify(&k.token("ES384", &claims())).is_ok());
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/keys"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_naming_another_issuer_is_refused() {
    let server = TestServer::start().await;
    let k = TestKey::es256("k");
    server.set(
        "/.well-known/openid-configuration",
        Reply::Json(
            json!({"issuer": "https://evil.example/", "jwks_uri": server.url("/keys")}).to_string(),
        ),
    );
    server.set("/keys", set_of(&[&k]));
    let mut s = JwtSettings::new(Profile::Dev, None);
    s.jwks_max_attempts = 1;
    s.jwks = Some(JwksSource::Discovery {
        issuer: server.url(""),
        config_url: server
            .url("/.well-known/openid-configuration")
            .parse()
            .unwrap(),
    });
    let v = JwtVerifier::start(s, Arc::new(SystemClock));
    assert!(wait_until(5, || v.health().failures >= 1).await);
    assert_eq!(
        v.health().last_error.as_deref(),
        Some("the discovery document names another issuer")
    );
    assert_eq!(server.hits("/keys"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_refused_in_prod() {
    let server = TestServer::start().await;
    let k = TestKey::es256("k");
    server.set(JWKS, set_of(&[&k]));
    let mut s = settings(&server);
    s.profile = Profile::Prod;
    let v = JwtVerifier::start(s, Arc::new(SystemClock));
    assert!(wait_until(5, || v.health().failures >= 1).await);
    assert!(v.health().last_error.unwrap().contains("https required"));
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_forged_kids_cause_at_most_a_handful_of_fetches() {
    let server = TestServer::start().await;
    let k = TestKey::es256("k");
    server.set(JWKS, set_of(&[&k]));
    let v = JwtVerifier::start(settings(&server), Arc::new(SystemClock));
    loaded(&v).await;
    let attacker = TestKey::es256("x");
    let mut waits = Vec::new();
    for i in 0..50 {
        let mut h = json!({});
        h["kid"] = Value::String(format!("forged-{i}"));
        let t = attacker.token_with_header("ES256", &h, &claims());
        assert_eq!(v.verify(&t), Err(JwtFailure::Invalid("unknown_kid")));
        let v2 = v.clone();
        waits.push(tokio::spawn(async move { v2.verify_async(&t).await }));
    }
    for w in waits {
        assert_eq!(w.await.unwrap(), Err(JwtFailure::Invalid("unknown_kid")));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fetches = server.hits(JWKS);
    // The initial load plus at most one refresh per unknown-kid interval (15 s).
    assert!(fetches <= 3, "{fetches} fetches");
    assert!(
        fetches >= 2,
        "the first unknown kid does ask for one refresh"
    );
    assert!(v.verify(&k.token("ES256", &claims())).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_carrying_headers_are_refused_and_never_fetched() {
    let server = TestServer::start().await;
    let k = TestKey::es256("k");
    server.set(JWKS, set_of(&[&k]));
    // The attacker's endpoints answer a key set with the attacker's key.
    let attacker = TestKey::es256("k");
    server.set("/evil/jwks", set_of(&[&attacker]));
    server.set(
        "/evil/cert",
        Reply::Raw(b"-----BEGIN CERTIFICATE-----".to_vec()),
    );
    let v = JwtVerifier::start(settings(&server), Arc::new(SystemClock));
    loaded(&v).await;
    let before = server.total_hits();
    for extra in [
        json!({"jku": server.url("/evil/jwks")}),
        json!({"x5u": server.url("/evil/cert")}),
        json!({"jwk": attacker.jwk()}),
        json!({"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        json!({"jku": server.url("/evil/jwks"), "kid": "unknown-kid"}),
    ] {
        let t = attacker.token_with_header("ES256", &extra, &claims());
        assert_eq!(
            v.verify(&t),
            Err(JwtFailure::Invalid("embedded_key_header")),
            "{extra}"
        );
        assert_eq!(
            v.verify_async(&t).await,
            Err(JwtFailure::Invalid("embedded_key_header"))
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.hits("/evil/jwks"), 0);
    assert_eq!(server.hits("/evil/cert"), 0);
    assert_eq!(server.total_hits(), before, "nothing fetched at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_up_to_max_attempts() {
    let server = TestServer::start().await;
    server.set(JWKS, Reply::Status(500));
    let mut s = settings(&server);
    s.jwks_max_attempts = 4;
    s.jwks_backoff = Duration::from_millis(50);
    s.jwks_max_backoff = Duration::from_millis(100);
    s.jwks_ttl = Duration::from_secs(60);
    let start = Instant::now();
    let v = JwtVerifier::start(s, Arc::new(SystemClock));
    assert!(wait_until(5, || v.health().failures >= 1).await);
    let took = start.elapsed();
    assert_eq!(server.hits(JWKS), 4);
    assert_eq!(v.health().fetches, 4);
    // Three sleeps: ≥ 25 + 50 + 50 ms (each jittered into the upper half of its step).
    assert!(took >= Duration::from_millis(125), "{took:?}");
}

#[test]
fn start_without_a_runtime() {
    // `start` from synchronous code: the loader runs on a thread of its own.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start());
    let k = TestKey::es256("k");
    server.set(JWKS, set_of(&[&k]));
    let v = JwtVerifier::start(settings(&server), Arc::new(SystemClock));
    let end = Instant::now() + Duration::from_secs(5);
    while !v.health().loaded && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(v.verify(&k.token("ES256", &claims())).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_requests_wait_for_the_first_fetch_under_way() {
    let server = TestServer::start().await;
    let k = TestKey::es256("k");
    server.set(
        JWKS,
        Reply::Slow(Duration::from_millis(300), Box::new(set_of(&[&k]))),
    );
    let v = JwtVerifier::start(settings(&server), Arc::new(SystemClock));
    let t = k.token("ES256", &claims());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The synchronous path answers at once (503 material); the async one waits for
    // the fetch under way and accepts.
    assert_eq!(v.verify(&t), Err(JwtFailure::Unavailable));
    assert!(v.verify_async(&t).await.is_ok());
}
