//! rampart's authentication stage (DESIGN.md §1 "authenticate" and "revocation"): the
//! modes of `auth.modes` (JWT, API key, mTLS; `none` for anonymous callers) tried in
//! the configured order, each turning one credential into one [`Identity`], then the
//! revocation list.
//!
//! Guards against: forged, expired, revoked or replayed-after-revocation credentials;
//! credential confusion (two `Authorization` headers, two API keys: refused, never "the
//! first one wins"); identity headers written by clients (they are honoured only from
//! `server.trusted_proxies`, and the sanitize stage has already removed them from every
//! other peer); oracle attacks on the refusal (every 401 carries one generic detail;
//! the precise reason goes to the access log, the audit record and
//! `rampart_auth_failures_total{method,reason}` only).
//!
//! Trusts: the verifiers behind [`TokenVerifier`], [`ApiKeyVerifier`] and
//! [`RevocationCheck`] (JWT/JWKS in `rampart-jwt`, the credential store in
//! `rampart-store`); the listener's verified client-certificate chain in [`ConnInfo`];
//! the route match.
//!
//! The stage never does I/O: the verifiers answer from memory (key sets, caches and
//! revocation snapshots refreshed in the background), so a slow JWKS or database never
//! holds a request.
//!
//! ```
//! use rampart_authn::{Authn, AuthnLayer, Verifiers};
//! let cfg = rampart_config::load_from_strs(&[("r.toml", "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[auth]\nmodes = [\"none\"]\n")], &[]).unwrap();
//! let authn = Authn::new(&cfg, Verifiers::default()).unwrap();
//! let _layer = AuthnLayer::from_stage(authn);
//! ```

#![forbid(unsafe_code)]

mod layer;
pub mod metrics;
pub mod mtls;
pub mod signature;

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};
use http::{HeaderValue, Request};
use rampart_config::Config;
use rampart_config::raw::{AuthMode, CertMapping};
use rampart_http::{
    AuthFailure, Challenge, ConnInfo, Identity, Reject, RequestId, RouteMatch, Stage, is_trusted,
};

pub use layer::{AuthnFuture, AuthnLayer, AuthnService};
pub use metrics::AuthMetrics;
pub use signature::{AuthnBody, DeviceDirectory, DeviceEntry, DeviceInfo, SignatureAuth};

/// What a verified bearer token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub jti: Option<String>,
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    /// The token is bad (fixed reason code: `expired`, `bad_signature`, …).
    Invalid(&'static str),
    /// No key set is loaded yet: the gateway cannot decide (503, not 401).
    Unavailable,
    /// Not decided from memory: an unknown `kid` whose key-set refresh is under way (or
    /// no key set while the first fetch runs). The asynchronous stage awaits
    /// [`TokenVerifier::verify_wait`]; a synchronous caller refuses with `reason`.
    RetryAfterRefresh(&'static str),
}

/// The boxed future of [`TokenVerifier::verify_wait`].
pub type VerifyFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<TokenClaims, TokenFailure>> + Send + 'a>,
>;

/// Verifies compact JWS bearer tokens. `verify` answers from memory, without waiting on
/// I/O; only when it says [`TokenFailure::RetryAfterRefresh`] does the stage await
/// `verify_wait` (bounded by the verifier), so a key rotated in at the identity provider
/// is accepted on its first use while forged kids fail at once.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify(&self, token: &str) -> Result<TokenClaims, TokenFailure>;

    /// Verifies again after waiting (bounded) for the refresh `verify` reported.
    fn verify_wait<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(std::future::ready(match self.verify(token) {
            Err(TokenFailure::RetryAfterRefresh(r)) => Err(TokenFailure::Invalid(r)),
            other => other,
        }))
    }
}

/// What a verified API key's record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaims {
    /// The key's public id (never the secret).
    pub id: String,
    pub name: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// The record's own rate limit, if it sets one.
    pub rate_override: Option<Arc<rampart_http::RateOverride>>,
}

/// Verifies API keys. Must answer from memory and compare secrets in constant time.
pub trait ApiKeyVerifier: Send + Sync + 'static {
    /// `Err` carries a fixed reason code (`unknown_key`, `bad_checksum`, `expired`, …).
    fn verify(&self, presented: &str) -> Result<KeyClaims, &'static str>;
}

/// The revocation list as the request path sees it (an in-memory snapshot).
pub trait RevocationCheck: Send + Sync + 'static {
    fn jti(&self, jti: &str) -> bool;
    fn subject(&self, subject: &str) -> bool;
    /// Lower-case hex SHA-256 of the certificate's DER.
    fn cert(&self, fingerprint: &str) -> bool;
    fn api_key(&self, id: &str) -> bool;
}

/// The verifiers the configured modes need. A mode whose verifier is missing refuses
/// every credential of its kind (fail closed) and is reported at start.
#[derive(Clone, Default)]
pub struct Verifiers {
    pub jwt: Option<Arc<dyn TokenVerifier>>,
    pub api_keys: Option<Arc<dyn ApiKeyVerifier>>,
    pub revocations: Option<Arc<dyn RevocationCheck>>,
    /// The `signature` mode (devices, nonce store, `auth.signature`).
    pub signature: Option<Arc<SignatureAuth>>,
    /// Shared across reloads so counters survive them.
    pub metrics: Arc<AuthMetrics>,
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifiers")
            .field("jwt", &self.jwt.is_some())
            .field("api_keys", &self.api_keys.is_some())
            .field("revocations", &self.revocations.is_some())
            .field("signature", &self.signature.is_some())
            .finish()
    }
}

/// Why the stage could not be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("auth.jwt.bearer_prefix must not be empty when auth.jwt.header is `authorization`")]
    EmptyBearerPrefix,
}

/// Internal marker of a JWT to verify again after the key-set refresh (never a metric
/// label: `resolve` turns it into [`Resolved::JwtRetry`]).
const RETRY: &str = "retry_after_refresh";

/// Longest credential header value looked at (the JWT verifier applies its own, smaller
/// cap); anything longer is refused without parsing.
const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// The authentication stage. Build one per configuration; cheap to share.
pub struct Authn {
    modes: Vec<AuthMode>,
    anonymous: bool,
    jwt_header: HeaderName,
    /// Lower-cased; compared case-insensitively.
    bearer_prefix: String,
    api_key_header: HeaderName,
    trusted_proxies: Vec<ipnet::IpNet>,
    /// `auth.identity_header`, from trusted proxies only.
    identity_header: Option<HeaderName>,
    mtls_identity_header: Option<HeaderName>,
    mtls_scopes_header: Option<HeaderName>,
    mtls_roles_header: Option<HeaderName>,
    cert_map: Vec<CertMapping>,
    verifiers: Verifiers,
}

impl std::fmt::Debug for Authn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authn")
            .field("modes", &self.modes)
            .field("verifiers", &self.verifiers)
            .finish_non_exhaustive()
    }
}

/// What the authentication of one request needs: nothing more (decided), or the
/// asynchronous signature check.
pub(crate) enum Resolved {
    Done(Result<Identity, (&'static str, Reject)>),
    Signature(Arc<SignatureAuth>),
    /// A bearer token to verify again once the key-set refresh it triggered is done.
    JwtRetry(Arc<dyn TokenVerifier>, String),
}

/// The identity (or refusal) of a JWT verification outcome.
pub(crate) fn jwt_outcome(
    r: Result<TokenClaims, TokenFailure>,
) -> Result<Identity, (&'static str, Reject)> {
    match r {
        Ok(c) => Ok(Identity {
            method: "jwt",
            subject: Some(c.subject),
            tenant: c.tenant,
            scopes: c.scopes,
            roles: c.roles,
            credential_id: c.jti,
            rate_override: None,
        }),
        Err(TokenFailure::Invalid(reason) | TokenFailure::RetryAfterRefresh(reason)) => {
            Err(fail("jwt", reason, Challenge::InvalidToken))
        }
        Err(TokenFailure::Unavailable) => Err(("jwt", Reject::AuthUnavailable("jwks_unavailable"))),
    }
}

fn header(name: Option<&String>, default: &'static str) -> HeaderName {
    name.and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .unwrap_or(HeaderName::from_static(default))
}

fn opt_header(name: Option<&String>) -> Option<HeaderName> {
    name.and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
}

impl Authn {
    pub fn new(cfg: &Config, verifiers: Verifiers) -> Result<Self, AuthnError> {
        let auth = cfg.later.auth.clone().unwrap_or_default();
        let jwt = auth.jwt.clone().unwrap_or_default();
        let mtls = auth.mtls.clone().unwrap_or_default();
        let modes = auth.modes.clone().unwrap_or_default();
        let jwt_header = header(jwt.header.as_ref(), "authorization");
        let bearer_prefix = jwt
            .bearer_prefix
            .clone()
            .unwrap_or_else(|| "bearer ".to_owned())
            .to_ascii_lowercase();
        if jwt_header == http::header::AUTHORIZATION && bearer_prefix.is_empty() {
            return Err(AuthnError::EmptyBearerPrefix);
        }
        let authn = Self {
            anonymous: modes.contains(&AuthMode::None),
            modes,
            jwt_header,
            bearer_prefix,
            api_key_header: header(
                auth.api_key.as_ref().and_then(|a| a.header.as_ref()),
                "x-api-key",
            ),
            trusted_proxies: cfg.server.trusted_proxies.clone(),
            identity_header: opt_header(auth.identity_header.as_ref()),
            mtls_identity_header: opt_header(mtls.identity_header.as_ref()),
            mtls_scopes_header: opt_header(mtls.scopes_header.as_ref()),
            mtls_roles_header: opt_header(mtls.roles_header.as_ref()),
            cert_map: mtls.map,
            verifiers,
        };
        for m in authn.unavailable_modes() {
            tracing::warn!(
                mode = m,
                "auth.modes lists `{m}` but this gateway has no verifier for it: every such credential is refused"
            );
        }
        Ok(authn)
    }

    /// Modes that are configured but cannot verify anything here.
    pub fn unavailable_modes(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for m in &self.modes {
            match m {
                AuthMode::Jwt if self.verifiers.jwt.is_none() => out.push("jwt"),
                AuthMode::ApiKey if self.verifiers.api_keys.is_none() => out.push("api_key"),
                AuthMode::Signature if self.verifiers.signature.is_none() => {
                    out.push("signature");
                }
                _ => {}
            }
        }
        out
    }

    pub fn metrics(&self) -> &Arc<AuthMetrics> {
        &self.verifiers.metrics
    }

    /// Decides who the caller is. `Ok` carries the identity (anonymous when allowed and
    /// no credential was presented); `Err` the refusal. Signed requests need the
    /// asynchronous path of [`AuthnLayer`]: here they are refused.
    pub fn authenticate<B>(&self, req: &Request<B>) -> Result<Identity, (&'static str, Reject)> {
        match self.resolve(req) {
            Resolved::Done(r) => r,
            Resolved::Signature(_) => Err(fail(
                "signature",
                "signature_unsupported",
                Challenge::Signature { body: false },
            )),
            // No waiting here: what the verifier knows now.
            Resolved::JwtRetry(v, token) => {
                jwt_outcome(v.verify(&token)).and_then(|id| self.check_revoked(id))
            }
        }
    }

    pub(crate) fn resolve<B>(&self, req: &Request<B>) -> Resolved {
        let headers = req.headers();
        let conn = req.extensions().get::<ConnInfo>();
        let peer_trusted = conn.is_some_and(|c| is_trusted(&self.trusted_proxies, c.peer.ip()));
        for mode in &self.modes {
            let found = match mode {
                AuthMode::Jwt => match self.jwt(headers) {
                    Some(Err((_, Reject::Unauthenticated(AuthFailure { reason: RETRY, .. }))))
                        if let Some(v) = &self.verifiers.jwt
                            && let Some(t) = self.bearer_token(headers) =>
                    {
                        return Resolved::JwtRetry(Arc::clone(v), t);
                    }
                    other => other,
                },
                AuthMode::ApiKey => self.api_key(headers),
                AuthMode::Mtls => self.mtls(headers, conn, peer_trusted),
                AuthMode::Signature => {
                    if !signature_presented(headers) {
                        None
                    } else if let Some(s) = &self.verifiers.signature {
                        return Resolved::Signature(Arc::clone(s));
                    } else {
                        Some(Err(fail(
                            "signature",
                            "mode_unavailable",
                            Challenge::Signature { body: false },
                        )))
                    }
                }
                AuthMode::None => None,
            };
            if let Some(result) = found {
                return Resolved::Done(result.and_then(|id| self.check_revoked(id)));
            }
        }
        if peer_trusted
            && let Some(h) = &self.identity_header
            && let Some(result) = self.proxy_identity(headers, h)
        {
            return Resolved::Done(result.and_then(|id| self.check_revoked(id)));
        }
        if self.anonymous {
            return Resolved::Done(Ok(Identity::anonymous()));
        }
        Resolved::Done(Err(fail("none", "missing_credentials", Challenge::Bearer)))
    }

    pub(crate) fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.trusted_proxies
    }

    /// The bearer token of the JWT header, if one was presented.
    fn jwt(&self, headers: &HeaderMap) -> Option<Result<Identity, (&'static str, Reject)>> {
        let value = match single(headers, &self.jwt_header) {
            Single::None => return None,
            Single::Many => {
                return Some(Err(fail(
                    "jwt",
                    "duplicate_credential",
                    Challenge::InvalidToken,
                )));
            }
            Single::One(v) => v,
        };
        let bytes = value.as_bytes();
        let p = self.bearer_prefix.as_bytes();
        // Not a bearer credential (e.g. `Basic …`): another mode may own this header.
        let token = match bytes.get(..p.len()) {
            Some(head) if head.eq_ignore_ascii_case(p) => bytes.get(p.len()..).unwrap_or(b""),
            _ => return None,
        };
        let invalid = |reason| Some(Err(fail("jwt", reason, Challenge::InvalidToken)));
        if token.len() > MAX_CREDENTIAL_BYTES {
            return invalid("token_too_large");
        }
        let Ok(token) = std::str::from_utf8(token) else {
            return invalid("malformed_token");
        };
        let Some(v) = &self.verifiers.jwt else {
            return invalid("mode_unavailable");
        };
        Some(match v.verify(token) {
            // Marked for `resolve`, which takes the asynchronous path.
            Err(TokenFailure::RetryAfterRefresh(_)) => {
                Err(fail("jwt", RETRY, Challenge::InvalidToken))
            }
            r => jwt_outcome(r),
        })
    }

    /// The bearer token of a single, well-formed JWT header (after [`Authn::jwt`]
    /// accepted its shape).
    fn bearer_token(&self, headers: &HeaderMap) -> Option<String> {
        let Single::One(v) = single(headers, &self.jwt_header) else {
            return None;
        };
        let p = self.bearer_prefix.len();
        std::str::from_utf8(v.as_bytes().get(p..)?)
            .ok()
            .map(str::to_owned)
    }

    fn api_key(&self, headers: &HeaderMap) -> Option<Result<Identity, (&'static str, Reject)>> {
        let value = match single(headers, &self.api_key_header) {
            Single::None => return None,
            Single::Many => {
                return Some(Err(fail(
                    "api_key",
                    "duplicate_credential",
                    Challenge::ApiKey,
                )));
            }
            Single::One(v) => v,
        };
        let invalid = |reason| Some(Err(fail("api_key", reason, Challenge::ApiKey)));
        if value.len() > MAX_CREDENTIAL_BYTES {
            return invalid("malformed_key");
        }
        let Ok(key) = value.to_str() else {
            return invalid("malformed_key");
        };
        let Some(v) = &self.verifiers.api_keys else {
            return invalid("mode_unavailable");
        };
        Some(match v.verify(key) {
            Ok(k) => Ok(Identity {
                method: "api_key",
                subject: Some(k.name),
                tenant: k.tenant,
                scopes: k.scopes,
                roles: k.roles,
                credential_id: Some(k.id),
                rate_override: k.rate_override,
            }),
            Err(reason) => Err(fail("api_key", reason, Challenge::ApiKey)),
        })
    }

    /// A verified client certificate, or the ingress's identity headers from a trusted
    /// proxy (TLS ended there).
    fn mtls(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnInfo>,
        peer_trusted: bool,
    ) -> Option<Result<Identity, (&'static str, Reject)>> {
        if let Some(leaf) = conn
            .and_then(|c| c.tls.as_ref())
            .and_then(|t| t.peer_certificates.as_ref())
            .and_then(|chain| chain.first())
        {
            return Some(match mtls::CertIdentity::from_der(leaf) {
                Ok(cert) => Ok(cert.into_identity(&self.cert_map)),
                Err(reason) => Err(fail("mtls", reason, Challenge::Bearer)),
            });
        }
        if !peer_trusted {
            return None;
        }
        let h = self.mtls_identity_header.as_ref()?;
        let subject = match single(headers, h) {
            Single::None => return None,
            Single::Many => {
                return Some(Err(fail("mtls", "duplicate_credential", Challenge::Bearer)));
            }
            Single::One(v) => v,
        };
        let Some(subject) = header_text(subject) else {
            return Some(Err(fail("mtls", "malformed_identity", Challenge::Bearer)));
        };
        let list = |h: &Option<HeaderName>| -> Vec<String> {
            h.as_ref()
                .and_then(|h| headers.get(h))
                .and_then(header_text)
                .map(|s| split_list(&s))
                .unwrap_or_default()
        };
        let mapped = mtls::lookup(&self.cert_map, std::slice::from_ref(&subject));
        let mut id = Identity {
            method: "mtls",
            subject: Some(subject),
            tenant: mapped.and_then(|m| m.tenant.clone()),
            scopes: list(&self.mtls_scopes_header),
            roles: list(&self.mtls_roles_header),
            credential_id: None,
            rate_override: None,
        };
        if let Some(m) = mapped {
            mtls::extend_unique(&mut id.scopes, &m.scopes);
            mtls::extend_unique(&mut id.roles, &m.roles);
        }
        Some(Ok(id))
    }

    /// `auth.identity_header` set by an authenticating proxy in front (trusted peers
    /// only; the sanitize stage removed it from everyone else).
    fn proxy_identity(
        &self,
        headers: &HeaderMap,
        h: &HeaderName,
    ) -> Option<Result<Identity, (&'static str, Reject)>> {
        Some(match single(headers, h) {
            Single::None => return None,
            Single::Many => Err(fail("proxy", "duplicate_credential", Challenge::Bearer)),
            Single::One(v) => match header_text(v) {
                Some(subject) => Ok(Identity {
                    method: "proxy",
                    subject: Some(subject),
                    tenant: None,
                    scopes: Vec::new(),
                    roles: Vec::new(),
                    credential_id: None,
                    rate_override: None,
                }),
                None => Err(fail("proxy", "malformed_identity", Challenge::Bearer)),
            },
        })
    }

    pub(crate) fn check_revoked(&self, id: Identity) -> Result<Identity, (&'static str, Reject)> {
        let Some(r) = &self.verifiers.revocations else {
            return Ok(id);
        };
        let challenge = match id.method {
            "jwt" => Challenge::InvalidToken,
            "api_key" => Challenge::ApiKey,
            "signature" => Challenge::Signature { body: false },
            _ => Challenge::Bearer,
        };
        let by_credential = id
            .credential_id
            .as_deref()
            .is_some_and(|c| match id.method {
                "jwt" => r.jti(c),
                "api_key" => r.api_key(c),
                "mtls" => r.cert(c),
                _ => false,
            });
        let by_subject = id.subject.as_deref().is_some_and(|s| r.subject(s));
        if by_credential || by_subject {
            return Err(fail(id.method, "revoked", challenge));
        }
        Ok(id)
    }
}

pub(crate) fn fail(
    method: &'static str,
    reason: &'static str,
    challenge: Challenge,
) -> (&'static str, Reject) {
    (
        method,
        Reject::Unauthenticated(AuthFailure { reason, challenge }),
    )
}

enum Single<'a> {
    None,
    One(&'a HeaderValue),
    Many,
}

/// The one value of `name`; two or more is credential confusion.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Single<'a> {
    let mut it = headers.get_all(name).iter();
    match (it.next(), it.next()) {
        (None, _) => Single::None,
        (Some(v), None) => Single::One(v),
        (Some(_), Some(_)) => Single::Many,
    }
}

/// A header value as text: visible ASCII and spaces only, bounded, trimmed.
fn header_text(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    (!s.is_empty() && s.len() <= 1024).then(|| s.to_owned())
}

/// Scopes or roles as a proxy sends them: separated by spaces or commas.
fn split_list(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in s.split([' ', ',']).filter(|p| !p.is_empty()).take(256) {
        if !out.iter().any(|x| x == p) {
            out.push(p.to_owned());
        }
    }
    out
}

fn signature_presented(headers: &HeaderMap) -> bool {
    headers.contains_key("signature") || headers.contains_key("signature-input")
}

impl Authn {
    /// Bookkeeping of a decided authentication: metrics, the identity extension, the API
    /// key removed before forwarding; the refusal on failure.
    pub(crate) fn settle<B>(
        &self,
        req: &mut Request<B>,
        result: Result<Identity, (&'static str, Reject)>,
    ) -> Result<(), Reject> {
        match result {
            Ok(identity) => {
                if identity.method == "api_key" {
                    // rampart's own credential: the upstream never needs (or logs) it.
                    req.headers_mut().remove(&self.api_key_header);
                }
                self.verifiers.metrics.success(identity.method);
                req.extensions_mut().insert(Arc::new(identity));
                Ok(())
            }
            Err((method, reject)) => {
                let reason = reject.reason();
                self.verifiers.metrics.failure(method, reason);
                tracing::debug!(
                    request_id = req.extensions().get::<RequestId>().map(RequestId::as_str),
                    method,
                    reason,
                    "authentication refused"
                );
                Err(reject)
            }
        }
    }

    /// Whether the matched route skips authentication (`Err`: no route match, a bug).
    pub(crate) fn is_public<B>(req: &Request<B>) -> Result<bool, Reject> {
        let Some(m) = req.extensions().get::<RouteMatch>() else {
            return Err(Reject::Internal);
        };
        // Public routes skip authentication; the authorization stage gives them the
        // anonymous identity.
        Ok(m.route.config.public)
    }
}

/// The synchronous stage (signed requests refused: they need [`AuthnLayer`]).
impl Stage for Authn {
    type State = ();

    fn on_request<B>(&self, req: &mut Request<B>) -> Result<(), Reject> {
        if Self::is_public(req)? {
            return Ok(());
        }
        let result = self.authenticate(req);
        self.settle(req, result)
    }
}

#[cfg(test)]
mod tests;
