//! The CSRF stage: double-submit check on routes with `csrf = { cookie, header }`.
//!
//! Guards against: another site making a logged-in browser send a state-changing request
//! (`POST`, `PUT`, `PATCH`, `DELETE`, and any other method that is not `GET`, `HEAD`,
//! `OPTIONS` or `TRACE`) that the browser decorates with the user's cookies. Such a
//! request must repeat the value of the CSRF cookie in the CSRF header, which a page of
//! another origin can neither read nor set. Trusts: the browser's cookie rules (the
//! cookie name's `__Host-` prefix, checked at load time, means browsers only accept the
//! cookie when set `Secure`, `Path=/` and without `Domain` by this very host, so a
//! sibling subdomain cannot plant one), and the application that issues the cookie
//! (random, unguessable, `SameSite=Strict`).
//!
//! Who is checked: cookie-authenticated callers, i.e. requests that carry a `Cookie`
//! header and no `Authorization` header. A bearer token or a signature is something a
//! browser never attaches by itself, so those callers cannot be forged cross-site.
//!
//! The refusal is the generic `403` problem document; the precise reason
//! (`csrf_cookie_missing`, `csrf_header_missing`, `csrf_ambiguous`, `csrf_mismatch`)
//! goes to logs, metrics and the audit record. Tokens are compared in constant time
//! (aws-lc-rs); their values are never logged.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap};
use http::{Method, Request};
use rampart_config::CsrfConfig;
use rampart_http::{Authorized, NoStage, Reject, RequestId, Resp, StageFuture};
use tower_layer::Layer;
use tower_service::Service;

/// Why a request was refused (fixed codes; never the token values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfDenial {
    /// The CSRF cookie is not in the request's cookies.
    CookieMissing,
    /// The CSRF header is absent or empty.
    HeaderMissing,
    /// The cookie or the header appears more than once.
    Ambiguous,
    /// Header and cookie differ.
    Mismatch,
}

impl CsrfDenial {
    pub fn code(self) -> &'static str {
        match self {
            Self::CookieMissing => "csrf_cookie_missing",
            Self::HeaderMissing => "csrf_header_missing",
            Self::Ambiguous => "csrf_ambiguous",
            Self::Mismatch => "csrf_mismatch",
        }
    }
}

/// Methods that must not change state (RFC 9110 §9.2.1), so need no token.
pub fn is_safe(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Is this caller authenticated by what a browser attaches on its own?
pub fn cookie_authenticated(h: &HeaderMap) -> bool {
    h.contains_key(header::COOKIE) && !h.contains_key(header::AUTHORIZATION)
}

/// The value of cookie `name` across every `Cookie` header. `Err` when it appears twice
/// (a planted duplicate must not decide which one counts).
fn cookie_value<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a [u8]>, CsrfDenial> {
    let mut found = None;
    for v in h.get_all(header::COOKIE) {
        for pair in v.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            let (k, rest) = pair.split_at(eq);
            if k.trim_ascii() != name.as_bytes() {
                continue;
            }
            if found.is_some() {
                return Err(CsrfDenial::Ambiguous);
            }
            let val = rest.get(1..).unwrap_or_default().trim_ascii();
            // RFC 6265 allows the value in double quotes.
            let val = val
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(val);
            found = Some(val);
        }
    }
    Ok(found)
}

/// The decision for one request on a route with `csrf`. Pure.
pub fn check(csrf: &CsrfConfig, method: &Method, h: &HeaderMap) -> Result<(), CsrfDenial> {
    if is_safe(method) || !cookie_authenticated(h) {
        return Ok(());
    }
    let cookie = cookie_value(h, &csrf.cookie)?
        .filter(|c| !c.is_empty())
        .ok_or(CsrfDenial::CookieMissing)?;
    let mut all = h.get_all(csrf.header.as_str()).iter();
    let sent = all
        .next()
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|v| !v.is_empty())
        .ok_or(CsrfDenial::HeaderMissing)?;
    if all.next().is_some() {
        return Err(CsrfDenial::Ambiguous);
    }
    // Constant time in the contents; only a length difference shows, and the length of a
    // random token is no secret.
    aws_lc_rs::constant_time::verify_slices_are_equal(sent, cookie)
        .map_err(|_| CsrfDenial::Mismatch)
}

/// The CSRF stage, after authorization (an unauthenticated request has already been
/// refused; the refusal here is about the request, not the caller).
#[derive(Debug, Clone, Default)]
pub struct CsrfLayer;

impl CsrfLayer {
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = Csrf<S>;
    fn layer(&self, inner: S) -> Csrf<S> {
        Csrf { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Csrf<S> {
    inner: S,
}

impl<S, B> Service<Authorized<B>> for Csrf<S>
where
    S: Service<Authorized<B>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = StageFuture<NoStage, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, a: Authorized<B>) -> Self::Future {
        let Some(csrf) = a.permit.route().config.csrf.as_ref() else {
            return StageFuture::pass(self.inner.call(a));
        };
        let req: &Request<B> = &a.request;
        if let Err(d) = check(csrf, req.method(), req.headers()) {
            let mut resp =
                Reject::Forbidden(d.code()).into_response(req.extensions().get::<RequestId>());
            // The access log and audit still learn who was refused.
            resp.extensions_mut()
                .insert(std::sync::Arc::clone(a.permit.identity_arc()));
            return StageFuture::Now { resp: Some(resp) };
        }
        StageFuture::pass(self.inner.call(a))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cfg() -> CsrfConfig {
        CsrfConfig {
            cookie: "__Host-csrf".into(),
            header: "x-csrf-token".into(),
        }
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn double_submit() {
        let c = cfg();
        let post = Method::POST;
        let ok = h(&[
            ("cookie", "session=s1; __Host-csrf=tok123"),
            ("x-csrf-token", "tok123"),
        ]);
        assert_eq!(check(&c, &post, &ok), Ok(()));
        // Cookies split across two headers (HTTP/2) count alike.
        let split = h(&[
            ("cookie", "session=s1"),
            ("cookie", "__Host-csrf=\"tok123\""),
            ("x-csrf-token", "tok123"),
        ]);
        assert_eq!(check(&c, &Method::DELETE, &split), Ok(()));
        let cases: [(&[(&'static str, &'static str)], CsrfDenial); 6] = [
            (&[("cookie", "session=s1")], CsrfDenial::CookieMissing),
            (
                &[("cookie", "session=s1; __Host-csrf="), ("x-csrf-token", "")],
                CsrfDenial::CookieMissing,
            ),
            (
                &[("cookie", "__Host-csrf=tok123")],
                CsrfDenial::HeaderMissing,
            ),
            (
                &[("cookie", "__Host-csrf=tok123"), ("x-csrf-token", "tok124")],
                CsrfDenial::Mismatch,
            ),
            (
                &[
                    ("cookie", "__Host-csrf=tok123; __Host-csrf=evil"),
                    ("x-csrf-token", "evil"),
                ],
                CsrfDenial::Ambiguous,
            ),
            (
                &[
                    ("cookie", "__Host-csrf=tok123"),
                    ("x-csrf-token", "tok123"),
                    ("x-csrf-token", "tok123"),
                ],
                CsrfDenial::Ambiguous,
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(
                check(&c, &Method::PATCH, &h(headers)),
                Err(want),
                "{headers:?}"
            );
        }
        // A cookie whose name merely ends like ours is not ours.
        let lookalike = h(&[("cookie", "x__Host-csrf=tok"), ("x-csrf-token", "tok")]);
        assert_eq!(
            check(&c, &Method::PUT, &lookalike),
            Err(CsrfDenial::CookieMissing)
        );
    }

    #[test]
    fn who_is_checked() {
        let c = cfg();
        let no_token = h(&[("cookie", "session=s1")]);
        // Safe methods pass.
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(check(&c, &m, &no_token), Ok(()));
        }
        // A caller with a bearer token is not cookie-authenticated.
        let bearer = h(&[("cookie", "session=s1"), ("authorization", "Bearer x")]);
        assert_eq!(check(&c, &Method::POST, &bearer), Ok(()));
        // No cookies at all: nothing a browser could have attached.
        assert_eq!(check(&c, &Method::POST, &HeaderMap::new()), Ok(()));
    }
}
