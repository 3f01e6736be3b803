//! Body types: the boxed response body every stage returns, and the request body that
//! enforces a byte limit while streaming (nothing is buffered whole).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of every stage.
pub type RespBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into())
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> RespBody {
    full(Bytes::new())
}

/// Why a response body stopped before its end: the reason code the access log and
/// metrics carry (`upstream_body_timeout`, `truncated`, ...), with the cause.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {source}")]
pub struct StreamEnd {
    pub reason: &'static str,
    #[source]
    pub source: BoxError,
}

impl StreamEnd {
    /// The reason of `e` if it is a [`StreamEnd`], else `stream_error`.
    pub fn reason_of(e: &(dyn std::error::Error + 'static)) -> &'static str {
        e.downcast_ref::<Self>()
            .map_or("stream_error", |s| s.reason)
    }
}

/// Error yielded by [`LimitedBody`] once the limit would be crossed.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// A request body refused part-way by a stage before it reached its end (a signed body
/// whose `Content-Digest` does not match): the forwarding stage answers with this refusal
/// (for instance 401 with `Accept-Signature`) instead of counting an upstream error.
#[derive(Debug, thiserror::Error)]
#[error("request body refused ({})", .0.reason())]
pub struct BodyRefused(pub crate::Reject);

impl BodyRefused {
    /// The refusal carried somewhere in the source chain of `e`, if any.
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<crate::Reject> {
        let mut cur = Some(e);
        while let Some(c) = cur {
            if let Some(r) = c.downcast_ref::<BodyRefused>() {
                return Some(r.0.clone());
            }
            cur = c.source();
        }
        None
    }
}

/// Set when a [`LimitedBody`] refused to go past its limit, so the forwarding stage can
/// answer 413 instead of 502 when the upstream request fails because of it.
#[derive(Debug, Clone, Default)]
pub struct BodyLimitTripped(Arc<AtomicBool>);

impl BodyLimitTripped {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

pin_project_lite::pin_project! {
    /// Streams the inner body and fails before yielding the chunk that would take the
    /// total past `limit`: the upstream never sees a byte of the excess.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
        tripped: BodyLimitTripped,
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: u64, tripped: BodyLimitTripped) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            tripped,
        }
    }
}

impl<B> Body for LimitedBody<B>
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
        match this.inner.poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > *this.remaining {
                        this.tripped.set();
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: *this.limit,
                        }))));
                    }
                    *this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut h = self.inner.size_hint();
        if h.lower() > self.remaining {
            // Will fail; do not promise more than we will send.
            h.set_lower(self.remaining);
        }
        if h.upper().is_some_and(|u| u > self.remaining) || h.upper().is_none() {
            // Unknown or too large: let the client use chunked framing.
            return SizeHint::with_exact(0).max_unknown(h.lower());
        }
        h
    }
}

trait SizeHintExt {
    fn max_unknown(self, lower: u64) -> SizeHint;
}
impl SizeHintExt for SizeHint {
    fn max_unknown(self, lower: u64) -> SizeHint {
        let mut h = SizeHint::new();
        h.set_lower(lower);
        h
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    struct Chunks(VecDeque<&'static [u8]>);
    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            )
        }
    }
    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().copied().collect())
    }

    #[tokio::test]
    async fn passes_bodies_within_the_limit() {
        let t = BodyLimitTripped::default();
        let b = LimitedBody::new(chunks(&[b"abc", b"de"]), 5, t.clone());
        let out = b.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"abcde");
        assert!(!t.is_set());
    }

    #[tokio::test]
    async fn stops_before_the_chunk_that_crosses() {
        let t = BodyLimitTripped::default();
        let mut b = LimitedBody::new(chunks(&[b"abc", b"def"]), 5, t.clone());
        let first = b.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"abc");
        let err = b.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTooLarge>());
        assert!(t.is_set());
    }
}
