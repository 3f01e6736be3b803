//! The later sections (`auth`, `rbac`, `rate_limit`, `audit`, `signing`, `crypto`,
//! `store`): parsed as strictly as the core ones (unknown keys are errors with a
//! suggestion, every value typed and range-checked) and kept for the issues that act on
//! them. Every field is optional here; the stage that uses a section supplies defaults.

use std::collections::{BTreeMap, BTreeSet};

use crate::cx::{Cx, Tbl, header_name};
use crate::model::Profile;
use crate::secret::Secret;
use crate::tree::{Item, Node};

const AUTH_KEYS: &[&str] = &[
    "modes",
    "identity_header",
    "jwt",
    "api_key",
    "mtls",
    "signature",
];
const JWT_KEYS: &[&str] = &[
    "header",
    "bearer_prefix",
    "issuer",
    "audience",
    "subject_claim",
    "clock_skew_s",
    "allowed_algs",
    "jwks_url",
    "jwks_ttl_s",
    "jwks_timeout_ms",
    "jwks_max_attempts",
    "jwks_backoff_ms",
    "jwks_max_backoff_ms",
    "hs256_secret",
    "scopes_claim",
    "roles_claim",
    "tenant_claim",
    "max_token_bytes",
    "jwks_max_stale_s",
    "token_cache_entries",
];
const JWT_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
];
const MODES: &[&str] = &["jwt", "api_key", "mtls", "signature", "none"];

/// `auth.modes` entries, in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Jwt,
    ApiKey,
    Mtls,
    Signature,
    /// Anonymous access (dev profile only).
    None,
}

#[derive(Debug, Clone, Default)]
pub struct AuthSection {
    pub modes: Option<Vec<AuthMode>>,
    /// Lower-cased; honoured only from `server.trusted_proxies`.
    pub identity_header: Option<String>,
    pub jwt: Option<JwtSection>,
    pub api_key: Option<ApiKeySection>,
    pub mtls: Option<MtlsSection>,
    pub signature: Option<SignatureSection>,
}

#[derive(Debug, Clone, Default)]
pub struct JwtSection {
    pub header: Option<String>,
    pub bearer_prefix: Option<String>,
    pub issuer: Option<String>,
    /// A single string is accepted as a one-element list.
    pub audience: Option<Vec<String>>,
    pub subject_claim: Option<String>,
    pub clock_skew_s: Option<u64>,
    pub allowed_algs: Option<Vec<String>>,
    pub jwks_url: Option<http::Uri>,
    pub jwks_ttl_s: Option<u64>,
    pub jwks_timeout_ms: Option<u64>,
    pub jwks_max_attempts: Option<u64>,
    pub jwks_backoff_ms: Option<u64>,
    pub jwks_max_backoff_ms: Option<u64>,
    /// At least 32 bytes (RFC 7518 §3.2); dev profile only.
    pub hs256_secret: Option<Secret>,
    pub scopes_claim: Option<String>,
    pub roles_claim: Option<String>,
    pub tenant_claim: Option<String>,
    /// Tokens longer than this are refused before any parsing (default 8192).
    pub max_token_bytes: Option<u64>,
    /// How long the last good key set keeps serving after refreshes fail.
    pub jwks_max_stale_s: Option<u64>,
    /// Bound of the verified-token cache (0 disables it).
    pub token_cache_entries: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct ApiKeySection {
    pub header: Option<String>,
    /// Server-side key of the keyed hash (HMAC-SHA256) under which API keys are stored:
    /// `env:NAME` or `file:PATH` only, at least 32 bytes. Required in profile `prod` when
    /// `auth.modes` contains `"api_key"`.
    pub pepper: Option<Secret>,
}

#[derive(Debug, Clone, Default)]
pub struct MtlsSection {
    pub identity_header: Option<String>,
    pub scopes_header: Option<String>,
    pub roles_header: Option<String>,
    /// `auth.mtls.map`: certificate identities (subject DN, CN, DNS/URI/email SANs) to
    /// tenant, roles and scopes; the first entry whose `id` equals one of the
    /// certificate's identities applies.
    pub map: Vec<CertMapping>,
}

/// One `auth.mtls.map` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertMapping {
    /// A subject DN (`CN=billing,O=Acme`), a CN, or a DNS, URI (SPIFFE ID) or email SAN.
    pub id: String,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SignatureSection {
    pub max_age_s: Option<u64>,
    /// `memory` (default) or `redis` (`[redis] url`, shared by several gateways).
    pub nonce_store: Option<NonceStoreKind>,
}

/// Where `auth.signature` remembers nonces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NonceStoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Default)]
pub struct RbacSection {
    pub enabled: Option<bool>,
    /// Role name → scopes it grants (`"*"` = every scope).
    pub roles: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitBackend {
    Memory,
    Redis,
}

/// What a stage does when its backend (Redis, the audit disk) fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSpec {
    pub per_minute: Option<u64>,
    pub burst: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct RateLimitSection {
    pub backend: Option<RateLimitBackend>,
    /// As written (`redis://…`, `env:NAME` or `file:PATH`).
    pub redis_url: Option<String>,
    /// `redis_url` resolved (the URL may carry a password). Always redacted in `Debug`.
    pub redis_url_secret: Option<Secret>,
    pub on_backend_error: Option<OnFailure>,
    pub tiers: BTreeMap<String, LimitSpec>,
    pub tenant: Option<LimitSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub hot_days: Option<u64>,
    pub warm_days: Option<u64>,
    pub cold_days: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditSection {
    /// Relative to `server.data_dir`.
    pub dir: Option<String>,
    pub on_failure: Option<OnFailure>,
    pub checkpoint_every_records: Option<u64>,
    pub checkpoint_every_s: Option<u64>,
    pub redact_query_params: Option<Vec<String>>,
    pub retention: Option<Retention>,
    /// The checkpoint origin line (default `rampart/audit`).
    pub origin: Option<String>,
    /// A segment is closed past this size or age.
    pub segment_max_bytes: Option<u64>,
    pub segment_max_age_s: Option<u64>,
    /// How long a request waits for its record to be written.
    pub write_timeout_ms: Option<u64>,
    /// Least time between two fdatasyncs of the audit log (default 0).
    pub sync_interval_ms: Option<u64>,
    /// HMAC key for keyed pseudonymization of `subject` and `client_ip`.
    pub pseudonymize_key: Option<Secret>,
    /// The PostgreSQL sink (`postgres://…`, `env:NAME` or `file:PATH`), resolved; the URL
    /// may carry a password. Always redacted in `Debug`.
    pub postgres_url: Option<Secret>,
    /// This gateway's chain in the PostgreSQL sink (required with `postgres_url`).
    pub node_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningProvider {
    Env,
    File,
}

#[derive(Debug, Clone, Default)]
pub struct SigningSection {
    pub provider: Option<SigningProvider>,
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CryptoSection {
    /// 32 bytes, base64 (the text is kept; the crypto issue decodes it).
    pub kek: Option<Secret>,
}

#[derive(Debug, Clone, Default)]
pub struct StoreSection {
    /// `sqlite://…` (under `data_dir`) or `postgres://…`, as written, or the resolved
    /// value of an `env:NAME` / `file:PATH` reference (a PostgreSQL URL may hold a
    /// password): see [`StoreSection::resolved_url`].
    pub url: Option<String>,
    /// The resolved URL when `url` was an `env:`/`file:` reference.
    pub url_secret: Option<Secret>,
}

impl StoreSection {
    /// The URL to connect to: the resolved reference, else the literal value.
    pub fn resolved_url(&self) -> Option<&str> {
        match &self.url_secret {
            Some(s) => s.expose_str(),
            None => self.url.as_deref(),
        }
    }
}

/// `[redis]`: shared by several gateways (revocation fan-out, signature nonces, rate
/// limits). Absent: none of them use Redis.
#[derive(Debug, Clone, Default)]
pub struct RedisSection {
    /// `redis://…` or `rediss://…` (TLS); written literally or as `env:NAME` /
    /// `file:PATH` (the URL may carry a password). Always redacted in `Debug`.
    pub url: Option<Secret>,
}

/// Every later section; `None` = the section is absent.
#[derive(Debug, Clone, Default)]
pub struct LaterSections {
    pub auth: Option<AuthSection>,
    pub rbac: Option<RbacSection>,
    pub rate_limit: Option<RateLimitSection>,
    pub audit: Option<AuditSection>,
    pub signing: Option<SigningSection>,
    pub crypto: Option<CryptoSection>,
    pub store: Option<StoreSection>,
    pub redis: Option<RedisSection>,
}

impl LaterSections {
    /// Identity headers named in `auth` (`identity_header`, `mtls.*_header`), lower-cased
    /// and de-duplicated: only a trusted proxy may send them; they are stripped from
    /// everyone else.
    pub fn identity_header_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let Some(a) = &self.auth else {
            return out;
        };
        let mut push = |h: &Option<String>| {
            if let Some(h) = h
                && !out.contains(h)
            {
                out.push(h.clone());
            }
        };
        push(&a.identity_header);
        if let Some(m) = &a.mtls {
            push(&m.identity_header);
            push(&m.scopes_header);
            push(&m.roles_header);
        }
        out
    }

    /// `auth.modes` contains `"none"` (only possible in the dev profile): every route may
    /// be used anonymously, not only `public = true` ones.
    pub fn anonymous_allowed(&self) -> bool {
        self.auth
            .as_ref()
            .and_then(|a| a.modes.as_ref())
            .is_some_and(|m| m.contains(&AuthMode::None))
    }
}

pub(crate) fn parse(cx: &mut Cx<'_>, top: &Tbl<'_>) -> LaterSections {
    LaterSections {
        auth: top.get("auth").and_then(|i| auth(cx, i)),
        rbac: top.get("rbac").and_then(|i| rbac(cx, i)),
        rate_limit: top.get("rate_limit").and_then(|i| {
            let global_redis = matches!(
                top.get("redis").map(|r| &r.node),
                Some(Node::Table(m)) if m.contains_key("url")
            );
            rate_limit(cx, i, global_redis)
        }),
        audit: top.get("audit").and_then(|i| audit(cx, i)),
        signing: top.get("signing").and_then(|i| signing(cx, i)),
        crypto: top.get("crypto").and_then(|i| crypto(cx, i)),
        store: top.get("store").and_then(|i| store(cx, i)),
        redis: top.get("redis").and_then(|i| redis(cx, i)),
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn auth(cx: &mut Cx<'_>, item: &Item) -> Option<AuthSection> {
    let t = cx.table(item, "auth", AUTH_KEYS)?;
    let mut a = AuthSection::default();
    if let Some(list) = cx.opt_str_list(&t, "modes") {
        let mut modes = Vec::new();
        for (idx, (m, i)) in list.iter().enumerate() {
            let key = format!("auth.modes[{idx}]");
            let mode = match cx.enum_of(i, &key, m, MODES) {
                Some("jwt") => AuthMode::Jwt,
                Some("api_key") => AuthMode::ApiKey,
                Some("mtls") => AuthMode::Mtls,
                Some("signature") => AuthMode::Signature,
                Some(_) => AuthMode::None,
                None => continue,
            };
            if modes.contains(&mode) {
                cx.error(i, &key, format!("`{m}` is listed twice"));
            } else {
                modes.push(mode);
            }
        }
        a.modes = Some(modes);
    }
    a.identity_header = header_name(cx, &t, "identity_header");
    a.jwt = t.get("jwt").and_then(|i| jwt(cx, i));
    if let Some(i) = t.get("api_key")
        && let Some(s) = cx.table(i, "auth.api_key", &["header", "pepper"])
    {
        a.api_key = Some(api_key_section(cx, &s));
    }
    api_key_pepper_rule(cx, &t, &a);
    if let Some(i) = t.get("mtls")
        && let Some(s) = cx.table(
            i,
            "auth.mtls",
            &["identity_header", "scopes_header", "roles_header", "map"],
        )
    {
        a.mtls = Some(MtlsSection {
            identity_header: header_name(cx, &s, "identity_header"),
            scopes_header: header_name(cx, &s, "scopes_header"),
            roles_header: header_name(cx, &s, "roles_header"),
            map: s.get("map").map(|m| cert_map(cx, m)).unwrap_or_default(),
        });
    }
    if let Some(i) = t.get("signature")
        && let Some(s) = cx.table(i, "auth.signature", &["max_age_s", "nonce_store"])
    {
        let nonce_store = match cx.opt_enum(&s, "nonce_store", &["memory", "redis"]) {
            Some("redis") => Some(NonceStoreKind::Redis),
            Some(_) => Some(NonceStoreKind::Memory),
            None => None,
        };
        a.signature = Some(SignatureSection {
            max_age_s: cx.opt_u64(&s, "max_age_s", 1, 3600),
            nonce_store,
        });
    }
    Some(a)
}

fn cert_map(cx: &mut Cx<'_>, item: &Item) -> Vec<CertMapping> {
    let Node::Array(entries) = &item.node else {
        cx.error(item, "auth.mtls.map", "expected an array of tables");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (idx, e) in entries.iter().enumerate() {
        let path = format!("auth.mtls.map[{idx}]");
        let Some(t) = cx.table(e, &path, &["id", "tenant", "roles", "scopes"]) else {
            continue;
        };
        let Some(id) = cx.opt_nonempty(&t, "id") else {
            cx.missing(
                &t,
                "id",
                "the certificate identity to match, e.g. a SPIFFE ID",
            );
            continue;
        };
        let list = |cx: &mut Cx<'_>, k: &str| -> Vec<String> {
            cx.opt_str_list(&t, k)
                .map(|l| l.into_iter().map(|(s, _)| s).collect())
                .unwrap_or_default()
        };
        let roles = list(cx, "roles");
        let scopes = list(cx, "scopes");
        out.push(CertMapping {
            id,
            tenant: cx.opt_nonempty(&t, "tenant"),
            roles,
            scopes,
        });
    }
    out
}

/// Minimum pepper length: the HMAC-SHA256 key should carry at least the hash's 256 bits.
const MIN_PEPPER_BYTES: usize = 32;

fn api_key_section(cx: &mut Cx<'_>, s: &Tbl<'_>) -> ApiKeySection {
    let pepper = cx.opt_secret(s, "pepper", false);
    if let (Some(p), Some(i)) = (&pepper, s.get("pepper"))
        && p.len() < MIN_PEPPER_BYTES
    {
        cx.error(
            i,
            "auth.api_key.pepper",
            format!(
                "{} holds {} bytes; the API key pepper must be at least {MIN_PEPPER_BYTES} bytes \
                 (e.g. `openssl rand -base64 48`)",
                p.source(),
                p.len()
            ),
        );
    }
    ApiKeySection {
        header: header_name(cx, s, "header"),
        pepper,
    }
}

/// API keys are verified against keyed hashes: without a pepper no key can be checked.
fn api_key_pepper_rule(cx: &mut Cx<'_>, t: &Tbl<'_>, a: &AuthSection) {
    let wants = a
        .modes
        .as_ref()
        .is_some_and(|m| m.contains(&AuthMode::ApiKey));
    let has = a.api_key.as_ref().is_some_and(|k| k.pepper.is_some())
        || t.get("api_key")
            .is_some_and(|i| matches!(&i.node, Node::Table(m) if m.contains_key("pepper")));
    if !wants || has {
        return;
    }
    match cx.profile {
        Profile::Prod => {
            let at = t.get("api_key").unwrap_or(t.item);
            cx.error_code(
                at,
                "auth.api_key.pepper",
                "missing-key",
                "auth.modes contains \"api_key\": set auth.api_key.pepper = \"env:NAME\" or \"file:PATH\" \
                 (at least 32 bytes; API keys are stored as HMAC-SHA256 under it)",
            );
        }
        Profile::Dev => cx.warn(
            "auth.modes contains \"api_key\" but auth.api_key.pepper is not set: no API key can be verified",
        ),
    }
}

fn jwt(cx: &mut Cx<'_>, item: &Item) -> Option<JwtSection> {
    let t = cx.table(item, "auth.jwt", JWT_KEYS)?;
    let mut j = JwtSection {
        header: header_name(cx, &t, "header"),
        bearer_prefix: cx.opt_str(&t, "bearer_prefix"),
        issuer: cx.opt_nonempty(&t, "issuer"),
        subject_claim: cx.opt_nonempty(&t, "subject_claim"),
        clock_skew_s: cx.opt_u64(&t, "clock_skew_s", 0, 600),
        jwks_ttl_s: cx.opt_u64(&t, "jwks_ttl_s", 1, 86_400),
        jwks_timeout_ms: cx.opt_u64(&t, "jwks_timeout_ms", 1, 60_000),
        jwks_max_attempts: cx.opt_u64(&t, "jwks_max_attempts", 1, 10),
        jwks_backoff_ms: cx.opt_u64(&t, "jwks_backoff_ms", 0, 60_000),
        jwks_max_backoff_ms: cx.opt_u64(&t, "jwks_max_backoff_ms", 0, 600_000),
        scopes_claim: cx.opt_nonempty(&t, "scopes_claim"),
        roles_claim: cx.opt_nonempty(&t, "roles_claim"),
        tenant_claim: cx.opt_nonempty(&t, "tenant_claim"),
        max_token_bytes: cx.opt_u64(&t, "max_token_bytes", 512, 65_536),
        jwks_max_stale_s: cx.opt_u64(&t, "jwks_max_stale_s", 0, 604_800),
        token_cache_entries: cx.opt_u64(&t, "token_cache_entries", 0, 10_000_000),
        ..JwtSection::default()
    };
    if let Some(i) = t.get("audience") {
        if let Node::Str(s) = &i.node {
            j.audience = Some(vec![s.clone()]);
        } else if let Some(list) = cx.str_list(i, "auth.jwt.audience") {
            j.audience = Some(list.into_iter().map(|(s, _)| s).collect());
        }
    }
    if let Some(list) = cx.opt_str_list(&t, "allowed_algs") {
        let mut algs = Vec::new();
        for (idx, (a, i)) in list.iter().enumerate() {
            if let Some(v) = cx.enum_of(i, &format!("auth.jwt.allowed_algs[{idx}]"), a, JWT_ALGS)
                && !algs.iter().any(|x| x == v)
            {
                algs.push(v.to_owned());
            }
        }
        if list.is_empty()
            && let Some(i) = t.get("allowed_algs")
        {
            cx.error(
                i,
                "auth.jwt.allowed_algs",
                "must name at least one algorithm",
            );
        }
        j.allowed_algs = Some(algs);
    }
    if let Some(i) = t.get("jwks_url")
        && let Some(s) = cx.str_of(i, "auth.jwt.jwks_url")
    {
        match crate::validate::http_url(&s) {
            Ok(u) => j.jwks_url = Some(u),
            Err(m) => cx.error(i, "auth.jwt.jwks_url", m),
        }
    }
    if let (Some(b), Some(m), Some(i)) = (
        j.jwks_backoff_ms,
        j.jwks_max_backoff_ms,
        t.get("jwks_backoff_ms"),
    ) && b > m
    {
        cx.error(
            i,
            "auth.jwt.jwks_backoff_ms",
            format!("{b} is larger than jwks_max_backoff_ms ({m})"),
        );
    }
    j.hs256_secret = cx.opt_secret(&t, "hs256_secret", true);
    if let (Some(s), Some(i)) = (&j.hs256_secret, t.get("hs256_secret"))
        && s.len() < 32
    {
        cx.error(
            i,
            "auth.jwt.hs256_secret",
            "an HS256 key must be at least 32 bytes (RFC 7518 §3.2)",
        );
    }
    Some(j)
}

fn rbac(cx: &mut Cx<'_>, item: &Item) -> Option<RbacSection> {
    let t = cx.table(item, "rbac", &["enabled", "roles"])?;
    let mut r = RbacSection {
        enabled: cx.opt_bool(&t, "enabled"),
        roles: BTreeMap::new(),
    };
    if let Some(i) = t.get("roles")
        && let Some(map) = cx.map(i, "rbac.roles")
    {
        for (name, v) in map {
            let key = format!("rbac.roles.{name}");
            if !name_ok(name) {
                cx.error(
                    v,
                    &key,
                    "a role name uses only letters, digits, `_`, `.` and `-`",
                );
                continue;
            }
            if let Some(list) = cx.str_list(v, &key) {
                r.roles
                    .insert(name.clone(), list.into_iter().map(|(s, _)| s).collect());
            }
        }
    }
    Some(r)
}

fn limit(cx: &mut Cx<'_>, item: &Item, path: &str) -> Option<LimitSpec> {
    let t = cx.table(item, path, &["per_minute", "burst"])?;
    if t.get("per_minute").is_none() {
        cx.missing(&t, "per_minute", "requests per minute, e.g. 600");
    }
    Some(LimitSpec {
        per_minute: cx.opt_u64(&t, "per_minute", 1, 100_000_000),
        burst: cx.opt_u64(&t, "burst", 1, 100_000_000),
    })
}

fn on_failure(cx: &mut Cx<'_>, t: &Tbl<'_>, k: &str) -> Option<OnFailure> {
    let v = cx.opt_enum(t, k, &["deny", "allow"])?;
    if v == "allow" {
        if cx.profile == Profile::Prod {
            cx.warn(format!(
                "{} = \"allow\": requests pass when the backend fails (fail open)",
                t.key(k)
            ));
        }
        Some(OnFailure::Allow)
    } else {
        Some(OnFailure::Deny)
    }
}

fn rate_limit(cx: &mut Cx<'_>, item: &Item, global_redis: bool) -> Option<RateLimitSection> {
    let t = cx.table(
        item,
        "rate_limit",
        &[
            "backend",
            "redis_url",
            "on_backend_error",
            "tiers",
            "tenant",
        ],
    )?;
    let mut r = RateLimitSection {
        backend: match cx.opt_enum(&t, "backend", &["memory", "redis"]) {
            Some("redis") => Some(RateLimitBackend::Redis),
            Some(_) => Some(RateLimitBackend::Memory),
            None => None,
        },
        on_backend_error: on_failure(cx, &t, "on_backend_error"),
        ..RateLimitSection::default()
    };
    if let Some(i) = t.get("redis_url")
        && let Some(s) = cx.str_of(i, "rate_limit.redis_url")
    {
        if s.starts_with("redis://")
            || s.starts_with("rediss://")
            || s.starts_with("env:")
            || s.starts_with("file:")
        {
            let literal = !(s.starts_with("env:") || s.starts_with("file:"));
            if literal {
                r.redis_url_secret = Some(Secret::with_source(s.clone().into_bytes(), "literal"));
            } else if let Some(sec) = cx.opt_secret(&t, "redis_url", false) {
                let v = sec.expose_str().unwrap_or("");
                if v.starts_with("redis://") || v.starts_with("rediss://") {
                    r.redis_url_secret = Some(sec);
                } else {
                    cx.error(
                        i,
                        "rate_limit.redis_url",
                        format!(
                            "{} must hold a URL starting with redis:// or rediss://",
                            sec.source()
                        ),
                    );
                }
            }
            r.redis_url = Some(s);
        } else {
            cx.error(
                i,
                "rate_limit.redis_url",
                format!("`{s}` must start with redis:// or rediss://"),
            );
        }
    }
    if r.backend == Some(RateLimitBackend::Redis) && t.get("redis_url").is_none() && !global_redis {
        cx.missing(
            &t,
            "redis_url",
            "backend = \"redis\" needs it (or a [redis] url)",
        );
    }
    if let Some(i) = t.get("tiers")
        && let Some(map) = cx.map(i, "rate_limit.tiers")
    {
        for (name, v) in map {
            let key = format!("rate_limit.tiers.{name}");
            if !name_ok(name) {
                cx.error(
                    v,
                    &key,
                    "a tier name uses only letters, digits, `_`, `.` and `-`",
                );
                continue;
            }
            if let Some(l) = limit(cx, v, &key) {
                r.tiers.insert(name.clone(), l);
            }
        }
    }
    r.tenant = t
        .get("tenant")
        .and_then(|i| limit(cx, i, "rate_limit.tenant"));
    Some(r)
}

fn audit(cx: &mut Cx<'_>, item: &Item) -> Option<AuditSection> {
    let t = cx.table(
        item,
        "audit",
        &[
            "dir",
            "on_failure",
            "checkpoint_every_records",
            "checkpoint_every_s",
            "redact_query_params",
            "retention",
            "origin",
            "segment_max_bytes",
            "segment_max_age_s",
            "write_timeout_ms",
            "sync_interval_ms",
            "pseudonymize_key",
            "postgres_url",
            "node_id",
        ],
    )?;
    let mut a = AuditSection {
        on_failure: on_failure(cx, &t, "on_failure"),
        checkpoint_every_records: cx.opt_u64(&t, "checkpoint_every_records", 1, 100_000_000),
        checkpoint_every_s: cx.opt_u64(&t, "checkpoint_every_s", 1, 86_400),
        segment_max_bytes: cx.opt_u64(&t, "segment_max_bytes", 4096, 1 << 40),
        segment_max_age_s: cx.opt_u64(&t, "segment_max_age_s", 1, 36_500 * 86_400),
        write_timeout_ms: cx.opt_u64(&t, "write_timeout_ms", 1, 600_000),
        sync_interval_ms: cx.opt_u64(&t, "sync_interval_ms", 0, 1000),
        pseudonymize_key: cx.opt_secret(&t, "pseudonymize_key", false),
        ..AuditSection::default()
    };
    if let Some(i) = t.get("origin")
        && let Some(s) = cx.str_of(i, "audit.origin")
    {
        if s.is_empty() || s.chars().any(char::is_control) {
            cx.error(i, "audit.origin", "must be one non-empty line");
        } else {
            a.origin = Some(s);
        }
    }
    if let (Some(k), Some(i)) = (&a.pseudonymize_key, t.get("pseudonymize_key"))
        && k.len() < 32
    {
        cx.error(
            i,
            "audit.pseudonymize_key",
            "a pseudonymization key must be at least 32 bytes",
        );
    }
    if let Some(i) = t.get("dir")
        && let Some(s) = cx.str_of(i, "audit.dir")
    {
        let p = std::path::Path::new(&s);
        if s.is_empty()
            || p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            cx.error(
                i,
                "audit.dir",
                format!("`{s}` must be a relative path under server.data_dir, without `..`"),
            );
        } else {
            a.dir = Some(s);
        }
    }
    audit_postgres(cx, &t, &mut a);
    if let Some(list) = cx.opt_str_list(&t, "redact_query_params") {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (idx, (s, i)) in list.into_iter().enumerate() {
            if s.is_empty() {
                cx.error(
                    i,
                    &format!("audit.redact_query_params[{idx}]"),
                    "must not be empty",
                );
            } else if seen.insert(s.clone()) {
                out.push(s);
            }
        }
        a.redact_query_params = Some(out);
    }
    if let Some(i) = t.get("retention")
        && let Some(r) = cx.table(
            i,
            "audit.retention",
            &["hot_days", "warm_days", "cold_days"],
        )
    {
        let ret = Retention {
            hot_days: cx.opt_u64(&r, "hot_days", 0, 36_500),
            warm_days: cx.opt_u64(&r, "warm_days", 0, 36_500),
            cold_days: cx.opt_u64(&r, "cold_days", 0, 36_500),
        };
        let order = [ret.hot_days, ret.warm_days, ret.cold_days];
        let given: Vec<u64> = order.iter().flatten().copied().collect();
        if given.windows(2).any(|w| matches!(w, [a, b] if a > b)) {
            cx.error(
                i,
                "audit.retention",
                "hot_days ≤ warm_days ≤ cold_days is required",
            );
        }
        a.retention = Some(ret);
    }
    Some(a)
}

fn signing(cx: &mut Cx<'_>, item: &Item) -> Option<SigningSection> {
    let t = cx.table(item, "signing", &["provider", "key_id"])?;
    let provider = match cx.opt_enum(&t, "provider", &["env", "file"]) {
        Some("env") => Some(SigningProvider::Env),
        Some(_) => Some(SigningProvider::File),
        None => None,
    };
    let mut key_id = None;
    if let Some(i) = t.get("key_id")
        && let Some(s) = cx.str_of(i, "signing.key_id")
    {
        if name_ok(&s) {
            key_id = Some(s);
        } else {
            cx.error(
                i,
                "signing.key_id",
                format!("`{s}`: a key id uses only letters, digits, `_`, `.` and `-`"),
            );
        }
    }
    Some(SigningSection { provider, key_id })
}

/// Standard base64 of exactly 32 bytes: 43 characters plus one `=` (or unpadded).
fn is_base64_32(b: &[u8]) -> bool {
    let body = b.strip_suffix(b"=").unwrap_or(b);
    body.len() == 43
        && body.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        // The last character carries 4 bits of padding that must be zero.
        && body.last().is_some_and(|c| b"AEIMQUYcgkosw048".contains(c))
}

fn crypto(cx: &mut Cx<'_>, item: &Item) -> Option<CryptoSection> {
    let t = cx.table(item, "crypto", &["kek"])?;
    let kek = cx.opt_secret(&t, "kek", true);
    if let (Some(k), Some(i)) = (&kek, t.get("kek"))
        && !is_base64_32(k.expose().trim_ascii())
    {
        cx.error(
            i,
            "crypto.kek",
            format!(
                "{} must hold 32 bytes, base64-encoded (44 characters)",
                k.source()
            ),
        );
    }
    Some(CryptoSection { kek })
}

const STORE_SCHEMES: &[&str] = &["sqlite://", "postgres://", "postgresql://"];

/// `audit.postgres_url` and `audit.node_id`: the URL literally or as a reference, and a
/// node id that names one chain (required with the URL: two gateways must never share a
/// chain, so no default such as the host name is guessed).
fn audit_postgres(cx: &mut Cx<'_>, t: &Tbl<'_>, a: &mut AuditSection) {
    const PG: [&str; 2] = ["postgres://", "postgresql://"];
    if let Some(i) = t.get("postgres_url")
        && let Some(s) = cx.str_of(i, "audit.postgres_url")
    {
        if s.starts_with("env:") || s.starts_with("file:") {
            if let Some(sec) = cx.opt_secret(t, "postgres_url", false) {
                let v = sec.expose_str().unwrap_or("");
                if PG.iter().any(|p| v.starts_with(p)) {
                    a.postgres_url = Some(sec);
                } else {
                    cx.error(
                        i,
                        "audit.postgres_url",
                        format!("{} must hold a URL starting with postgres://", sec.source()),
                    );
                }
            }
        } else if PG.iter().any(|p| s.starts_with(p)) {
            a.postgres_url = Some(Secret::with_source(s.into_bytes(), "literal"));
        } else {
            cx.error(
                i,
                "audit.postgres_url",
                "must start with postgres:// (or be env:NAME / file:PATH)",
            );
        }
    }
    if let Some(i) = t.get("node_id")
        && let Some(s) = cx.str_of(i, "audit.node_id")
    {
        if valid_node_id(&s) {
            a.node_id = Some(s);
        } else {
            cx.error(
                i,
                "audit.node_id",
                format!("`{s}` must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            );
        }
    }
    if a.postgres_url.is_some()
        && a.node_id.is_none()
        && let Some(i) = t.get("postgres_url")
    {
        cx.error(
            i,
            "audit.postgres_url",
            "needs audit.node_id (one chain per gateway; give each gateway its own)",
        );
    }
}

/// A node id of `audit.node_id`: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_node_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn store(cx: &mut Cx<'_>, item: &Item) -> Option<StoreSection> {
    let t = cx.table(item, "store", &["url"])?;
    let mut out = StoreSection::default();
    if let Some(i) = t.get("url")
        && let Some(s) = cx.str_of(i, "store.url")
    {
        if s.starts_with("env:") || s.starts_with("file:") {
            if let Some(sec) = cx.opt_secret(&t, "url", false) {
                let v = sec.expose_str().unwrap_or("");
                if STORE_SCHEMES.iter().any(|p| v.starts_with(p)) {
                    out.url = Some(s);
                    out.url_secret = Some(sec);
                } else {
                    cx.error(
                        i,
                        "store.url",
                        format!(
                            "{} must hold a URL starting with sqlite:// or postgres://",
                            sec.source()
                        ),
                    );
                }
            }
        } else if STORE_SCHEMES.iter().any(|p| s.starts_with(p)) {
            out.url = Some(s);
        } else {
            cx.error(
                i,
                "store.url",
                format!("`{s}` must start with sqlite:// or postgres://"),
            );
        }
    }
    Some(out)
}

fn redis(cx: &mut Cx<'_>, item: &Item) -> Option<RedisSection> {
    let t = cx.table(item, "redis", &["url"])?;
    let mut out = RedisSection::default();
    if let Some(i) = t.get("url")
        && let Some(s) = cx.str_of(i, "redis.url")
    {
        let literal = !(s.starts_with("env:") || s.starts_with("file:"));
        if literal && !(s.starts_with("redis://") || s.starts_with("rediss://")) {
            // Never echo the value: it may be a URL with a password in it.
            cx.error(
                i,
                "redis.url",
                "must start with redis:// or rediss:// (or be an env:NAME / file:PATH reference)",
            );
        } else if literal {
            out.url = Some(Secret::with_source(s.into_bytes(), "literal"));
        } else if let Some(sec) = cx.opt_secret(&t, "url", false) {
            let v = sec.expose_str().unwrap_or("");
            if v.starts_with("redis://") || v.starts_with("rediss://") {
                out.url = Some(sec);
            } else {
                cx.error(
                    i,
                    "redis.url",
                    format!(
                        "{} must hold a URL starting with redis:// or rediss://",
                        sec.source()
                    ),
                );
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_kek() {
        assert!(is_base64_32(
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        ));
        assert!(!is_base64_32(
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB="
        ));
        assert!(!is_base64_32(b"short"));
    }
}
