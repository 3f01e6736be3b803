//! The JWKS loader: one background task per verifier that keeps the key set fresh.
//!
//! - First fetch at once, then every `jwks_ttl`; until a set loads, failures are retried
//!   every `max(jwks_max_backoff, 1 s)` (capped by the TTL), and JWT requests get
//!   `Unavailable` (503 + `Retry-After`), never a 401 for a good token.
//! - Each refresh: OIDC discovery when configured (`jwks_uri` must be https, or plain
//!   http to loopback in dev; the document's `issuer` must equal the configured one),
//!   then the key set, each response read under `jwks_timeout` and at most
//!   `jwks_max_bytes`; no redirects are followed. A failed attempt (transport, status,
//!   size, garbage) is retried up to `jwks_max_attempts` times with exponential backoff
//!   (`jwks_backoff` doubling, capped by `jwks_max_backoff`) and jitter (a uniform draw
//!   in the upper half of the step).
//! - A set that does not parse or has no usable key never replaces the current one. The
//!   current one keeps serving while refreshes fail, for at most `jwks_max_stale` past
//!   its TTL; `health()` says `stale` meanwhile; after that JWT requests get 503.
//! - An unknown `kid` asks for a refresh, at most once per `unknown_kid_interval`, so
//!   forged kids cannot cause a fetch storm; verification never waits for a fetch when
//!   the key is known.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::jwk::{self, KeySet};
use crate::settings::{JwksSource, JwtSettings, url_allowed};

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A loaded key set and when it was fetched.
pub(crate) struct Loaded {
    pub set: KeySet,
    pub fetched_at: Instant,
    /// After this instant the set no longer serves (`None`: static keys).
    pub expires_at: Option<Instant>,
}

impl Loaded {
    pub fn usable(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// What `/healthz` and the metrics need to know about the key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksHealth {
    /// A key set is loaded and within its stale bound (or no key set is needed).
    pub loaded: bool,
    /// Usable keys in the current set.
    pub keys: usize,
    /// Time since the current set was fetched.
    pub age: Option<Duration>,
    /// Serving a set whose refresh failed (or that is past its TTL).
    pub stale: bool,
    /// Why the last refresh failed (no URLs, no secrets, no response bodies).
    pub last_error: Option<String>,
    /// Fetch attempts so far (each HTTP request counts).
    pub fetches: u64,
    /// Refreshes that failed after all attempts.
    pub failures: u64,
}

impl JwksHealth {
    /// The `/healthz` reason this state calls for: `jwks_unavailable` before the first
    /// set loads (or after the stale bound), `jwks_stale` while a stale set serves.
    pub fn reason(&self) -> Option<&'static str> {
        if !self.loaded {
            Some("jwks_unavailable")
        } else if self.stale {
            Some("jwks_stale")
        } else {
            None
        }
    }
}

#[derive(Default)]
struct Status {
    last_error: Option<String>,
    last_failed: bool,
}

/// State shared by the verifier and its loader task.
pub(crate) struct Shared {
    pub settings: Arc<JwtSettings>,
    pub keys: ArcSwapOption<Loaded>,
    status: Mutex<Status>,
    fetches: AtomicU64,
    failures: AtomicU64,
    refresh: Notify,
    pub stop: Notify,
    /// Bumped after every refresh (success or failure): unknown-kid waiters watch it.
    generation: watch::Sender<u64>,
    in_flight: AtomicBool,
    last_forced: Mutex<Option<Instant>>,
    /// True when there is no loader (static keys, HS256 only).
    pub fixed: bool,
}

impl Shared {
    pub fn new(settings: Arc<JwtSettings>, fixed: bool) -> Arc<Self> {
        Arc::new(Shared {
            settings,
            keys: ArcSwapOption::empty(),
            status: Mutex::new(Status::default()),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refresh: Notify::new(),
            stop: Notify::new(),
            generation: watch::channel(0).0,
            in_flight: AtomicBool::new(false),
            last_forced: Mutex::new(None),
            fixed,
        })
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the loader for a refresh, unless one was asked for within
    /// `unknown_kid_interval`. Returns whether this call triggered one.
    pub fn request_refresh(&self) -> bool {
        if self.fixed {
            return false;
        }
        let now = Instant::now();
        let mut last = self
            .last_forced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| now.duration_since(t) < self.settings.unknown_kid_interval) {
            return false;
        }
        *last = Some(now);
        self.refresh.notify_one();
        true
    }

    pub fn refresh_in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn health(&self) -> JwksHealth {
        let now = Instant::now();
        let loaded = self.keys.load();
        let st = self.status();
        let usable = loaded.as_ref().filter(|l| l.usable(now));
        // HS256-only (no key source, no static set) needs no key set at all.
        let needs_keys = self.settings.jwks.is_some() || loaded.is_some();
        let age = usable.map(|l| now.duration_since(l.fetched_at));
        JwksHealth {
            loaded: usable.is_some() || !needs_keys,
            keys: usable.map_or(0, |l| l.set.len()),
            age,
            stale: usable.is_some()
                && !self.fixed
                && (st.last_failed || age.is_some_and(|a| a > self.settings.jwks_ttl * 2)),
            last_error: st.last_error.clone(),
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// Starts the loader on the current tokio runtime, or on a thread of its own when there
/// is none (so `start` works from synchronous code too).
pub(crate) fn spawn(shared: Arc<Shared>) {
    let client = match http_client(shared.settings.jwks_timeout) {
        Ok(c) => c,
        Err(e) => {
            shared.status().last_error = Some(format!("TLS client setup failed: {e}"));
            return;
        }
    };
    let task = run(shared, client);
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        h.spawn(task);
    } else {
        let spawned = std::thread::Builder::new()
            .name("rampart-jwks".into())
            .spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(task);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the JWKS loader thread");
        }
    }
}

fn http_client(connect_timeout: Duration) -> Result<HttpClient, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(Arc::clone(&provider))
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no native root certificates: an https JWKS will fail to verify");
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(cfg)
        }
    };
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(connector))
}

async fn run(shared: Arc<Shared>, client: HttpClient) {
    let s = Arc::clone(&shared.settings);
    let Some(source) = s.jwks.clone() else {
        return;
    };
    let retry_unloaded = s
        .jwks_max_backoff
        .max(Duration::from_secs(1))
        .min(s.jwks_ttl);
    loop {
        shared.in_flight.store(true, Ordering::Release);
        let outcome = refresh(&shared, &client, &source).await;
        let ok = outcome.is_ok();
        match outcome {
            Ok((set, skipped)) => {
                let now = Instant::now();
                tracing::info!(keys = set.len(), skipped, "JWKS loaded");
                shared.keys.store(Some(Arc::new(Loaded {
                    set,
                    fetched_at: now,
                    expires_at: Some(now + s.jwks_ttl + s.jwks_max_stale),
                })));
                let mut st = shared.status();
                st.last_failed = false;
                st.last_error = None;
            }
            Err(e) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                let have = shared.keys.load().is_some();
                tracing::warn!(error = %e, serving_previous_set = have, "JWKS refresh failed");
                let mut st = shared.status();
                st.last_failed = true;
                st.last_error = Some(e);
            }
        }
        shared.in_flight.store(false, Ordering::Release);
        shared.generation.send_modify(|g| *g = g.wrapping_add(1));
        let loaded = shared.keys.load().is_some();
        let wait = if ok || loaded {
            s.jwks_ttl
        } else {
            retry_unloaded
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.refresh.notified() => {}
            () = shared.stop.notified() => return,
        }
    }
}

/// One refresh: discovery (when configured) and the key set, each with retries.
async fn refresh(
    shared: &Shared,
    client: &HttpClient,
    source: &JwksSource,
) -> Result<(KeySet, usize), String> {
    let s = &shared.settings;
    let jwks_uri = match source {
        JwksSource::Url(u) => u.clone(),
        JwksSource::Discovery { issuer, config_url } => {
            with_retries(shared, || async {
                let body = fetch(shared, client, config_url).await?;
                jwks_uri_from_discovery(&body, issuer, s)
            })
            .await?
        }
    };
    with_retries(shared, || async {
        let body = fetch(shared, client, &jwks_uri).await?;
        jwk::parse_jwks(&body, &s.allowed_algs).map_err(|e| e.to_string())
    })
    .await
}

/// Reads `jwks_uri` from an OpenID Provider configuration document.
pub(crate) fn jwks_uri_from_discovery(
    body: &[u8],
    issuer: &str,
    s: &JwtSettings,
) -> Result<http::Uri, String> {
    let doc = crate::json::parse_object(body)
        .map_err(|_| "the discovery document is not a JSON object".to_owned())?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err("the discovery document names another issuer".into());
    }
    let Some(Value::String(u)) = doc.get("jwks_uri") else {
        return Err("the discovery document has no jwks_uri".into());
    };
    let uri: http::Uri = u
        .parse()
        .map_err(|_| "the discovery jwks_uri is not a URL".to_owned())?;
    if !url_allowed(s.profile, &uri) {
        return Err(
            "the discovery jwks_uri is not https (plain http only to loopback in profile \"dev\")"
                .into(),
        );
    }
    Ok(uri)
}

async fn with_retries<T, F, Fut>(shared: &Shared, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let s = &shared.settings;
    let mut last = String::from("no attempt made");
    for attempt in 0..s.jwks_max_attempts {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
        if attempt + 1 < s.jwks_max_attempts {
            tokio::time::sleep(backoff(s.jwks_backoff, s.jwks_max_backoff, attempt)).await;
        }
    }
    Err(last)
}

/// `base · 2^attempt`, capped by `max`, then a uniform draw in `[d/2, d]`.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let d = base
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(max)
        .min(max);
    let mut b = [0u8; 4];
    let r = if aws_lc_rs::rand::fill(&mut b).is_ok() {
        u32::from_le_bytes(b)
    } else {
        u32::MAX
    };
    let half = d / 2;
    half + (d - half).mul_f64(f64::from(r) / f64::from(u32::MAX))
}

async fn fetch(shared: &Shared, client: &HttpClient, uri: &http::Uri) -> Result<Bytes, String> {
    let s = &shared.settings;
    if !url_allowed(s.profile, uri) {
        return Err("key source URL refused: https required (plain http only to loopback in profile \"dev\")".into());
    }
    shared.fetches.fetch_add(1, Ordering::Relaxed);
    let max = s.jwks_max_bytes;
    let req = http::Request::get(uri.clone())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("rampart/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|_| "cannot build the request".to_owned())?;
    let work = async {
        let resp = client
            .request(req)
            .await
            .map_err(|_| "connection failed".to_owned())?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status().as_u16()));
        }
        if resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > max as u64)
        {
            return Err(format!("response larger than {max} bytes"));
        }
        Limited::new(resp.into_body(), max)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("response larger than {max} bytes")
                } else {
                    "reading the response failed".to_owned()
                }
            })
    };
    match tokio::time::timeout(s.jwks_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms", s.jwks_timeout.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 0..30 {
            let d = backoff(base, max, attempt);
            let step = (base * (1u32 << attempt.min(20))).min(max);
            assert!(d >= step / 2 && d <= step, "{attempt}: {d:?} vs {step:?}");
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| backoff(base, max, 3)).collect();
        assert!(draws.len() > 1, "jitter");
    }

    #[test]
    fn discovery_document_rules() {
        let mut s = JwtSettings::new(rampart_config::Profile::Prod, None);
        let iss = "https://id.example.com/";
        let ok =
            br#"{"issuer":"https://id.example.com/","jwks_uri":"https://id.example.com/keys"}"#;
        assert_eq!(
            jwks_uri_from_discovery(ok, iss, &s).unwrap().to_string(),
            "https://id.example.com/keys"
        );
        let other = br#"{"issuer":"https://evil/","jwks_uri":"https://id.example.com/keys"}"#;
        assert!(jwks_uri_from_discovery(other, iss, &s).is_err());
        let http = br#"{"issuer":"https://id.example.com/","jwks_uri":"http://127.0.0.1/keys"}"#;
        assert!(jwks_uri_from_discovery(http, iss, &s).is_err());
        s.profile = rampart_config::Profile::Dev;
        assert!(jwks_uri_from_discovery(http, iss, &s).is_ok());
        let dup = br#"{"issuer":"https://id.example.com/","jwks_uri":"https://a/k","jwks_uri":"https://b/k"}"#;
        assert!(jwks_uri_from_discovery(dup, iss, &s).is_err());
        assert!(jwks_uri_from_discovery(b"[]", iss, &s).is_err());
    }
}
