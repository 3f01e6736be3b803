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
use rampart_sig::RequestParts;
use tower_layer::Layer;
use tower_service::Service;

use crate::signature::{AuthnBody, SignatureAuth};
use crate::{Authn, Resolved, fail};

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
            Resolved::Done(result) => match self.authn.settle(&mut req, result) {
                Ok(()) => AuthnFuture::Inner {
                    fut: self.inner.call(req.map(AuthnBody::plain)),
                },
                Err(r) => reject(r, &req),
            },
            Resolved::JwtRetry(verifier, token) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let authn = Arc::clone(&self.authn);
                AuthnFuture::Signed {
                    fut: Box::pin(async move {
                        let result = crate::jwt_outcome(verifier.verify_wait(&token).await)
                            .and_then(|id| authn.check_revoked(id));
                        drop(token);
                        match authn.settle(&mut req, result) {
                            Ok(()) => inner.call(req.map(AuthnBody::plain)).await,
                            Err(r) => Ok(r.into_response(req.extensions().get::<RequestId>())),
                        }
                    }),
                }
            }
            Resolved::Signature(sig) => {
                // The ready service goes with the request; a clone stays for the next.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let authn = Arc::clone(&self.authn);
                AuthnFuture::Signed {
                    fut: Box::pin(async move {
                        match verify(&authn, &sig, req).await {
                            Ok(req) => inner.call(req).await,
                            Err((r, id)) => Ok(r.into_response(id.as_ref())),
                        }
                    }),
                }
            }
        }
    }
}

/// The scheme the target URI is rebuilt with: the connection's, or `X-Forwarded-Proto`
/// (one value, `http` or `https`) from a trusted proxy.
fn scheme_of(head: &http::request::Parts, trusted: &[ipnet::IpNet]) -> &'static str {
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

async fn verify<B>(
    authn: &Authn,
    sig: &SignatureAuth,
    req: Request<B>,
) -> Result<Request<AuthnBody<B>>, (Reject, Option<RequestId>)>
where
    B: Body<Data = Bytes>,
{
    let (mut head, body) = req.into_parts();
    let has_body = !body.is_end_stream()
        || head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let challenge = rampart_http::Challenge::Signature { body: has_body };
    let refuse = |head: &http::request::Parts, reason: &'static str| {
        let (method, r) = fail("signature", reason, challenge);
        authn.verifiers.metrics.failure(method, reason);
        tracing::debug!(
            request_id = head.extensions.get::<RequestId>().map(RequestId::as_str),
            method,
            reason,
            "authentication refused"
        );
        (r, head.extensions.get::<RequestId>().cloned())
    };
    let scheme = scheme_of(&head, authn.trusted_proxies());
    let outcome = {
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
        match (authority, target) {
            (Some(authority), Some(target)) => {
                let parts = RequestParts {
                    method: head.method.as_str(),
                    scheme,
                    authority,
                    target,
                    headers: &head.headers,
                };
                sig.verifier
                    .verify(&parts, has_body, SignatureAuth::now())
                    .await
                    .map_err(|r| r.reason())
            }
            _ => Err("signature_component"),
        }
    };
    let verified = match outcome {
        Ok(v) => v,
        Err(reason) => return Err(refuse(&head, reason)),
    };
    let Some(device) = sig.devices.get(&verified.keyid) else {
        // Revoked between the key lookup and now.
        return Err(refuse(&head, "signature_unknown_key"));
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
    let identity = match authn.check_revoked(identity) {
        Ok(i) => i,
        Err(_) => return Err(refuse(&head, "revoked")),
    };
    authn.verifiers.metrics.success("signature");
    head.extensions.insert(Arc::new(identity));
    let body = match verified.body {
        // A body that turns out not to match is refused like any other signature.
        Some(checker) if has_body => {
            AuthnBody::checked(body, checker, Some(Arc::clone(&authn.verifiers.metrics)))
        }
        _ => AuthnBody::plain(body),
    };
    Ok(Request::from_parts(head, body))
}
