//! `[auth.jwt]` → [`JwtSettings`]: defaults, and the rules that need more than one key.

use std::net::IpAddr;
use std::time::Duration;

use rampart_config::{Config, Profile};
use zeroize::Zeroizing;

use crate::alg::Alg;
use crate::claims::ClaimRules;

/// Default `max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Default `jwks_max_stale_s`: the last good key set serves this long after refreshes
/// start failing, then JWT requests get 503 until a fetch succeeds.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);
/// Default `token_cache_entries`.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// At most one key-set refresh per this interval is triggered by unknown `kid`s.
pub const DEFAULT_UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(15);

/// Where the key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `auth.jwt.jwks_url`.
    Url(http::Uri),
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery {
        issuer: String,
        config_url: http::Uri,
    },
}

/// The HS256 development key: wiped on drop, never printed.
#[derive(Clone)]
pub struct Hs256Key(Zeroizing<Vec<u8>>);

impl Hs256Key {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Hs256Key(Zeroizing::new(bytes.into()))
    }
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Hs256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hs256Key([redacted])")
    }
}

/// Everything the verifier and the key-set loader need, validated.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub profile: Profile,
    /// Allowed algorithms (`allowed_algs`; default: every asymmetric one, plus HS256
    /// when a dev `hs256_secret` is set).
    pub allowed_algs: Vec<Alg>,
    pub claims: ClaimRules,
    pub max_token_bytes: usize,
    /// `None` when only the HS256 dev key is configured.
    pub jwks: Option<JwksSource>,
    pub jwks_ttl: Duration,
    pub jwks_timeout: Duration,
    pub jwks_max_attempts: u32,
    pub jwks_backoff: Duration,
    pub jwks_max_backoff: Duration,
    pub jwks_max_stale: Duration,
    /// Largest key-set (or discovery) response read.
    pub jwks_max_bytes: usize,
    /// Unknown-`kid` refreshes: at most one per this interval.
    pub unknown_kid_interval: Duration,
    pub hs256_secret: Option<Hs256Key>,
    /// Verified-token cache bound (0 = no cache).
    pub cache_entries: usize,
}

/// A configuration the verifier cannot run with (exit 2 at startup, like any config error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    #[error(
        "auth.jwt: no key source: set jwks_url, or issuer for OIDC discovery (or hs256_secret in the dev profile)"
    )]
    NoKeySource,
    #[error("auth.jwt.hs256_secret: HS256 is refused in profile \"prod\"")]
    Hs256InProd,
    #[error("auth.jwt.allowed_algs: HS256 is allowed but no hs256_secret is set")]
    Hs256WithoutSecret,
    #[error("auth.jwt: profile \"prod\" requires both issuer and audience")]
    ProdNeedsIssuerAndAudience,
    #[error("auth.jwt.issuer: `{0}` cannot be used for OIDC discovery: {1}")]
    BadIssuerUrl(String, &'static str),
    #[error("auth.jwt.allowed_algs: no algorithm left to verify with")]
    NoAlgorithms,
}

impl JwtSettings {
    /// Settings with the documented defaults and the given key source (for tests and
    /// embedding; the gateway uses [`JwtSettings::from_config`]).
    pub fn new(profile: Profile, jwks: Option<JwksSource>) -> Self {
        JwtSettings {
            profile,
            allowed_algs: Alg::ASYMMETRIC.to_vec(),
            claims: ClaimRules {
                issuer: None,
                audience: Vec::new(),
                clock_skew_s: 60,
                subject_claim: "sub".into(),
                scopes_claim: "scope".into(),
                roles_claim: "roles".into(),
                tenant_claim: "tenant".into(),
            },
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            jwks,
            jwks_ttl: Duration::from_secs(300),
            jwks_timeout: Duration::from_millis(2000),
            jwks_max_attempts: 3,
            jwks_backoff: Duration::from_millis(200),
            jwks_max_backoff: Duration::from_millis(5000),
            jwks_max_stale: DEFAULT_MAX_STALE,
            jwks_max_bytes: 512 * 1024,
            unknown_kid_interval: DEFAULT_UNKNOWN_KID_INTERVAL,
            hs256_secret: None,
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }

    /// `None` when the configuration has no `[auth.jwt]`.
    pub fn from_config(cfg: &Config) -> Option<Result<JwtSettings, JwtConfigError>> {
        let j = cfg.later.auth.as_ref()?.jwt.as_ref()?;
        Some(Self::from_section(cfg.profile, j))
    }

    fn from_section(
        profile: Profile,
        j: &rampart_config::raw::JwtSection,
    ) -> Result<JwtSettings, JwtConfigError> {
        let mut s = JwtSettings::new(profile, None);
        if let Some(secret) = &j.hs256_secret {
            if profile == Profile::Prod {
                return Err(JwtConfigError::Hs256InProd);
            }
            s.hs256_secret = Some(Hs256Key::new(secret.expose()));
        }
        s.allowed_algs = match &j.allowed_algs {
            Some(list) => list.iter().filter_map(|n| Alg::from_name(n)).collect(),
            None => {
                let mut v = Alg::ASYMMETRIC.to_vec();
                if s.hs256_secret.is_some() {
                    v.push(Alg::HS256);
                }
                v
            }
        };
        if s.allowed_algs.is_empty() {
            return Err(JwtConfigError::NoAlgorithms);
        }
        if s.allowed_algs.contains(&Alg::HS256) {
            if profile == Profile::Prod {
                return Err(JwtConfigError::Hs256InProd);
            }
            if s.hs256_secret.is_none() {
                return Err(JwtConfigError::Hs256WithoutSecret);
            }
        }
        s.claims.issuer = j.issuer.clone();
        s.claims.audience = j.audience.clone().unwrap_or_default();
        if profile == Profile::Prod && (s.claims.issuer.is_none() || s.claims.audience.is_empty()) {
            return Err(JwtConfigError::ProdNeedsIssuerAndAudience);
        }
        if let Some(v) = j.clock_skew_s {
            s.claims.clock_skew_s = v;
        }
        for (dst, src) in [
            (&mut s.claims.subject_claim, &j.subject_claim),
            (&mut s.claims.scopes_claim, &j.scopes_claim),
            (&mut s.claims.roles_claim, &j.roles_claim),
            (&mut s.claims.tenant_claim, &j.tenant_claim),
        ] {
            if let Some(v) = src {
                v.clone_into(dst);
            }
        }
        let ms = Duration::from_millis;
        if let Some(v) = j.jwks_ttl_s {
            s.jwks_ttl = Duration::from_secs(v);
        }
        if let Some(v) = j.jwks_timeout_ms {
            s.jwks_timeout = ms(v);
        }
        if let Some(v) = j.jwks_max_attempts {
            s.jwks_max_attempts = u32::try_from(v).unwrap_or(u32::MAX).max(1);
        }
        if let Some(v) = j.jwks_backoff_ms {
            s.jwks_backoff = ms(v);
        }
        if let Some(v) = j.jwks_max_backoff_ms {
            s.jwks_max_backoff = ms(v);
        }
        if let Some(v) = j.jwks_max_stale_s {
            s.jwks_max_stale = Duration::from_secs(v);
        }
        if let Some(v) = j.max_token_bytes {
            s.max_token_bytes = usize::try_from(v).unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        }
        if let Some(v) = j.token_cache_entries {
            s.cache_entries = usize::try_from(v).unwrap_or(DEFAULT_CACHE_ENTRIES);
        }
        // Discovery from `issuer` only when asymmetric keys are wanted: with a dev
        // `hs256_secret` and no explicit asymmetric algorithm, `issuer` is only the
        // `iss` claim check.
        let wants_asymmetric = match &j.allowed_algs {
            Some(_) => s.allowed_algs.iter().any(|a| *a != Alg::HS256),
            None => s.hs256_secret.is_none(),
        };
        s.jwks = match (&j.jwks_url, &j.issuer) {
            (Some(u), _) => Some(JwksSource::Url(u.clone())),
            (None, Some(iss)) if wants_asymmetric => Some(discovery(profile, iss)?),
            _ => None,
        };
        let needs_keys = s.allowed_algs.iter().any(|a| *a != Alg::HS256);
        if s.jwks.is_none() && (needs_keys && s.hs256_secret.is_none()) {
            return Err(JwtConfigError::NoKeySource);
        }
        if s.jwks.is_none() {
            // Only the HS256 dev key: asymmetric algorithms could never verify.
            s.allowed_algs.retain(|a| *a == Alg::HS256);
            if s.allowed_algs.is_empty() {
                return Err(JwtConfigError::NoKeySource);
            }
        }
        Ok(s)
    }

    /// Whether `uri` may serve keys under this profile: https, or plain http to a
    /// loopback host in the dev profile.
    pub fn url_allowed(&self, uri: &http::Uri) -> bool {
        url_allowed(self.profile, uri)
    }
}

pub(crate) fn url_allowed(profile: Profile, uri: &http::Uri) -> bool {
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => uri.host().is_some(),
        Some(s) if s.eq_ignore_ascii_case("http") => {
            profile == Profile::Dev && uri.host().is_some_and(is_loopback)
        }
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn discovery(profile: Profile, issuer: &str) -> Result<JwksSource, JwtConfigError> {
    let bad = |why| JwtConfigError::BadIssuerUrl(issuer.to_owned(), why);
    if issuer.contains('?') || issuer.contains('#') {
        return Err(bad("a query or fragment is not allowed"));
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if !url_allowed(profile, &uri) {
        return Err(bad(
            "https is required (plain http only to a loopback host in profile \"dev\")",
        ));
    }
    Ok(JwksSource::Discovery {
        issuer: issuer.to_owned(),
        config_url: uri,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn load(toml: &str) -> Option<Result<JwtSettings, JwtConfigError>> {
        let cfg = rampart_config::load_from_strs(&[("t.toml", toml)], &[])
            .unwrap_or_else(|e| panic!("{e}"));
        JwtSettings::from_config(&cfg)
    }

    const DEV: &str = "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n";
    const PROD: &str = "[server]\ntrusted_hosts = [\"a.example\"]\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n";

    #[test]
    fn absent_section_is_none() {
        assert!(load(DEV).is_none());
    }

    #[test]
    fn prod_defaults_and_values() {
        let s = load(&format!(
            "{PROD}[auth.jwt]\nissuer = \"https://id.example.com/\"\naudience = \"rampart\"\njwks_url = \"https://id.example.com/jwks.json\"\nmax_token_bytes = 4096\njwks_max_stale_s = 60\ntoken_cache_entries = 5\nclock_skew_s = 5\nsubject_claim = \"email\"\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(s.allowed_algs, Alg::ASYMMETRIC.to_vec());
        assert_eq!(s.max_token_bytes, 4096);
        assert_eq!(s.jwks_max_stale, Duration::from_secs(60));
        assert_eq!(s.cache_entries, 5);
        assert_eq!(s.claims.clock_skew_s, 5);
        assert_eq!(s.claims.subject_claim, "email");
        assert_eq!(s.claims.audience, vec!["rampart".to_owned()]);
        assert!(matches!(s.jwks, Some(JwksSource::Url(_))));
    }

    #[test]
    fn prod_requires_issuer_and_audience() {
        let r = load(&format!(
            "{PROD}[auth.jwt]\njwks_url = \"https://id.example.com/jwks.json\"\naudience = \"r\"\n"
        ))
        .unwrap();
        assert_eq!(r.err(), Some(JwtConfigError::ProdNeedsIssuerAndAudience));
    }

    #[test]
    fn discovery_from_issuer() {
        let s = load(&format!(
            "{PROD}[auth.jwt]\nissuer = \"https://id.example.com/\"\naudience = \"r\"\n"
        ))
        .unwrap()
        .unwrap();
        match s.jwks {
            Some(JwksSource::Discovery { config_url, .. }) => assert_eq!(
                config_url.to_string(),
                "https://id.example.com/.well-known/openid-configuration"
            ),
            other => panic!("{other:?}"),
        }
        let r = load(&format!(
            "{PROD}[auth.jwt]\nissuer = \"http://127.0.0.1:1/\"\naudience = \"r\"\n"
        ))
        .unwrap();
        assert!(matches!(r, Err(JwtConfigError::BadIssuerUrl(..))));
        let s = load(&format!(
            "{DEV}[auth.jwt]\nissuer = \"http://127.0.0.1:1\"\n"
        ))
        .unwrap();
        assert!(s.is_ok());
        let r = load(&format!("{DEV}[auth.jwt]\nissuer = \"http://10.0.0.1\"\n")).unwrap();
        assert!(matches!(r, Err(JwtConfigError::BadIssuerUrl(..))));
    }

    #[test]
    fn hs256_dev_only_and_allowlist() {
        let s = load(&format!(
            "{DEV}[auth.jwt]\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(s.allowed_algs, vec![Alg::HS256]);
        assert!(s.jwks.is_none());
        let r = load(&format!(
            "{DEV}[auth.jwt]\nallowed_algs = [\"HS256\"]\njwks_url = \"http://127.0.0.1:9/k\"\n"
        ))
        .unwrap();
        assert_eq!(r.err(), Some(JwtConfigError::Hs256WithoutSecret));
        // issuer with only the dev secret: an `iss` check, not a discovery source.
        let s = load(&format!(
            "{DEV}[auth.jwt]\nissuer = \"rampart-dev\"\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\n"
        ))
        .unwrap()
        .unwrap();
        assert!(s.jwks.is_none());
        assert_eq!(s.claims.issuer.as_deref(), Some("rampart-dev"));
        let r = load(&format!("{DEV}[auth.jwt]\naudience = \"x\"\n")).unwrap();
        assert_eq!(r.err(), Some(JwtConfigError::NoKeySource));
        assert!(format!("{:?}", Hs256Key::new(b"secret".to_vec())).contains("redacted"));
    }

    #[test]
    fn new_keys_are_range_checked_and_strict() {
        for bad in [
            "max_token_bytes = 100",
            "max_token_bytes = 1000000",
            "jwks_max_stale_s = -1",
            "token_cache_entries = \"many\"",
            "token_cache = 5",
        ] {
            let text = format!("{DEV}[auth.jwt]\njwks_url = \"http://127.0.0.1:9/k\"\n{bad}\n");
            assert!(
                rampart_config::load_from_strs(&[("t.toml", &text)], &[]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn url_policy() {
        let u = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(url_allowed(Profile::Prod, &u("https://id.example.com/k")));
        assert!(!url_allowed(Profile::Prod, &u("http://127.0.0.1/k")));
        assert!(url_allowed(Profile::Dev, &u("http://127.0.0.1:8/k")));
        assert!(url_allowed(Profile::Dev, &u("http://[::1]:8/k")));
        assert!(url_allowed(Profile::Dev, &u("http://localhost/k")));
        assert!(!url_allowed(Profile::Dev, &u("http://example.com/k")));
        assert!(!url_allowed(Profile::Dev, &u("ftp://127.0.0.1/k")));
    }
}
