//! The authentication stage as a tower layer. JWT, API-key, mTLS and proxy identities
//! are decided synchronously (the future is ready at once: no boxing, no allocation);
//! a signed request (RFC 9421) needs the nonce store and wraps the body in a
//! [`AuthnBody`] digest check, so it takes the boxed asynchronous path.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use rampart_http::Resp;
use rampart_http::body::BoxError;
use rampart_http::{ConnInfo, Identity, Reject, RequestId, SentTarget, is_trusted};
use rampart_sig::{DigestChecker, RequestParts};
use tower_layer::Layer;
use tower_service::Service;

use crate::signature::{AuthnBody, SignatureAuth};
use crate::{Authn, Head, Resolved, Slot};

/// The layer: `AuthnLayer::from_stage(Authn::new(..)?)`.
#[derive(Debug, Clone)]
pub struct AuthnLayer {
    authn: Arc<Authn>,
}

impl AuthnLayer {
    pub fn from_stage(authn: Authn) -> Self {
        Self {
            authn: Arc::new(authn),
        }
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = AuthnService<S>;
    fn layer(&self, inner: S) -> AuthnService<S> {
        AuthnService {
            authn: Arc::clone(&self.authn),
            inner,
        }
    }
}

/// The service of [`AuthnLayer`]; hands the inner service `Request<AuthnBody<B>>`.
#[derive(Debug, Clone)]
pub struct AuthnService<S> {
    authn: Arc<Authn>,
    inner: S,
}

pin_project_lite::pin_project! {
    /// Answered now, the inner service's future, or a signed request being verified.
    #[project = AuthnFutureProj]
    pub enum AuthnFuture<F> {
        Now { resp: Option<Resp> },
        Inner { #[pin] fut: F },
        Signed { fut: Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>> },
    }
}

impl<F> Future for AuthnFuture<F>
where
    F: Future<Output = Result<Resp, Infallible>>,
{
    type Output = Result<Resp, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthnFutureProj::Now { resp } => Poll::Ready(Ok(resp
                .take()
                .unwrap_or_else(|| Reject::Internal.into_response(None)))),
            AuthnFutureProj::Inner { fut } => fut.poll(cx),
            AuthnFutureProj::Signed { fut } => fut.as_mut().poll(cx),
        }
    }
}

impl<S, B> Service<Request<B>> for AuthnService<S>
where
    S: Service<Request<AuthnBody<B>>, Response = Resp, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = AuthnFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let reject = |r: Reject, req: &Request<B>| AuthnFuture::Now {
            resp: Some(r.into_response(req.extensions().get::<RequestId>())),
        };
        match Authn::is_public(&req) {
            Err(r) => return reject(r, &req),
            Ok(true) => {
                return AuthnFuture::Inner {
                    fut: self.inner.call(req.map(AuthnBody::plain)),
                };
            }
            Ok(false) => {}
        }
        match self.authn.resolve(&req) {
            Resolved::Done(result) => match self.authn.settle(&mut req, result, false) {
                Ok(()) => AuthnFuture::Inner {
                    fut: self.inner.call(req.map(AuthnBody::plain)),
                },
                Err(r) => reject(r, &req),
            },
            // Several credentials, all decided from memory: no waiting.
            Resolved::Pending(slots) if slots.iter().all(Slot::is_done) => {
                let settled = match crate::Authn::complete_now(slots) {
                    Ok(c) => self.authn.settle(&mut req, Ok(c.identity), c.api_key),
                    Err(e) => self.authn.settle(&mut req, Err(e), false),
                };
                match settled {
                    Ok(()) => AuthnFuture::Inner {
                        fut: self.inner.call(req.map(AuthnBody::plain)),
                    },
                    Err(r) => reject(r, &req),
                }
            }
            Resolved::Pending(slots) => {
                // The ready service goes with the request; a clone stays for the next.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let authn = Arc::clone(&self.authn);
                AuthnFuture::Signed {
                    fut: Box::pin(async move {
                        let (mut head, body) = req.into_parts();
                        let has_body = has_body(&head, &body);
                        let outcome = authn.complete(slots, Head::of_parts(&head), has_body).await;
                        let (settled, check) = match outcome {
                            Ok(c) => (
                                authn.settle_head(&mut head, Ok(c.identity), c.api_key),
                                c.body,
                            ),
                            Err(e) => (authn.settle_head(&mut head, Err(e), false), None),
                        };
                        if let Err(r) = settled {
                            return Ok(r.into_response(head.extensions.get::<RequestId>()));
                        }
                        let body = match check {
                            // A body that turns out not to match is refused like any
                            // other signature.
                            Some(checker) if has_body => {
                                AuthnBody::checked(body, checker, Some(Arc::clone(authn.metrics())))
                            }
                            _ => AuthnBody::plain(body),
                        };
                        inner.call(Request::from_parts(head, body)).await
                    }),
                }
            }
        }
    }
}

/// Whether the request carries content (then `content-digest` must be signed).
fn has_body<B: Body>(head: &http::request::Parts, body: &B) -> bool {
    !body.is_end_stream()
        || head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// The scheme the target URI is rebuilt with: the connection's, or `X-Forwarded-Proto`
/// (one value, `http` or `https`) from a trusted proxy.
fn scheme_of(head: Head<'_>, trusted: &[ipnet::IpNet]) -> &'static str {
    let conn = head.extensions.get::<ConnInfo>();
    let tls = conn.is_some_and(|c| c.tls.is_some());
    if conn.is_some_and(|c| is_trusted(trusted, c.peer.ip())) {
        let mut it = head.headers.get_all("x-forwarded-proto").iter();
        if let (Some(v), None) = (it.next(), it.next()) {
            if v.as_bytes().eq_ignore_ascii_case(b"https") {
                return "https";
            }
            if v.as_bytes().eq_ignore_ascii_case(b"http") {
                return "http";
            }
        }
    }
    if tls { "https" } else { "http" }
}

/// Verifies the request's signature (RFC 9421) against the device directory and the
/// nonce store: the device's identity and, when `content-digest` is covered, the check
/// the body must pass; else the reason of the refusal.
pub(crate) async fn verify_signature(
    authn: &Authn,
    sig: &SignatureAuth,
    head: Head<'_>,
    has_body: bool,
) -> Result<(Identity, Option<DigestChecker>), &'static str> {
    let scheme = scheme_of(head, authn.trusted_proxies());
    let authority = match head.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    };
    let target = match head.extensions.get::<SentTarget>() {
        Some(t) => Some(t.0.as_str()),
        None => head
            .uri
            .path_and_query()
            .map(http::uri::PathAndQuery::as_str),
    };
    let (Some(authority), Some(target)) = (authority, target) else {
        return Err("signature_component");
    };
    let parts = RequestParts {
        method: head.method.as_str(),
        scheme,
        authority,
        target,
        headers: head.headers,
    };
    let verified = sig
        .verifier
        .verify(&parts, has_body, SignatureAuth::now())
        .await
        .map_err(|r| r.reason())?;
    let Some(device) = sig.devices.get(&verified.keyid) else {
        // Revoked between the key lookup and now.
        return Err("signature_unknown_key");
    };
    let identity = Identity {
        method: "signature",
        subject: Some(verified.keyid.clone()),
        tenant: device.info.tenant.clone(),
        scopes: device.info.scopes.clone(),
        roles: device.info.roles.clone(),
        credential_id: Some(verified.keyid),
        rate_override: device.info.rate_override.clone(),
    };
    let identity = authn.check_revoked(identity).map_err(|_| "revoked")?;
    Ok((identity, verified.body))
}
