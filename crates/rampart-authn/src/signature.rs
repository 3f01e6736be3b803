//! The `signature` mode of `auth.modes`: RFC 9421 signed device requests, verified with
//! `rampart-sig` against the devices of the credential store.
//!
//! Guards against: forged, altered, replayed, expired or future-dated requests (the
//! verifier's policy: `@method`, `@target-uri` or `@authority`+`@path`+`@query`,
//! `content-digest` with a body, `created`, `nonce`); algorithm confusion (the algorithm
//! is the device record's, never the request's); a body altered after signing (the body
//! is checked as it streams and the last chunk is held back until the digest matched, so
//! on a mismatch the upstream request is aborted and never completes); revoked or
//! rotated-out devices (the directory holds only live credentials, each with the time it
//! lapses); client-claimed schemes (the target URI is rebuilt from the connection, or
//! `X-Forwarded-Proto` from a trusted proxy only).
//!
//! Trusts: the device directory (filled from the credential store by the sync task), the
//! nonce store, the system clock, the route stage's [`rampart_http::SentTarget`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use rampart_http::body::BoxError;
use rampart_sig::{DeviceKey, DigestChecker, KeyLookup, NonceStore, Policy, Verifier};

/// Most devices the directory holds (the store's bound, repeated where the map lives).
pub const MAX_DEVICES: usize = 100_000;

/// Who a device is, from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// The record's own rate limit (made once per sync, shared by its requests).
    pub rate_override: Option<Arc<rampart_http::RateOverride>>,
}

/// A device's live credentials: each key with the Unix time it lapses (`None`: the
/// current one, valid until rotated or revoked).
pub struct DeviceEntry {
    pub info: DeviceInfo,
    pub keys: Vec<(Arc<DeviceKey>, Option<i64>)>,
}

impl std::fmt::Debug for DeviceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceEntry")
            .field("info", &self.info)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// The devices a gateway accepts: a lock-free snapshot replaced whole by the sync task
/// (bounded by [`MAX_DEVICES`]).
#[derive(Debug, Default)]
pub struct DeviceDirectory {
    map: ArcSwap<HashMap<String, Arc<DeviceEntry>>>,
}

impl DeviceDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every entry (at most [`MAX_DEVICES`]; the rest are dropped with a
    /// warning, so they are refused rather than half-known).
    pub fn replace_all(&self, entries: impl IntoIterator<Item = (String, DeviceEntry)>) {
        let mut map = HashMap::new();
        let mut dropped = 0usize;
        for (name, e) in entries {
            if map.len() >= MAX_DEVICES {
                dropped += 1;
                continue;
            }
            map.insert(name, Arc::new(e));
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "more than {MAX_DEVICES} devices: the excess is refused"
            );
        }
        self.map.store(Arc::new(map));
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device's record, if it is live.
    pub fn get(&self, name: &str) -> Option<Arc<DeviceEntry>> {
        self.map.load().get(name).cloned()
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl KeyLookup for DeviceDirectory {
    fn keys(&self, keyid: &str) -> Vec<Arc<DeviceKey>> {
        let Some(e) = self.get(keyid) else {
            return Vec::new();
        };
        let now = now_unix();
        e.keys
            .iter()
            .filter(|(_, until)| until.is_none_or(|u| u > now))
            .map(|(k, _)| Arc::clone(k))
            .collect()
    }
}

/// The `signature` mode's verifier: device directory, nonce store, `auth.signature`.
pub struct SignatureAuth {
    pub(crate) verifier: Verifier,
    pub(crate) devices: Arc<DeviceDirectory>,
}

impl std::fmt::Debug for SignatureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureAuth")
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl SignatureAuth {
    pub fn new(devices: Arc<DeviceDirectory>, nonces: Arc<dyn NonceStore>, policy: Policy) -> Self {
        let keys: Arc<dyn KeyLookup> = Arc::clone(&devices) as Arc<dyn KeyLookup>;
        SignatureAuth {
            verifier: Verifier::new(keys, nonces, policy),
            devices,
        }
    }

    pub fn devices(&self) -> &Arc<DeviceDirectory> {
        &self.devices
    }

    /// Seconds since the epoch, for the verifier.
    pub(crate) fn now() -> u64 {
        u64::try_from(now_unix()).unwrap_or(0)
    }
}

/// The body does not match its signed `Content-Digest`: the request was aborted.
#[derive(Debug, thiserror::Error)]
#[error("request body does not match its signed Content-Digest")]
pub struct DigestMismatch;

pin_project_lite::pin_project! {
    /// The request body after authentication: passed through, or checked against a
    /// signed `Content-Digest` as it streams. When checked, the last data chunk is held
    /// back until the end of the stream and released only if the digest matched; on a
    /// mismatch the body fails instead, so the upstream request is aborted before it is
    /// complete (its head and earlier chunks may have been sent).
    pub struct AuthnBody<B> {
        #[pin]
        inner: B,
        check: Option<Box<DigestChecker>>,
        // Set: a mismatch is refused as a signature failure (counted here); unset: it is
        // a plain body error.
        metrics: Option<Arc<crate::AuthMetrics>>,
        held: Option<Bytes>,
        trailers: Option<http::HeaderMap>,
        ended: bool,
    }
}

impl<B> AuthnBody<B> {
    /// Passes `inner` through untouched.
    pub fn plain(inner: B) -> Self {
        AuthnBody {
            inner,
            check: None,
            metrics: None,
            held: None,
            trailers: None,
            ended: false,
        }
    }

    /// Checks `inner` against `checker`. With `metrics`, a mismatch fails the body with
    /// [`rampart_http::BodyRefused`] carrying the signature refusal (401 with
    /// `Accept-Signature`, counted as `digest_mismatch`), so the client is answered as for
    /// any other signature failure.
    pub fn checked(
        inner: B,
        checker: DigestChecker,
        metrics: Option<Arc<crate::AuthMetrics>>,
    ) -> Self {
        AuthnBody {
            inner,
            check: Some(Box::new(checker)),
            metrics,
            held: None,
            trailers: None,
            ended: false,
        }
    }
}

impl<B> Body for AuthnBody<B>
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
        let mut this = self.project();
        if this.check.is_none() {
            if let Some(data) = this.held.take() {
                // The digest matched at the end: release what was held, then trailers.
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if let Some(t) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            if *this.ended {
                return Poll::Ready(None);
            }
            return match std::task::ready!(this.inner.poll_frame(cx)) {
                None => Poll::Ready(None),
                Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                Some(Ok(f)) => Poll::Ready(Some(Ok(f))),
            };
        }
        loop {
            let end = match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        if let Some(c) = this.check.as_mut() {
                            c.update(&data);
                        }
                        match this.held.replace(data) {
                            Some(prev) => return Poll::Ready(Some(Ok(Frame::data(prev)))),
                            None => continue,
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body: check before anything more goes out.
                        *this.trailers = frame.into_trailers().ok();
                        true
                    }
                },
                None => true,
            };
            if end {
                *this.ended = true;
                let ok = this.check.take().is_some_and(|c| c.finish().is_ok());
                if !ok {
                    *this.held = None;
                    *this.trailers = None;
                    if let Some(metrics) = this.metrics.take() {
                        let (method, reject) = crate::fail(
                            "signature",
                            "digest_mismatch",
                            rampart_http::Challenge::Signature { body: true },
                        );
                        metrics.failure(method, "digest_mismatch");
                        return Poll::Ready(Some(Err(Box::new(rampart_http::BodyRefused(reject)))));
                    }
                    return Poll::Ready(Some(Err(Box::new(DigestMismatch))));
                }
                if let Some(data) = this.held.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(t) = this.trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                return Poll::Ready(None);
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.check.is_some() {
            return false;
        }
        self.held.is_none() && self.trailers.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.check.is_none() && self.held.is_none() && !self.ended {
            return self.inner.size_hint();
        }
        // Checked: the exact length (Content-Length) still holds while streaming; the
        // held chunk is part of it.
        let mut h = self.inner.size_hint();
        let held = self.held.as_ref().map_or(0, |b| b.len() as u64);
        h.set_lower(h.lower().saturating_add(held));
        if let Some(u) = h.upper() {
            h.set_upper(u.saturating_add(held));
        }
        h
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use rampart_sig::{DigestAlg, content_digest};

    type Chunks = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
    >;

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        let v: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(v))
    }

    async fn drain(mut b: AuthnBody<Chunks>) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        while let Some(f) = b.frame().await {
            match f {
                Ok(f) => out.extend_from_slice(&f.into_data().unwrap()),
                Err(e) => {
                    assert!(e.downcast_ref::<DigestMismatch>().is_some());
                    return (out, false);
                }
            }
        }
        (out, true)
    }

    fn checker(body: &[u8]) -> DigestChecker {
        DigestChecker::from_header(content_digest(DigestAlg::Sha256, body).as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn matching_body_streams_whole() {
        let b = AuthnBody::checked(
            chunks(&[b"hello ", b"", b"world"]),
            checker(b"hello world"),
            None,
        );
        assert_eq!(drain(b).await, (b"hello world".to_vec(), true));
    }

    #[tokio::test]
    async fn altered_body_never_yields_its_last_chunk() {
        let b = AuthnBody::checked(
            chunks(&[b"hello ", b"wor1d"]),
            checker(b"hello world"),
            None,
        );
        let (seen, ok) = drain(b).await;
        assert!(!ok);
        assert_eq!(seen, b"hello ");
        let b = AuthnBody::checked(chunks(&[b"X"]), checker(b"Y"), None);
        assert_eq!(drain(b).await, (Vec::new(), false));
    }

    #[tokio::test]
    async fn plain_passes_through() {
        let b = AuthnBody::plain(chunks(&[b"a", b"b"]));
        assert_eq!(drain(b).await, (b"ab".to_vec(), true));
    }

    proptest::proptest! {
        #[test]
        fn any_split_of_a_body_verifies_and_any_change_fails(
            body in proptest::collection::vec(proptest::num::u8::ANY, 1..300),
            cut in 0usize..300,
            flip in 0usize..300,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let cut = cut % body.len();
            let (a, b) = body.split_at(cut);
            let (a, b): (&'static [u8], &'static [u8]) =
                (Box::leak(a.to_vec().into_boxed_slice()), Box::leak(b.to_vec().into_boxed_slice()));
            let (seen, ok) = rt.block_on(drain(AuthnBody::checked(chunks(&[a, b]), checker(&body), None)));
            proptest::prop_assert!(ok);
            proptest::prop_assert_eq!(&seen, &body);
            let mut bad = body.clone();
            let i = flip % bad.len();
            bad[i] ^= 1;
            let (seen, ok) = rt.block_on(drain(AuthnBody::checked(chunks(&[a, b]), checker(&bad), None)));
            proptest::prop_assert!(!ok);
            proptest::prop_assert!(seen.len() < body.len());
        }
    }
}
