//! The https-upstream side of the forwarding stage (hyper's client): the same bounds the
//! plain-http exchange (`crate::upstream`) enforces, around a client we do not drive.
//!
//! Guards against: an https upstream that sends part of a response body and stalls (the
//! body fails after `upstream_body_idle_timeout_ms`, the connection is dropped, the client
//! is cut short); a client that stops sending its upload (408 after
//! `client_body_idle_timeout_ms`); a flood that would open a connection per request to one
//! upstream (at most `max_connections` exchanges in flight, each holding a place until its
//! response body ends; the next waits `queue_timeout_ms`, then 503 `upstream_busy`); a
//! client that cancels its request (an HTTP/2 stream reset, a disconnect) costing the
//! upstream connection: hyper's client closes a connection whose exchange is dropped
//! unfinished, so an abandoned exchange ([`Pending`], [`ResponseBody`]) is finished in
//! the background instead, within the plain path's rescue bounds, and the connection
//! goes back to hyper's pool (paced rapid reset).
//! Trusts: hyper's client for HTTP framing and connection reuse, rustls for TLS.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{CaptureConnection, Connect, capture_connection};
use hyper_util::client::legacy::{Client, ResponseFuture};
use rampart_http::{BoxError, RespBody, StreamEnd};
use tokio::sync::OwnedSemaphorePermit;

use crate::upstream::{RESCUE_MAX_BODY, RESCUE_WITHIN};

/// What became of a request body wrapped in [`IdleBody`] (read after a failed exchange
/// to tell the client's fault from the upstream's).
#[derive(Debug, Default)]
pub struct BodyFate(AtomicU8);

impl BodyFate {
    const OK: u8 = 0;
    const IDLE: u8 = 1;
    const BROKEN: u8 = 2;

    pub fn timed_out(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::IDLE
    }

    pub fn broken(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::BROKEN
    }

    fn set(&self, v: u8) {
        let _ = self
            .0
            .compare_exchange(Self::OK, v, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The client's body went silent for longer than its idle deadline.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct Idle(pub Duration);

pin_project_lite::pin_project! {
    /// A body whose silences are bounded: after `idle` without a frame it fails. Holds the
    /// upstream's connection place (if any) until it ends, fails or is dropped.
    pub struct IdleBody<B> {
        #[pin]
        inner: B,
        idle: Duration,
        // Armed the first time the body waits; pushed back on every frame.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        // Response side: the reason code the failure carries (`upstream_body_timeout`,
        // `upstream_io_error`). Request side: `None`, and `fate` records what happened.
        reasons: Option<(&'static str, &'static str)>,
        fate: Option<Arc<BodyFate>>,
        permit: Option<OwnedSemaphorePermit>,
        done: bool,
    }
}

impl<B> IdleBody<B> {
    /// The client's request body, on its way to an https upstream.
    pub fn request(inner: B, idle: Duration, fate: Arc<BodyFate>) -> Self {
        Self {
            inner,
            idle,
            deadline: None,
            reasons: None,
            fate: Some(fate),
            permit: None,
            done: false,
        }
    }

    /// An https upstream's response body, on its way to the client.
    pub fn response(inner: B, idle: Duration, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            inner,
            idle,
            deadline: None,
            reasons: Some(("upstream_body_timeout", "upstream_io_error")),
            fate: None,
            permit,
            done: false,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = this.deadline.as_mut() {
                    d.as_mut().reset(tokio::time::Instant::now() + *this.idle);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.done = true;
                *this.permit = None;
                if let Some(f) = this.fate {
                    f.set(BodyFate::BROKEN);
                }
                let e: BoxError = e.into();
                Poll::Ready(Some(Err(match this.reasons {
                    Some((_, io)) => Box::new(StreamEnd {
                        reason: io,
                        source: e,
                    }),
                    None => e,
                })))
            }
            Poll::Ready(None) => {
                *this.done = true;
                *this.permit = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = *this.idle;
                let d = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if d.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.done = true;
                *this.permit = None;
                if let Some(f) = this.fate {
                    f.set(BodyFate::IDLE);
                }
                let e: BoxError = Box::new(Idle(idle));
                Poll::Ready(Some(Err(match this.reasons {
                    Some((timeout, _)) => Box::new(StreamEnd {
                        reason: timeout,
                        source: e,
                    }),
                    None => e,
                })))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// hyper's exchange with an https upstream while its response head is awaited, with the
/// exchange's place under the upstream's cap. Dropped unfinished (the client reset its
/// stream or went away) after the request went to a connection, it is not cancelled,
/// which would close the connection, but finished in the background: the answer is read
/// and discarded, the connection goes back to hyper's pool, and the place is held until
/// then. Dropped before that, it is simply cancelled (nothing was sent).
pub struct Pending {
    fut: Option<ResponseFuture>,
    /// Set by hyper's client when the request is handed to a connection.
    sent: CaptureConnection,
    permit: Option<OwnedSemaphorePermit>,
    /// The response body's idle deadline, kept while an abandoned answer is read.
    idle: Duration,
}

impl Pending {
    /// Sends `req` through `client`.
    pub fn send<C>(
        client: &Client<C, RespBody>,
        mut req: http::Request<RespBody>,
        permit: Option<OwnedSemaphorePermit>,
        idle: Duration,
    ) -> Self
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let sent = capture_connection(&mut req);
        Self {
            fut: Some(client.request(req)),
            sent,
            permit,
            idle,
        }
    }
}

type Answer = (
    Result<http::Response<Incoming>, hyper_util::client::legacy::Error>,
    Option<OwnedSemaphorePermit>,
);

impl std::future::Future for Pending {
    /// The answer, and the place (to be held until its body ends).
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let Some(fut) = self.fut.as_mut() else {
            // Polled after completion: nothing more will come.
            return Poll::Pending;
        };
        let r = std::task::ready!(Pin::new(fut).poll(cx));
        self.fut = None;
        Poll::Ready((r, self.permit.take()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take()
            && self.sent.connection_metadata().is_some()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let permit = self.permit.take();
            let idle = self.idle;
            rt.spawn(async move {
                // Past RESCUE_WITHIN the future is dropped, and hyper closes the connection.
                let _ = tokio::time::timeout(RESCUE_WITHIN, async move {
                    if let Ok(resp) = fut.await {
                        drain(IdleBody::response(resp.into_body(), idle, permit)).await;
                    }
                })
                .await;
            });
        }
    }
}

/// An https upstream's response body on its way to the client (its idle deadline and
/// place under the cap in [`IdleBody`]). Dropped before its end (the client went away),
/// the rest is read in the background, as [`Pending`] does, so that hyper pools the
/// connection; a body that failed (stalled, broken) is dropped at once.
pub struct ResponseBody {
    inner: Option<IdleBody<Incoming>>,
}

impl ResponseBody {
    pub fn new(inner: IdleBody<Incoming>) -> Self {
        Self { inner: Some(inner) }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let r = std::task::ready!(Pin::new(inner).poll_frame(cx));
        if !matches!(r, Some(Ok(_))) {
            // Ended or failed: the connection is released (pooled or closed) now.
            self.inner = None;
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !inner.is_end_stream()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = tokio::time::timeout(RESCUE_WITHIN, drain(inner)).await;
            });
        }
    }
}

/// Reads an abandoned response body to its end without keeping it (so that hyper pools
/// its connection); gives up on a body longer than [`RESCUE_MAX_BODY`] or broken, which
/// closes the connection. `true` when the end was read.
async fn drain<B>(mut body: B) -> bool
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > RESCUE_MAX_BODY {
        return false;
    }
    let mut seen = 0u64;
    while let Some(f) = body.frame().await {
        let Ok(f) = f else {
            return false;
        };
        if let Some(d) = f.data_ref() {
            seen = seen.saturating_add(d.len() as u64);
            if seen > RESCUE_MAX_BODY {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// `frames` data frames, each after `gap`, then silence for ever (or the end).
    struct Script {
        frames: u8,
        gap: Duration,
        then_end: bool,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.frames == 0 {
                return if self.then_end {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
            let gap = self.gap;
            let s = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
            self.frames -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    fn stalled() -> Script {
        Script {
            frames: 1,
            gap: Duration::ZERO,
            then_end: false,
            sleep: None,
        }
    }

    /// `n` frames of 64 KiB, of unknown total length; fails instead of ending if `fail`.
    struct Chunks {
        n: u32,
        fail: bool,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.n == 0 {
                return Poll::Ready(self.fail.then(|| Err("broken".into())));
            }
            self.n -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))))
        }
    }

    #[tokio::test]
    async fn an_abandoned_body_is_drained_only_if_short_and_sound() {
        assert!(drain(http_body_util::Full::new(Bytes::from_static(b"rest"))).await);
        assert!(drain(Chunks { n: 4, fail: false }).await, "256 KiB is read");
        assert!(!drain(Chunks { n: 5, fail: false }).await, "more is not");
        assert!(
            !drain(Chunks { n: 1, fail: true }).await,
            "a broken body is not"
        );
        // A declared length over the bound is not even started.
        let long = Bytes::from(vec![0u8; 256 * 1024 + 1]);
        assert!(!drain(http_body_util::Full::new(long)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_response_body_fails_with_its_reason_and_frees_its_place() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = Arc::clone(&slots).try_acquire_owned().unwrap();
        let mut b = IdleBody::response(stalled(), Duration::from_millis(50), Some(permit));
        let first = b.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "x");
        assert_eq!(slots.available_permits(), 0);
        let e = b.frame().await.unwrap().unwrap_err();
        let end = e.downcast_ref::<StreamEnd>().unwrap();
        assert_eq!(end.reason, "upstream_body_timeout");
        assert_eq!(
            slots.available_permits(),
            1,
            "the place is released at once"
        );
        assert!(b.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_request_body_records_its_fate() {
        let fate = Arc::new(BodyFate::default());
        let mut b = IdleBody::request(stalled(), Duration::from_millis(50), Arc::clone(&fate));
        assert!(b.frame().await.unwrap().is_ok());
        assert!(!fate.timed_out());
        assert!(b.frame().await.unwrap().is_err());
        assert!(fate.timed_out() && !fate.broken());
    }

    #[tokio::test(start_paused = true)]
    async fn progress_pushes_the_deadline_back_and_the_end_frees_the_place() {
        // Five frames 40 ms apart under a 50 ms idle deadline: never idle that long.
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = Arc::clone(&slots).try_acquire_owned().unwrap();
        let s = Script {
            frames: 5,
            gap: Duration::from_millis(40),
            then_end: true,
            sleep: None,
        };
        let b = IdleBody::response(s, Duration::from_millis(50), Some(permit));
        let all = b.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"xxxxx");
        assert_eq!(slots.available_permits(), 1);
    }
}
