//! [`JwtVerifier`]: the cache, the header policy, key selection, the signature and the
//! claims, in that order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::{digest, hmac};

use crate::alg::{Alg, Family};
use crate::cache::{Entry, KeyRef, TokenCache};
use crate::claims;
use crate::jwk::{self, JwksError, Key, KeySet};
use crate::jwks::{self, JwksHealth, Loaded, Shared};
use crate::jws::{self, Parsed};
use crate::reason::{self, Reason};
use crate::settings::JwtSettings;
use crate::{Clock, JwtFailure, VerifiedToken};

/// Longest an unknown-`kid` request waits in [`JwtVerifier::verify_async`] for the
/// refresh it triggered (or one already under way).
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);

/// Verifies compact JWS tokens against the configured keys. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    hmac: Option<hmac::Key>,
    cache: TokenCache,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The loader task holds `Shared`, not `Inner`: stop it with the last verifier.
        self.shared.stop.notify_one();
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

enum Candidate<'a> {
    Jwk(&'a Key),
    Hmac(&'a hmac::Key),
}

impl JwtVerifier {
    /// Starts the background JWKS loader (first fetch at once; this call never blocks
    /// and succeeds even when the JWKS is unreachable) and returns the verifier.
    pub fn start(settings: JwtSettings, clock: Arc<dyn Clock>) -> JwtVerifier {
        let fixed = settings.jwks.is_none();
        let v = Self::build(settings, clock, fixed);
        if !fixed {
            jwks::spawn(Arc::clone(&v.inner.shared));
        }
        v
    }

    /// A verifier over a fixed key set (no loader): for embedding with static keys, for
    /// tests and benchmarks.
    pub fn with_key_set(
        settings: JwtSettings,
        jwks_json: &[u8],
        clock: Arc<dyn Clock>,
    ) -> Result<JwtVerifier, JwksError> {
        let (set, _) = jwk::parse_jwks(jwks_json, &settings.allowed_algs)?;
        let v = Self::build(settings, clock, true);
        v.inner.shared.keys.store(Some(Arc::new(Loaded {
            set,
            fetched_at: Instant::now(),
            expires_at: None,
        })));
        Ok(v)
    }

    fn build(settings: JwtSettings, clock: Arc<dyn Clock>, fixed: bool) -> JwtVerifier {
        let hmac = settings
            .hs256_secret
            .as_ref()
            .filter(|_| settings.allowed_algs.contains(&Alg::HS256))
            .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.expose()));
        let cache = TokenCache::new(settings.cache_entries);
        JwtVerifier {
            inner: Arc::new(Inner {
                shared: Shared::new(Arc::new(settings), fixed),
                clock,
                hmac,
                cache,
            }),
        }
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.inner.shared.settings
    }

    /// Key-set state for `/healthz` and metrics.
    pub fn health(&self) -> JwksHealth {
        self.inner.shared.health()
    }

    /// Entries in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    /// Verifies a compact JWS. Never waits: an unknown `kid` asks the loader for a
    /// refresh (rate-limited) and fails with `unknown_kid` now.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, JwtFailure> {
        self.verify_inner(token).map_err(|(f, _)| f)
    }

    /// As [`JwtVerifier::verify`] (never waits), and says whether [`JwtVerifier::verify_async`]
    /// could decide differently: `Err((failure, true))` for an unknown `kid` whose
    /// refresh this call triggered or that is under way, or no key set while the first
    /// fetch runs. A caller on an async path then awaits `verify_async`; every other
    /// outcome (forged kids outside a refresh included) is final at once.
    pub fn verify_or_retry(&self, token: &str) -> Result<VerifiedToken, (JwtFailure, bool)> {
        let shared = &self.inner.shared;
        self.verify_inner(token).map_err(|(f, kid)| {
            let retry = match (f, kid) {
                (JwtFailure::Unavailable, _) => shared.refresh_in_flight(),
                (_, Some(triggered)) => triggered || shared.refresh_in_flight(),
                _ => false,
            };
            (f, retry)
        })
    }

    /// The second half of [`JwtVerifier::verify_or_retry`]: after it answered "retry",
    /// waits (at most [`UNKNOWN_KID_WAIT`]) for the key set to change, unless it already
    /// has, and verifies once more. Never asks for another refresh itself: the first call
    /// did, and a refresh it started may not be marked in flight yet.
    pub async fn verify_after_refresh(&self, token: &str) -> Result<VerifiedToken, JwtFailure> {
        let mut rx = self.inner.shared.subscribe();
        if let Ok(v) = self.verify_inner(token) {
            return Ok(v);
        }
        let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, rx.changed()).await;
        self.verify_inner(token).map_err(|(f, _)| f)
    }

    /// As [`JwtVerifier::verify`], but a token whose `kid` is unknown waits (at most
    /// [`UNKNOWN_KID_WAIT`]) for the refresh it triggered, or one under way, and is
    /// tried once more: a key rotated in at the identity provider is accepted on its
    /// first use. Likewise a request that finds no key set while the first fetch is
    /// under way waits for that fetch (bounded) instead of getting 503 in the first
    /// milliseconds after start. Requests with known keys never wait; forged kids
    /// within the rate-limit interval fail at once (the wait is bounded by the one
    /// refresh per interval: an attacker cannot make anyone else wait).
    pub async fn verify_async(&self, token: &str) -> Result<VerifiedToken, JwtFailure> {
        let shared = &self.inner.shared;
        let mut rx = shared.subscribe();
        match self.verify_inner(token) {
            // No key set yet, but the first fetch is under way: wait for it (bounded).
            Err((JwtFailure::Unavailable, _)) if shared.refresh_in_flight() => {
                let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, rx.changed()).await;
                self.verify_inner(token).map_err(|(f, _)| f)
            }
            Err((f, Some(triggered))) if triggered || shared.refresh_in_flight() => {
                let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, rx.changed()).await;
                // The second try does not wait again (and its refresh request is
                // rate-limited like any other).
                let _ = f;
                self.verify_inner(token).map_err(|(f2, _)| f2)
            }
            r => r.map_err(|(f, _)| f),
        }
    }

    /// `Err((failure, Some(triggered)))` for an unknown kid (whether this call asked
    /// for a refresh), `Err((failure, None))` otherwise.
    fn verify_inner(&self, token: &str) -> Result<VerifiedToken, (JwtFailure, Option<bool>)> {
        let inv = |r: Reason| (JwtFailure::Invalid(r), None);
        let inner = &*self.inner;
        let s = &*inner.shared.settings;
        if token.len() > s.max_token_bytes {
            return Err(inv(reason::TOO_LARGE));
        }
        let now = inner.clock.now_unix();
        // A guard, not a clone of the Arc: no shared refcount traffic per request.
        let loaded = inner.shared.keys.load();
        let keys: Option<&KeySet> = loaded
            .as_ref()
            .map(|l| &**l)
            .filter(|l| l.usable(Instant::now()))
            .map(|l| &l.set);

        let hash: [u8; 32] = {
            let d = digest::digest(&digest::SHA256, token.as_bytes());
            let mut h = [0u8; 32];
            h.copy_from_slice(d.as_ref());
            h
        };
        if let Some(hit) = inner.cache.get(&hash) {
            let key_live = match hit.key {
                KeyRef::Hmac => inner.hmac.is_some(),
                KeyRef::Jwk(id) => keys.is_some_and(|k| k.contains_id(&id)),
            };
            if key_live {
                return match claims::check_times(hit.token.exp, hit.nbf, now, s.claims.clock_skew_s)
                {
                    Ok(()) => Ok(hit.token),
                    Err(r) => {
                        inner.cache.remove(&hash);
                        Err(inv(r))
                    }
                };
            }
            inner.cache.remove(&hash);
        }

        let parsed = jws::parse(token, s.max_token_bytes).map_err(inv)?;
        let alg = parsed.header.alg;
        if !s.allowed_algs.contains(&alg) {
            return Err(inv(reason::ALG_NOT_ALLOWED));
        }
        let candidate = if alg.family() == Family::Hmac {
            Candidate::Hmac(inner.hmac.as_ref().ok_or(inv(reason::NO_HMAC_KEY))?)
        } else {
            let Some(set) = keys else {
                return Err((JwtFailure::Unavailable, None));
            };
            match select_key(set, &parsed) {
                Ok(k) => Candidate::Jwk(k),
                Err(r) if r == reason::UNKNOWN_KID => {
                    let triggered = inner.shared.request_refresh();
                    return Err((JwtFailure::Invalid(r), Some(triggered)));
                }
                Err(r) => return Err(inv(r)),
            }
        };
        let key_ref = match candidate {
            Candidate::Jwk(k) => {
                check_signature(k, alg, &parsed).map_err(inv)?;
                KeyRef::Jwk(k.id)
            }
            Candidate::Hmac(k) => {
                hmac::verify(k, parsed.signing_input, &parsed.signature)
                    .map_err(|_| inv(reason::BAD_SIGNATURE))?;
                KeyRef::Hmac
            }
        };
        let c = claims::check(&parsed.payload, &s.claims, now).map_err(inv)?;
        let token = VerifiedToken {
            subject: c.subject,
            tenant: c.tenant,
            scopes: c.scopes,
            roles: c.roles,
            jti: c.jti,
            exp: c.exp,
            alg: alg.name(),
            kid: parsed.header.kid,
        };
        inner.cache.insert(
            hash,
            Entry {
                token: token.clone(),
                nbf: c.nbf,
                key: key_ref,
            },
        );
        Ok(token)
    }
}

/// Picks the one key that may verify this token: by `kid`; without a `kid` only when
/// exactly one key in the set can verify `alg` (so a kid-less forgery costs one
/// signature check, never one per key).
fn select_key<'a>(set: &'a KeySet, p: &Parsed<'_>) -> Result<&'a Key, Reason> {
    let alg = p.header.alg;
    match &p.header.kid {
        Some(kid) => {
            let mut mismatch = None;
            for k in set.by_kid(kid) {
                if k.verifier(alg).is_some() {
                    return Ok(k);
                }
                mismatch = Some(if k.family != alg.family() {
                    reason::KEY_TYPE_MISMATCH
                } else if k.bound_alg.is_some_and(|b| b != alg) {
                    reason::JWK_ALG_MISMATCH
                } else {
                    reason::ALG_NOT_ALLOWED
                });
            }
            Err(mismatch.unwrap_or(reason::UNKNOWN_KID))
        }
        None => {
            let mut it = set.keys().iter().filter(|k| k.verifier(alg).is_some());
            match (it.next(), it.next()) {
                (Some(k), None) => Ok(k),
                (None, _) => Err(reason::UNKNOWN_KID),
                (Some(_), Some(_)) => Err(reason::KID_REQUIRED),
            }
        }
    }
}

fn check_signature(k: &Key, alg: Alg, p: &Parsed<'_>) -> Result<(), Reason> {
    let v = k.verifier(alg).ok_or(reason::KEY_TYPE_MISMATCH)?;
    if let Family::Ec(curve) = alg.family() {
        // ECDSA "psychic signatures" (CVE-2022-21449): r or s zero or ≥ n must be refused
        // by the library, and are refused here first, whatever the library does.
        let n = curve.scalar_len();
        if p.signature.len() != 2 * n {
            return Err(reason::BAD_SIGNATURE);
        }
        let (r, s) = p.signature.split_at(n);
        for x in [r, s] {
            if x.iter().all(|&b| b == 0) || x >= curve.order() {
                return Err(reason::ECDSA_SCALAR_RANGE);
            }
        }
    }
    v.verify_sig(p.signing_input, &p.signature)
        .map_err(|_| reason::BAD_SIGNATURE)
}

/// Checks only the signature of a compact JWS against a key set (no claims, no cache):
/// the same header policy, key selection and signature checks as
/// [`JwtVerifier::verify`]. Returns the payload. For non-JWT JWS (test vectors, signed
/// documents).
pub fn verify_jws_signature(
    set: &KeySet,
    allowed: &[Alg],
    token: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, Reason> {
    let parsed = jws::parse(token, max_bytes)?;
    let alg = parsed.header.alg;
    if !allowed.contains(&alg) || alg.family() == Family::Hmac {
        return Err(reason::ALG_NOT_ALLOWED);
    }
    let key = select_key(set, &parsed)?;
    check_signature(key, alg, &parsed)?;
    Ok(parsed.payload)
}
