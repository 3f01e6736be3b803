//! The signed identity assertion: on routes with `identity_assertion = true`, the upstream
//! receives the caller as a short-lived EdDSA JWT in `x-rampart-identity`, which it can
//! verify itself against rampart's JWKS (`GET /.well-known/jwks.json` on the admin
//! listener) instead of trusting the plain `x-rampart-*` headers and the network path.
//!
//! Guards against: a client (or anything between gateway and upstream that is not
//! rampart) asserting an identity (the header is removed from every request before the
//! assertion is added, whatever the route; `Sanitize` strips client `x-rampart-*` earlier
//! too); an assertion replayed to another upstream (`aud` is the route's upstream name) or
//! much later (`exp` = `iat` + 30 s). Trusts: the `Permit` made by
//! the authorization stage, the signing keyring of `[signing]`, and the injected clock.
//!
//! Token: header `{"alg":"EdDSA","typ":"JWT","kid":<fingerprint of the active key>}`;
//! claims `iss` = `rampart`, `sub` (absent for an anonymous caller), `aud` = the upstream
//! name, `iat`, `nbf`, `exp`, `jti`, `tenant` (when known), `scopes` (granted, roles
//! mapped), `roles`, `auth` (the authentication method), `route` (route id).
//!
//! Signing costs tens of microseconds, so one assertion per (caller, route) is reused for
//! up to [`REUSE`] (then at least 25 s of its life remain). `jti` therefore names an
//! assertion, not a request: an upstream that wants one id per request reads
//! `x-request-id`. The cache holds at most [`CACHE_CAP`] entries; when full, expired
//! entries go, and if that is not enough, everything goes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::header::{HeaderName, HeaderValue};
use rampart_config::RouteConfig;
use rampart_crypto::{Keyring, PublicKey, Signature, SigningKey};
use rampart_http::{Authorized, Identity, NoStage, Reject, RequestId, Resp, StageFuture};
use tower_layer::Layer;
use tower_service::Service;

/// The header the upstream receives the assertion in.
pub const X_RAMPART_IDENTITY: HeaderName = HeaderName::from_static("x-rampart-identity");
/// `iss` of every assertion.
pub const ISSUER: &str = "rampart";
/// Lifetime of an assertion.
pub const TTL: Duration = Duration::from_secs(30);
/// How long one signed assertion is reused for the same caller on the same route.
pub const REUSE: Duration = Duration::from_secs(5);
/// Most cached assertions (keys are built from client credentials, so bounded).
pub const CACHE_CAP: usize = 10_000;

/// Signs assertions: the active key of the keyring (or one key, in tests and embeddings).
pub trait Signer: Send + Sync + 'static {
    /// The JWT `kid`: the key's `SHA256:` fingerprint, as the JWKS lists it.
    fn kid(&self) -> &str;
    fn sign(&self, msg: &[u8]) -> Signature;
}

impl Signer for Keyring {
    fn kid(&self) -> &str {
        self.active().public().fingerprint()
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        Keyring::sign(self, msg)
    }
}

impl Signer for SigningKey {
    fn kid(&self) -> &str {
        self.public().fingerprint()
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        SigningKey::sign(self, msg)
    }
}

/// Seconds since the Unix epoch (injected so tests control time).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The JWKS document of `keys` (RFC 7517, OKP keys of RFC 8037): every key the keyring
/// holds, so assertions signed before a rotation still verify.
pub fn jwks_json(keys: &[PublicKey]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": B64.encode(k.raw()),
                "kid": k.fingerprint(),
                "alg": "EdDSA",
                "use": "sig",
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

struct Cached {
    value: HeaderValue,
    made: u64,
}

/// Makes (and briefly reuses) assertions.
pub struct Asserter {
    signer: Arc<dyn Signer>,
    /// base64url of the JOSE header, the same for every token of this signer.
    header: String,
    clock: Clock,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Asserter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asserter")
            .field("kid", &self.signer.kid())
            .finish_non_exhaustive()
    }
}

impl Asserter {
    pub fn new(signer: Arc<dyn Signer>) -> Self {
        Self::with_clock(signer, Arc::new(system_clock))
    }

    pub fn with_clock(signer: Arc<dyn Signer>, clock: Clock) -> Self {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": signer.kid() });
        Self {
            header: B64.encode(header.to_string()),
            signer,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The assertion for `identity`, granted `scopes` on `route`, addressed to the
    /// route's upstream.
    pub fn assert(
        &self,
        identity: &Identity,
        route: &RouteConfig,
        scopes: &[String],
    ) -> Option<HeaderValue> {
        let now = (self.clock)();
        let key = cache_key(identity, route, scopes);
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(&key)
            && now >= c.made
            && now - c.made < REUSE.as_secs()
        {
            return Some(c.value.clone());
        }
        let value = self.sign(identity, route, scopes, now)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAP {
                cache.retain(|_, c| now >= c.made && now - c.made < REUSE.as_secs());
                if cache.len() >= CACHE_CAP {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Cached {
                    value: value.clone(),
                    made: now,
                },
            );
        }
        Some(value)
    }

    fn sign(
        &self,
        id: &Identity,
        route: &RouteConfig,
        scopes: &[String],
        now: u64,
    ) -> Option<HeaderValue> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).ok()?;
        let mut claims = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            claims.insert(k.to_owned(), v);
        };
        put("iss", ISSUER.into());
        if let Some(s) = &id.subject {
            put("sub", s.as_str().into());
        }
        put("aud", route.upstream.as_str().into());
        put("iat", now.into());
        put("nbf", now.into());
        put("exp", now.saturating_add(TTL.as_secs()).into());
        put("jti", B64.encode(jti).into());
        if let Some(t) = &id.tenant {
            put("tenant", t.as_str().into());
        }
        put("scopes", scopes.into());
        put("roles", id.roles.as_slice().into());
        put("auth", id.method.into());
        put("route", route.id.as_str().into());
        let claims = serde_json::Value::Object(claims).to_string();
        let mut token = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 100);
        token.push_str(&self.header);
        token.push('.');
        B64.encode_string(claims.as_bytes(), &mut token);
        let sig = self.signer.sign(token.as_bytes());
        token.push('.');
        B64.encode_string(sig.as_bytes(), &mut token);
        HeaderValue::from_str(&token).ok()
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }
}

/// Everything the claims depend on, except time.
fn cache_key(id: &Identity, route: &RouteConfig, scopes: &[String]) -> String {
    let mut k = String::with_capacity(128);
    for part in [
        route.id.as_str(),
        id.method,
        id.subject.as_deref().unwrap_or(""),
        id.tenant.as_deref().unwrap_or(""),
    ] {
        k.push_str(part);
        k.push('\0');
    }
    for s in scopes {
        k.push_str(s);
        k.push(' ');
    }
    k.push('\0');
    for r in &id.roles {
        k.push_str(r);
        k.push(' ');
    }
    k
}

/// Adds `x-rampart-identity` on routes that ask for it and removes it from every other
/// request.
#[derive(Debug, Clone, Default)]
pub struct IdentityAssertionLayer {
    asserter: Option<Arc<Asserter>>,
}

impl IdentityAssertionLayer {
    /// `None`: no signing key; a route with `identity_assertion` is then answered 500
    /// (whoever builds the stack should refuse such a configuration first).
    pub fn new(asserter: Option<Arc<Asserter>>) -> Self {
        Self { asserter }
    }
}

impl<S> Layer<S> for IdentityAssertionLayer {
    type Service = IdentityAssertion<S>;
    fn layer(&self, inner: S) -> IdentityAssertion<S> {
        IdentityAssertion {
            inner,
            asserter: self.asserter.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IdentityAssertion<S> {
    inner: S,
    asserter: Option<Arc<Asserter>>,
}

impl<S, B> Service<Authorized<B>> for IdentityAssertion<S>
where
    S: Service<Authorized<B>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = StageFuture<NoStage, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut a: Authorized<B>) -> Self::Future {
        let headers = a.request.headers_mut();
        headers.remove(&X_RAMPART_IDENTITY);
        if a.permit.route().config.identity_assertion {
            let p = &a.permit;
            let value = self
                .asserter
                .as_ref()
                .and_then(|s| s.assert(p.identity(), &p.route().config, p.scopes()));
            let Some(value) = value else {
                tracing::error!(
                    route = &*a.permit.route().id,
                    "identity assertion cannot be signed; request refused"
                );
                return StageFuture::reject(
                    Reject::Internal,
                    a.request.extensions().get::<RequestId>(),
                );
            };
            a.request.headers_mut().insert(X_RAMPART_IDENTITY, value);
        }
        StageFuture::pass(self.inner.call(a))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
