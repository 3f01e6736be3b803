//! JWT verification (compact JWS, RFC 7515/7519) and the JWKS cache (RFC 7517).
//!
//! **Guards against:** forged and altered tokens; algorithm confusion (`alg: none` in
//! any spelling, an RSA public key used as an HMAC secret, a key of one type used for
//! another algorithm, a JWK used outside the `alg` it names, algorithms outside the
//! allowlist); tokens that bring their own key (`jku`, `x5u`, `jwk`, `x5c`: refused,
//! never fetched); unknown `crit` extensions; ECDSA signatures with `r` or `s` zero or
//! ≥ n ("psychic signatures"); parser differentials (duplicate JSON members, lenient
//! base64url, trailing data); oversized tokens; expired, not-yet-valid and
//! future-issued tokens, wrong or missing `iss`/`aud`; a key-set server that is down,
//! slow or answers garbage (the last good set keeps serving for a bounded time);
//! fetch storms caused by forged `kid`s.
//!
//! **Trusts:** the key set fetched from the configured `jwks_url` (or the OIDC
//! discovery document of the configured `issuer`) over https, checked against the
//! system's root certificates; the `hs256_secret` in the dev profile; the injected
//! [`Clock`]; aws-lc-rs for the signature primitives.
//!
//! # Why not the `jsonwebtoken` crate
//!
//! The JOSE layer is small, and writing it on top of aws-lc-rs directly buys what a
//! general-purpose crate does not give: a strict header policy (refuse `crit`,
//! `jku`/`x5u`/`jwk`/`x5c`, `b64`, `enc`/`zip` instead of ignoring them); duplicate-member
//! detection in the header, the claims and the key set (`serde_json` silently keeps the
//! last duplicate, see [`json`]); strict base64url; an explicit ECDSA scalar-range check;
//! keys parsed once per key set instead of per token; no second crypto backend in the
//! tree (jsonwebtoken's backends are chosen by feature and panic when two are enabled);
//! and control of cost: a forged token costs at most one signature check, never one per
//! key, and never more than a genuine one.
//!
//! # Order of checks
//!
//! size cap → verified-token cache (SHA-256 of the whole token; a hit still runs the
//! time checks and needs the verifying key still published) → split and strict
//! base64url → header JSON and policy → allowlist → key by `kid` (type and JWK `alg`
//! must match) → ECDSA scalar range → signature → claims JSON (no duplicates) → `exp`,
//! `nbf`, `iat`, `iss`, `aud`, subject, tenant, scopes, roles.
//!
//! ```
//! use std::sync::Arc;
//! use rampart_jwt::{JwtFailure, JwtSettings, JwtVerifier, ManualClock};
//!
//! let settings = JwtSettings::new(rampart_config::Profile::Prod, None);
//! let jwks = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",
//!   "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
//!   "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
//! let v = JwtVerifier::with_key_set(settings, jwks, Arc::new(ManualClock::new(0))).unwrap();
//! // An unsigned token is refused whatever it claims.
//! let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
//! assert_eq!(v.verify(none), Err(JwtFailure::Invalid("alg_none")));
//! ```
#![forbid(unsafe_code)]

pub mod alg;
pub mod b64;
mod cache;
pub mod claims;
pub mod json;
pub mod jwk;
mod jwks;
pub mod jws;
mod mint;
pub mod reason;
mod settings;
mod verifier;

use std::sync::atomic::{AtomicU64, Ordering};

pub use alg::Alg;
pub use jwk::{JwksError, KeySet, parse_jwks};
pub use jwks::JwksHealth;
pub use mint::{MintError, MintRequest, mint_hs256, parse_ttl};
pub use reason::Reason;
pub use settings::{
    DEFAULT_CACHE_ENTRIES, DEFAULT_MAX_STALE, DEFAULT_MAX_TOKEN_BYTES,
    DEFAULT_UNKNOWN_KID_INTERVAL, Hs256Key, JwksSource, JwtConfigError, JwtSettings,
};
pub use verifier::{JwtVerifier, UNKNOWN_KID_WAIT, verify_jws_signature};

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub jti: Option<String>,
    pub exp: u64,
    pub alg: &'static str,
    pub kid: Option<String>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFailure {
    /// The token is refused (the caller's fault): 401. The reason is for logs and the
    /// metric label only, never for the client.
    Invalid(Reason),
    /// No key set is loaded yet (or the last one is past its stale bound): 503 with
    /// `Retry-After`; the token may be fine.
    Unavailable,
}

impl JwtFailure {
    /// The metric/log code: the reason, or `jwks_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            JwtFailure::Invalid(r) => r,
            JwtFailure::Unavailable => "jwks_unavailable",
        }
    }
}

/// Unix time in seconds, injected so tests control it.
pub trait Clock: Send + Sync {
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now: u64) -> Self {
        ManualClock(AtomicU64::new(now))
    }
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
