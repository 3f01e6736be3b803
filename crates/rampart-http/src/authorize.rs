//! The authorization stage: turns an authenticated request into an [`Authorized`] one
//! carrying its [`Permit`], the only request type the forwarding stage accepts.
//!
//! Guards against: a request reaching the upstream without an identity decided by the
//! authentication stage (a missing `Arc<Identity>` on a non-public route is refused
//! with 401, never waved through). Trusts: the authentication stage, which is the only
//! writer of `Arc<Identity>` into a request's extensions (the listener and every earlier
//! stage never insert one), and the route match.
//!
//! Route policy (scopes, roles, tenancy) plugs in here as the authorization issue
//! builds it; today a permit follows from a route being `public` or from an identity.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::layers::{Resp, Stage, StageFuture};
use crate::problem::{AuthFailure, Challenge};
use crate::{Authorized, Identity, Permit, Reject, RequestId, RouteMatch};

/// Makes the [`Permit`]: public routes get the anonymous identity, every other route
/// needs the identity the authentication stage inserted.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeLayer {
    stage: Arc<AuthorizeStage>,
}

impl AuthorizeLayer {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            stage: Arc::clone(&self.stage),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    stage: Arc<AuthorizeStage>,
}

/// Copies the caller's identity onto the response, for the access log and audit.
#[derive(Debug, Default)]
pub struct AuthorizeStage;

impl Stage for AuthorizeStage {
    type State = Arc<Identity>;
    fn on_request<B>(&self, _req: &mut Request<B>) -> Result<Self::State, Reject> {
        Ok(Arc::new(Identity::anonymous()))
    }
    fn on_response(&self, identity: Arc<Identity>, resp: &mut Resp) {
        resp.extensions_mut().insert(identity);
    }
}

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Authorized<B>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = StageFuture<AuthorizeStage, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(m) = req.extensions().get::<RouteMatch>() else {
            return StageFuture::reject(Reject::Internal, req.extensions().get::<RequestId>());
        };
        let route = Arc::clone(&m.route);
        let identity = match req.extensions_mut().remove::<Arc<Identity>>() {
            Some(id) => id,
            None if route.config.public => Arc::new(Identity::anonymous()),
            None => {
                return StageFuture::reject(
                    Reject::Unauthenticated(AuthFailure {
                        reason: "no_identity",
                        challenge: Challenge::Bearer,
                    }),
                    req.extensions().get::<RequestId>(),
                );
            }
        };
        let permit = Permit {
            identity: Arc::clone(&identity),
            route,
        };
        StageFuture::Inner {
            fut: self.inner.call(Authorized {
                permit,
                request: req,
            }),
            after: Some((Arc::clone(&self.stage), identity)),
        }
    }
}
