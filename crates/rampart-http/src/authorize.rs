//! The authorization stage: turns an authenticated request into an [`Authorized`] one
//! carrying its [`Permit`], the only request type the forwarding stage accepts.
//!
//! Guards against: a request reaching the upstream without an identity decided by the
//! authentication stage (a missing `Arc<Identity>` on a non-public route is refused
//! with 401, never waved through). Trusts: the authentication stage, which is the only
//! writer of `Arc<Identity>` into a request's extensions (the listener and every earlier
//! stage never insert one), and the route match.
//!
//! The decision itself (scopes, roles, tenancy) is a [`RoutePolicy`] handed to the
//! layer; `rampart-authz` provides the one rampart uses. The layer stays here, beside
//! the private fields of [`Permit`], so that the permit is still made in this file and
//! nowhere else: a policy can only answer "granted, with these effective scopes" or
//! "refused, for this reason"; it never holds a `Permit` itself. Whoever assembles the
//! stack chooses the policy, exactly as they choose every other layer.
//!
//! The policy is asked afresh for every request, on the route this request matched:
//! no decision is cached, so a credential allowed on one route is checked again on every
//! other.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::layers::{Resp, Stage, StageFuture};
use crate::problem::{AuthFailure, Challenge};
use crate::router::Params;
use crate::{Authorized, Identity, Permit, Reject, RequestId, Route, RouteMatch};

/// What a [`RoutePolicy`] granted: the scopes the caller effectively holds on this
/// request (its own plus those its roles map to), which the [`Permit`] carries and the
/// forwarding stage sends as `x-rampart-scopes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub scopes: Vec<String>,
}

/// Decides whether `identity` may use `route`. Pure: no I/O, no state between calls.
/// A refusal is a fixed reason code for logs and metrics (`missing_scope`,
/// `tenant_mismatch`, ...); the client only ever sees a generic 403.
pub trait RoutePolicy: std::fmt::Debug + Send + Sync + 'static {
    fn check(
        &self,
        identity: &Identity,
        route: &Route,
        params: &Params,
    ) -> Result<Grant, &'static str>;
}

/// Makes the [`Permit`]: public routes get the anonymous identity, every other route
/// needs the identity the authentication stage inserted; then the policy decides.
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    stage: Arc<AuthorizeStage>,
    policy: Arc<dyn RoutePolicy>,
}

impl AuthorizeLayer {
    pub fn new(policy: Arc<dyn RoutePolicy>) -> Self {
        Self {
            stage: Arc::new(AuthorizeStage {
                anonymous: Arc::new(Identity::anonymous()),
            }),
            policy,
        }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            stage: Arc::clone(&self.stage),
            policy: Arc::clone(&self.policy),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    stage: Arc<AuthorizeStage>,
    policy: Arc<dyn RoutePolicy>,
}

/// Copies the caller's identity onto the response, for the access log and audit.
#[derive(Debug)]
pub struct AuthorizeStage {
    /// Shared by every request on a public route (no allocation per request).
    anonymous: Arc<Identity>,
}

impl Stage for AuthorizeStage {
    type State = Arc<Identity>;
    fn on_request<B>(&self, _req: &mut Request<B>) -> Result<Self::State, Reject> {
        Ok(Arc::clone(&self.anonymous))
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
        // A preflight was routed by the method it asks about; only the CORS stage may
        // answer it. Reaching here means the stack lacks that stage: never forward it.
        if req.extensions().get::<crate::Preflight>().is_some() {
            return StageFuture::reject(Reject::Internal, req.extensions().get::<RequestId>());
        }
        let found = req.extensions_mut().remove::<Arc<Identity>>();
        let Some(m) = req.extensions().get::<RouteMatch>() else {
            return StageFuture::reject(Reject::Internal, req.extensions().get::<RequestId>());
        };
        let route = Arc::clone(&m.route);
        let identity = match found {
            Some(id) => id,
            None if route.config.public => Arc::clone(&self.stage.anonymous),
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
        let grant = match self.policy.check(&identity, &route, &m.params) {
            Ok(g) => g,
            Err(reason) => {
                let mut resp =
                    Reject::Forbidden(reason).into_response(req.extensions().get::<RequestId>());
                // The access log and audit still learn who was refused.
                resp.extensions_mut().insert(identity);
                return StageFuture::Now { resp: Some(resp) };
            }
        };
        let permit = Permit {
            identity: Arc::clone(&identity),
            route,
            scopes: grant.scopes,
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
