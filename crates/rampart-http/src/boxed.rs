//! [`BoxStack`]: a type-erased, cloneable stack of stages.
//!
//! The pipeline is a stack of generic services; spelled out in full, a dozen nested
//! `Service` impls (each future wrapping the next) made type checking of the crate that
//! names the whole stack take minutes and gigabytes. Erasing the inner part of the stack
//! at one point keeps the outer type short, for the price of one allocation per request
//! (the boxed future) and one per connection (the clone).
//!
//! Only for stacks that are always ready (every rampart stage is: they never apply
//! back-pressure through `poll_ready`), so `call` does not poll readiness.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::layers::Resp;

/// The boxed future of a [`BoxStack`].
pub type BoxStackFuture = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

trait CloneCall<Req>: Send + Sync {
    fn call(&mut self, req: Req) -> BoxStackFuture;
    fn clone_box(&self) -> Box<dyn CloneCall<Req>>;
}

impl<S, Req> CloneCall<Req> for S
where
    S: Service<Req, Response = Resp, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn call(&mut self, req: Req) -> BoxStackFuture {
        Box::pin(Service::call(self, req))
    }
    fn clone_box(&self) -> Box<dyn CloneCall<Req>> {
        Box::new(self.clone())
    }
}

/// A stack of stages behind one pointer.
pub struct BoxStack<Req> {
    inner: Box<dyn CloneCall<Req>>,
}

impl<Req: 'static> BoxStack<Req> {
    pub fn new<S>(svc: S) -> Self
    where
        S: Service<Req, Response = Resp, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        Self {
            inner: Box::new(svc),
        }
    }
}

impl<Req> Clone for BoxStack<Req> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone_box(),
        }
    }
}

impl<Req> std::fmt::Debug for BoxStack<Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxStack").finish_non_exhaustive()
    }
}

impl<Req> Service<Req> for BoxStack<Req> {
    type Response = Resp;
    type Error = Infallible;
    type Future = BoxStackFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> BoxStackFuture {
        self.inner.call(req)
    }
}
