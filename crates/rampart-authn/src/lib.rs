//! rampart's authentication stage (DESIGN.md §1 "authenticate" and "revocation"): the
//! modes of `auth.modes` (JWT, API key, mTLS, signature; `none` for anonymous callers)
//! tried in the configured order, each turning one credential into one [`Identity`],
//! then the revocation list.
//!
//! **Several credentials**: every credential a request presents for a configured mode
//! must verify (and not be revoked); the caller is the first one's in configured order.
//! A valid JWT never excuses a bad API key beside it, nor the reverse: the request is
//! refused with the failing mode's challenge and reason. A verified client certificate
//! (mTLS transport) with a user's token is the common case: both verify, and the mode
//! listed first names the caller. A credential of a mode *not* in `auth.modes` is not
//! looked at (nor removed: it is forwarded as any other header). The one-credential
//! request pays only a header lookup per other mode.
//!
//! Guards against: forged, expired, revoked or replayed-after-revocation credentials;
//! credential confusion (two `Authorization` headers, two API keys: refused, never "the
//! first one wins"; a good credential of one mode beside a bad one of another: refused);
//! identity headers written by clients (they are honoured only from
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

use bytes::Bytes;
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
    /// `jwt` and `api_key` read the same header: a bearer value is the JWT's, any other
    /// the API key's.
    shared_header: bool,
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

/// A refusal: the mode (metric label) and what the client gets.
pub(crate) type Fail = (&'static str, Reject);

/// One credential a request presents, as far as the synchronous check gets.
pub(crate) enum Slot {
    /// Decided from memory (revocation included).
    Done(Result<Identity, Fail>),
    /// A signed request: verified on the asynchronous path (nonce store, body digest).
    Signature(Arc<SignatureAuth>),
    /// A bearer token to verify again once the key-set refresh it triggered is done.
    JwtRetry(Arc<dyn TokenVerifier>, String),
}

impl Slot {
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Slot::Done(_))
    }
}

/// What the authentication of one request needs.
pub(crate) enum Resolved {
    /// Decided: at most one credential was presented (or a presented one was refused).
    Done(Result<Identity, Fail>),
    /// Several credentials, or one that needs the asynchronous path: every slot, in
    /// configured order, must verify; the first one's identity is the caller's. Every
    /// `Slot::Done` here is `Ok` (a refusal is answered at once as `Done`).
    Pending(Vec<Slot>),
}

/// The outcome of several credentials that all verified.
pub(crate) struct Combined {
    /// The first mode's identity (configured order).
    pub(crate) identity: Identity,
    /// An API key was among them: it is removed before forwarding.
    pub(crate) api_key: bool,
    /// The body check of a signed request.
    pub(crate) body: Option<rampart_sig::DigestChecker>,
}

/// The parts of a request head the signature check reads.
#[derive(Clone, Copy)]
pub(crate) struct Head<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) uri: &'a http::Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a http::Extensions,
}

impl<'a> Head<'a> {
    pub(crate) fn of_parts(p: &'a http::request::Parts) -> Self {
        Head {
            method: &p.method,
            uri: &p.uri,
            headers: &p.headers,
            extensions: &p.extensions,
        }
    }

    pub(crate) fn of<B>(r: &'a Request<B>) -> Self {
        Head {
            method: r.method(),
            uri: r.uri(),
            headers: r.headers(),
            extensions: r.extensions(),
        }
    }
}

/// The identity (or refusal) of a JWT verification outcome.
pub(crate) fn jwt_outcome(r: Result<TokenClaims, TokenFailure>) -> Result<Identity, Fail> {
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
        let api_key_header = header(
            auth.api_key.as_ref().and_then(|a| a.header.as_ref()),
            "x-api-key",
        );
        let authn = Self {
            anonymous: modes.contains(&AuthMode::None),
            shared_header: api_key_header == jwt_header
                && modes.contains(&AuthMode::Jwt)
                && modes.contains(&AuthMode::ApiKey),
            modes,
            jwt_header,
            bearer_prefix,
            api_key_header,
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
    /// asynchronous path of [`AuthnLayer`] or [`Authn::authenticate_buffered`]: here they
    /// are refused, and a JWT whose key-set refresh is under way is decided with the keys
    /// known now.
    pub fn authenticate<B>(&self, req: &Request<B>) -> Result<Identity, (&'static str, Reject)> {
        self.authenticate_now(req).map(|c| c.identity)
    }

    fn authenticate_now<B>(&self, req: &Request<B>) -> Result<Combined, Fail> {
        let slots = match self.resolve(req) {
            Resolved::Done(r) => {
                return r.map(|identity| Combined {
                    identity,
                    api_key: false,
                    body: None,
                });
            }
            Resolved::Pending(slots) => slots,
        };
        let mut decided = Vec::with_capacity(slots.len());
        for slot in slots {
            decided.push(match slot {
                Slot::Done(r) => r?,
                Slot::Signature(_) => {
                    return Err(fail(
                        "signature",
                        "signature_unsupported",
                        Challenge::Signature { body: false },
                    ));
                }
                // No waiting here: what the verifier knows now.
                Slot::JwtRetry(v, token) => {
                    jwt_outcome(v.verify(&token)).and_then(|id| self.check_revoked(id))?
                }
            });
        }
        combine(decided, None)
    }

    /// Authenticates a request whose whole body is at hand (the admin API), with the same
    /// rules as [`AuthnLayer`]: every presented credential must verify, signed requests
    /// included (nonce, `created`, covered components, and `Content-Digest` checked
    /// against `req.body()`). Counts nothing: the caller records the outcome.
    pub async fn authenticate_buffered(&self, req: &Request<Bytes>) -> Result<Identity, Fail> {
        let slots = match self.resolve(req) {
            Resolved::Done(r) => return r,
            Resolved::Pending(slots) => slots,
        };
        let has_body = !req.body().is_empty();
        let c = self.complete(slots, Head::of(req), has_body).await?;
        if let Some(mut check) = c.body {
            check.update(req.body());
            if check.finish().is_err() {
                return Err(fail(
                    "signature",
                    "digest_mismatch",
                    Challenge::Signature { body: true },
                ));
            }
        }
        Ok(c.identity)
    }

    /// Finishes a [`Resolved::Pending`]: JWTs awaited after their key-set refresh, then
    /// the signature (last: it records the nonce, which a refusal of another credential
    /// should not burn). Every credential must verify; revocation applies to each.
    pub(crate) async fn complete(
        &self,
        slots: Vec<Slot>,
        head: Head<'_>,
        has_body: bool,
    ) -> Result<Combined, Fail> {
        let mut decided: Vec<Option<Identity>> = Vec::with_capacity(slots.len());
        let mut signature = None;
        for slot in slots {
            decided.push(match slot {
                Slot::Done(r) => Some(r?),
                Slot::JwtRetry(v, token) => Some(
                    jwt_outcome(v.verify_wait(&token).await)
                        .and_then(|id| self.check_revoked(id))?,
                ),
                Slot::Signature(sig) => {
                    signature = Some((decided.len(), sig));
                    None
                }
            });
        }
        let mut body = None;
        if let Some((at, sig)) = signature {
            let (id, checker) = layer::verify_signature(self, &sig, head, has_body)
                .await
                .map_err(|reason| {
                    fail("signature", reason, Challenge::Signature { body: has_body })
                })?;
            body = checker;
            if let Some(slot) = decided.get_mut(at) {
                *slot = Some(id);
            }
        }
        combine(decided.into_iter().flatten().collect(), body)
    }

    /// [`Authn::complete`] of slots that are all decided (no waiting).
    pub(crate) fn complete_now(slots: Vec<Slot>) -> Result<Combined, Fail> {
        let mut ids = Vec::with_capacity(slots.len());
        for slot in slots {
            match slot {
                Slot::Done(r) => ids.push(r?),
                // Not reached (the caller checked); fail closed all the same.
                Slot::Signature(_) | Slot::JwtRetry(..) => {
                    return Err(fail("none", "missing_credentials", Challenge::Bearer));
                }
            }
        }
        combine(ids, None)
    }

    pub(crate) fn resolve<B>(&self, req: &Request<B>) -> Resolved {
        let headers = req.headers();
        let conn = req.extensions().get::<ConnInfo>();
        let peer_trusted = conn.is_some_and(|c| is_trusted(&self.trusted_proxies, c.peer.ip()));
        // Every mode looks: an absent credential costs a header lookup. The first one
        // found is the caller's; any other presented must verify too (fail closed: a bad
        // key is never excused by a good token, nor the reverse).
        let mut first: Option<Slot> = None;
        let mut more: Vec<Slot> = Vec::new();
        for mode in &self.modes {
            let slot = match mode {
                AuthMode::Jwt => self.jwt(headers),
                AuthMode::ApiKey => self.api_key(headers).map(Slot::Done),
                AuthMode::Mtls => self.mtls(headers, conn, peer_trusted).map(Slot::Done),
                AuthMode::Signature => {
                    if !signature_presented(headers) {
                        None
                    } else if let Some(s) = &self.verifiers.signature {
                        Some(Slot::Signature(Arc::clone(s)))
                    } else {
                        Some(Slot::Done(Err(fail(
                            "signature",
                            "mode_unavailable",
                            Challenge::Signature { body: false },
                        ))))
                    }
                }
                AuthMode::None => None,
            };
            let slot = match slot {
                None => continue,
                Some(Slot::Done(r)) => match r.and_then(|id| self.check_revoked(id)) {
                    Ok(id) => Slot::Done(Ok(id)),
                    Err(e) => return Resolved::Done(Err(e)),
                },
                Some(other) => other,
            };
            if first.is_none() {
                first = Some(slot);
            } else {
                more.push(slot);
            }
        }
        match first {
            Some(Slot::Done(r)) if more.is_empty() => return Resolved::Done(r),
            Some(slot) => {
                more.insert(0, slot);
                return Resolved::Pending(more);
            }
            None => {}
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
        Resolved::Done(Err(fail(
            "none",
            "missing_credentials",
            self.missing_challenge(headers),
        )))
    }

    /// The challenge of a request that presented no credential: with signed requests
    /// among the modes, `Signature realm` and `Accept-Signature` (RFC 9421 §5.1) ask the
    /// client to sign (`content-digest` too when the request declares a body), beside
    /// `Bearer realm` when other modes are accepted too.
    fn missing_challenge(&self, headers: &http::HeaderMap) -> Challenge {
        if !self.modes.contains(&AuthMode::Signature) {
            return Challenge::Bearer;
        }
        let body = headers.contains_key(http::header::TRANSFER_ENCODING)
            || headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        let bearer = self
            .modes
            .iter()
            .any(|m| !matches!(m, AuthMode::Signature | AuthMode::None));
        Challenge::MissingSignature { body, bearer }
    }

    pub(crate) fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.trusted_proxies
    }

    /// The token of a bearer credential (`None`: not a bearer credential).
    fn bearer<'h>(&self, value: &'h HeaderValue) -> Option<&'h [u8]> {
        let bytes = value.as_bytes();
        let p = self.bearer_prefix.as_bytes();
        match bytes.get(..p.len()) {
            Some(head) if head.eq_ignore_ascii_case(p) => Some(bytes.get(p.len()..).unwrap_or(b"")),
            _ => None,
        }
    }

    /// The bearer token of the JWT header, if one was presented.
    fn jwt(&self, headers: &HeaderMap) -> Option<Slot> {
        let invalid = |reason| {
            Some(Slot::Done(Err(fail(
                "jwt",
                reason,
                Challenge::InvalidToken,
            ))))
        };
        let value = match single(headers, &self.jwt_header) {
            Single::None => return None,
            Single::Many => return invalid("duplicate_credential"),
            Single::One(v) => v,
        };
        // Not a bearer credential (e.g. `Basic …`): another mode may own this header.
        let token = self.bearer(value)?;
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
            // An unknown kid whose refresh is under way: the asynchronous path waits.
            Err(TokenFailure::RetryAfterRefresh(_)) => {
                Slot::JwtRetry(Arc::clone(v), token.to_owned())
            }
            r => Slot::Done(jwt_outcome(r)),
        })
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
            // A bearer credential in a header shared with `jwt` is the JWT's.
            Single::One(v) if self.shared_header && self.bearer(v).is_some() => return None,
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

/// The first identity of several that all verified (configured order).
fn combine(ids: Vec<Identity>, body: Option<rampart_sig::DigestChecker>) -> Result<Combined, Fail> {
    let api_key = ids.iter().any(|i| i.method == "api_key");
    match ids.into_iter().next() {
        Some(identity) => Ok(Combined {
            identity,
            api_key,
            body,
        }),
        // Not reached (a pending request has a slot); fail closed all the same.
        None => Err(fail("none", "missing_credentials", Challenge::Bearer)),
    }
}

impl Authn {
    /// Bookkeeping of a decided authentication: metrics, the identity extension, the API
    /// key removed before forwarding (also when `api_key`: a verified key beside the
    /// credential that named the caller); the refusal on failure.
    pub(crate) fn settle<B>(
        &self,
        req: &mut Request<B>,
        result: Result<Identity, Fail>,
        api_key: bool,
    ) -> Result<(), Reject> {
        match result {
            Ok(identity) => {
                let identity = self.accepted(identity, api_key, req.headers_mut());
                req.extensions_mut().insert(identity);
                Ok(())
            }
            Err((method, reject)) => {
                self.refused(req.extensions().get::<RequestId>(), method, &reject);
                Err(reject)
            }
        }
    }

    /// [`Authn::settle`] on a request taken apart.
    pub(crate) fn settle_head(
        &self,
        head: &mut http::request::Parts,
        result: Result<Identity, Fail>,
        api_key: bool,
    ) -> Result<(), Reject> {
        match result {
            Ok(identity) => {
                let identity = self.accepted(identity, api_key, &mut head.headers);
                head.extensions.insert(identity);
                Ok(())
            }
            Err((method, reject)) => {
                self.refused(head.extensions.get::<RequestId>(), method, &reject);
                Err(reject)
            }
        }
    }

    /// An accepted caller: counted, and the API key removed from `headers` (rampart's own
    /// credential: the upstream never needs, or logs, it) when it named the caller or
    /// was verified beside the credential that did (`api_key`).
    fn accepted(
        &self,
        identity: Identity,
        api_key: bool,
        headers: &mut http::HeaderMap,
    ) -> Arc<Identity> {
        if api_key || identity.method == "api_key" {
            headers.remove(&self.api_key_header);
        }
        self.verifiers.metrics.success(identity.method);
        Arc::new(identity)
    }

    fn refused(&self, request_id: Option<&RequestId>, method: &'static str, reject: &Reject) {
        let reason = reject.reason();
        self.verifiers.metrics.failure(method, reason);
        tracing::debug!(
            request_id = request_id.map(RequestId::as_str),
            method,
            reason,
            "authentication refused"
        );
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
        match self.authenticate_now(req) {
            Ok(c) => self.settle(req, Ok(c.identity), c.api_key),
            Err(e) => self.settle(req, Err(e), false),
        }
    }
}

#[cfg(test)]
mod tests;
