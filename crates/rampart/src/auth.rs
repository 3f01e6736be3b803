//! Wiring of the authentication stage's verifiers: the JWT verifier with its JWKS
//! loader, and the API-key cache and revocation snapshot kept in sync with the
//! credential store (polling, plus Redis fan-out when `[redis] url` is set). Built once at
//! start; a reload keeps them (key sets and caches survive).
//!
//! Fail closed: a configured mode whose verifier cannot be built, or a credential store
//! that cannot be opened and read at start, stops `serve` (exit 2) instead of serving a
//! gateway that refuses every credential or ignores revocations.

use std::sync::Arc;

use rampart_admin::{Health, HealthProbe, MetricsSource, Reason, Severity};
use rampart_authn::{
    ApiKeyVerifier, AuthMetrics, DeviceDirectory, KeyClaims, RevocationCheck, SignatureAuth,
    TokenClaims, TokenFailure, TokenVerifier, Verifiers,
};
use rampart_config::Config;
use rampart_config::raw::AuthMode;
use rampart_http::metrics::{gauge, header};
use rampart_jwt::{JwtFailure, JwtSettings, JwtVerifier, SystemClock};
use rampart_store::{ApiKeyCache, RedisUrl, RevocationSet, Store};

struct Jwt(JwtVerifier);

fn token_claims(
    r: Result<rampart_jwt::VerifiedToken, JwtFailure>,
) -> Result<TokenClaims, TokenFailure> {
    match r {
        Ok(t) => Ok(TokenClaims {
            subject: t.subject,
            tenant: t.tenant,
            scopes: t.scopes,
            roles: t.roles,
            jti: t.jti,
        }),
        Err(JwtFailure::Invalid(r)) => Err(TokenFailure::Invalid(r)),
        Err(JwtFailure::Unavailable) => Err(TokenFailure::Unavailable),
    }
}

impl TokenVerifier for Jwt {
    /// From memory; an unknown kid whose refresh is under way (or no key set during the
    /// first fetch) is `RetryAfterRefresh`, so the stage awaits `verify_wait`.
    fn verify(&self, token: &str) -> Result<TokenClaims, TokenFailure> {
        match self.0.verify_or_retry(token) {
            Err((JwtFailure::Invalid(r), true)) => Err(TokenFailure::RetryAfterRefresh(r)),
            Err((JwtFailure::Unavailable, true)) => {
                Err(TokenFailure::RetryAfterRefresh("jwks_unavailable"))
            }
            r => token_claims(r.map_err(|(f, _)| f)),
        }
    }

    fn verify_wait<'a>(&'a self, token: &'a str) -> rampart_authn::VerifyFuture<'a> {
        Box::pin(async move { token_claims(self.0.verify_after_refresh(token).await) })
    }
}

struct Keys(Arc<ApiKeyCache>);

impl ApiKeyVerifier for Keys {
    fn verify(&self, presented: &str) -> Result<KeyClaims, &'static str> {
        let r = self.0.verify_shared(presented).map_err(|e| e.reason())?;
        Ok(KeyClaims {
            id: r.id.clone(),
            name: r.name.clone(),
            tenant: (!r.tenant.is_empty()).then(|| r.tenant.clone()),
            scopes: r.scopes.clone(),
            roles: r.roles.clone(),
            rate_override: rampart_http::RateOverride::from_parts(
                r.rate_limit.tier.clone(),
                r.rate_limit.per_minute,
                r.rate_limit.burst,
            ),
        })
    }
}

struct Revs(Arc<RevocationSet>);

impl RevocationCheck for Revs {
    fn jti(&self, jti: &str) -> bool {
        self.0.is_revoked_jti(jti)
    }
    fn subject(&self, subject: &str) -> bool {
        self.0.is_revoked_subject(subject)
    }
    fn cert(&self, fingerprint: &str) -> bool {
        self.0.is_revoked_cert(fingerprint)
    }
    fn api_key(&self, id: &str) -> bool {
        self.0.is_revoked_apikey(id)
    }
}

/// `/healthz` reasons and metrics of the verifiers.
struct Probe {
    jwt: Option<JwtVerifier>,
    keys: Option<Arc<ApiKeyCache>>,
    revs: Option<Arc<RevocationSet>>,
    devices: Option<Arc<DeviceDirectory>>,
    redis: bool,
}

impl HealthProbe for Probe {
    fn reasons(&self, out: &mut Vec<Reason>) {
        if let Some(j) = &self.jwt {
            let h = j.health();
            match h.reason() {
                Some("jwks_unavailable") => out.push(Reason::new(
                    "jwks_unavailable",
                    Severity::Warn,
                    format!(
                        "no usable JWKS key set: JWT requests get 503 ({})",
                        h.last_error.as_deref().unwrap_or("first fetch pending")
                    ),
                )),
                Some(code) => out.push(Reason::new(
                    code,
                    Severity::Warn,
                    format!(
                        "serving a stale JWKS key set ({})",
                        h.last_error.as_deref().unwrap_or("refresh overdue")
                    ),
                )),
                None => {}
            }
        }
        if self.redis
            && let Some(r) = &self.revs
            && !r.redis_subscribed()
        {
            out.push(Reason::new(
                "revocation_fanout_down",
                Severity::Warn,
                "not subscribed to the Redis revocation channel: revocations from other gateways arrive by store polling only (within 5 s)",
            ));
        }
    }
}

impl MetricsSource for Probe {
    fn encode(&self, out: &mut String) {
        if let Some(j) = &self.jwt {
            let h = j.health();
            gauge(
                out,
                "rampart_jwks_keys",
                "Usable keys in the current JWKS key set.",
                i64::try_from(h.keys).unwrap_or(i64::MAX),
            );
            gauge(
                out,
                "rampart_jwks_stale",
                "1 while a stale JWKS key set serves (or none is loaded), else 0.",
                i64::from(h.stale || !h.loaded),
            );
            gauge(
                out,
                "rampart_jwks_age_seconds",
                "Seconds since the current JWKS key set was fetched (-1: none).",
                h.age
                    .map_or(-1, |a| i64::try_from(a.as_secs()).unwrap_or(i64::MAX)),
            );
            counter(
                out,
                "rampart_jwks_fetches_total",
                "JWKS fetch attempts.",
                h.fetches,
            );
            counter(
                out,
                "rampart_jwks_refresh_failures_total",
                "JWKS refreshes that failed after every attempt.",
                h.failures,
            );
        }
        if let Some(k) = &self.keys {
            gauge(
                out,
                "rampart_api_keys",
                "API keys in the in-memory snapshot.",
                i64::try_from(k.len()).unwrap_or(i64::MAX),
            );
        }
        if let Some(d) = &self.devices {
            gauge(
                out,
                "rampart_devices",
                "Devices with a live credential in the in-memory directory.",
                i64::try_from(d.len()).unwrap_or(i64::MAX),
            );
        }
        if let Some(r) = &self.revs {
            gauge(
                out,
                "rampart_revocations",
                "Entries in the in-memory revocation snapshot.",
                i64::try_from(r.len()).unwrap_or(i64::MAX),
            );
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    out.push_str(name);
    out.push(' ');
    out.push_str(&v.to_string());
    out.push('\n');
}

/// What `serve` keeps of the authentication wiring.
pub struct AuthRuntime {
    pub verifiers: Verifiers,
    /// The credential store and the local revocation snapshot (for `/admin/*`).
    pub store: Option<Store>,
    pub revocations: Option<Arc<RevocationSet>>,
    /// The JWT verifier, for the status page's JWKS section.
    pub jwt: Option<JwtVerifier>,
    /// Metric families to expose on the admin listener.
    pub sources: Vec<Arc<dyn MetricsSource>>,
}

fn has_mode(cfg: &Config, mode: AuthMode) -> bool {
    cfg.later
        .auth
        .as_ref()
        .and_then(|a| a.modes.as_ref())
        .is_some_and(|m| m.contains(&mode))
}

fn wants_store(cfg: &Config) -> bool {
    has_mode(cfg, AuthMode::ApiKey)
        || has_mode(cfg, AuthMode::Signature)
        || cfg.later.store.is_some()
        || cfg.server.data_dir.is_some()
}

/// Builds the verifiers `cfg` needs, loads the credential snapshot, starts the JWKS
/// loader and the store sync, and registers their health probes.
pub async fn build(cfg: &Config, health: &Arc<Health>) -> Result<AuthRuntime, String> {
    let metrics = Arc::new(AuthMetrics::default());
    let jwt = match JwtSettings::from_config(cfg) {
        None => None,
        Some(Err(e)) => return Err(format!("auth.jwt: {e}")),
        Some(Ok(s)) => Some(JwtVerifier::start(s, Arc::new(SystemClock))),
    };
    let api_key_mode = has_mode(cfg, AuthMode::ApiKey);
    let signature_mode = has_mode(cfg, AuthMode::Signature);
    let redis_url = match cfg.later.redis.as_ref().and_then(|r| r.url.as_ref()) {
        Some(s) => Some(RedisUrl::from_secret(s).map_err(|e| format!("redis.url: {e}"))?),
        None => None,
    };
    let (keys, revs, store) = if wants_store(cfg) {
        let store = match Store::open(cfg).await {
            Ok(s) => s,
            Err(e) if api_key_mode || signature_mode || cfg.later.store.is_some() => {
                return Err(format!("credential store: {e}"));
            }
            Err(e) => {
                // Only the default SQLite file was implied by data_dir: say so and go on
                // without a revocation list rather than refuse to serve.
                tracing::warn!(error = %e, "no credential store: revocations are not enforced");
                return Ok(finish(jwt, None, None, None, None, false, metrics, health));
            }
        };
        let keys = match ApiKeyCache::from_config(cfg) {
            Ok(k) => Some(Arc::new(k)),
            Err(e) if api_key_mode => return Err(format!("auth.api_key: {e}")),
            Err(_) => None,
        };
        let revs = Arc::new(RevocationSet::new());
        let cache = match &keys {
            Some(k) => Arc::clone(k),
            // Revocations still sync without API-key authentication.
            None => Arc::new(ApiKeyCache::disabled().map_err(|e| format!("{e}"))?),
        };
        rampart_store::load_once(&store, &cache, &revs)
            .await
            .map_err(|e| format!("credential store: {e}"))?;
        rampart_store::spawn_sync(
            store.clone(),
            redis_url.clone(),
            Arc::clone(&cache),
            Arc::clone(&revs),
            std::future::pending(),
        );
        (keys, Some(revs), Some(store))
    } else {
        (None, None, None)
    };
    let signature = match (&store, signature_mode) {
        (Some(store), true) => Some(crate::device_sync::start(cfg, store).await?),
        _ => None,
    };
    Ok(finish(
        jwt,
        keys,
        revs,
        signature,
        store,
        redis_url.is_some(),
        metrics,
        health,
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    jwt: Option<JwtVerifier>,
    keys: Option<Arc<ApiKeyCache>>,
    revs: Option<Arc<RevocationSet>>,
    signature: Option<Arc<SignatureAuth>>,
    store: Option<Store>,
    redis: bool,
    metrics: Arc<AuthMetrics>,
    health: &Arc<Health>,
) -> AuthRuntime {
    let probe = Arc::new(Probe {
        jwt: jwt.clone(),
        keys: keys.clone(),
        revs: revs.clone(),
        devices: signature.as_ref().map(|s| Arc::clone(s.devices())),
        redis,
    });
    health.add_probe(Arc::clone(&probe) as Arc<dyn HealthProbe>);
    let verifiers = Verifiers {
        jwt: jwt.map(|j| Arc::new(Jwt(j)) as Arc<dyn TokenVerifier>),
        api_keys: keys.map(|k| Arc::new(Keys(k)) as Arc<dyn ApiKeyVerifier>),
        revocations: revs
            .clone()
            .map(|r| Arc::new(Revs(r)) as Arc<dyn RevocationCheck>),
        signature,
        metrics: Arc::clone(&metrics),
    };
    AuthRuntime {
        verifiers,
        store,
        revocations: revs,
        jwt: probe.jwt.clone(),
        sources: vec![metrics, probe],
    }
}
