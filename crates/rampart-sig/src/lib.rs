//! RFC 9421 HTTP Message Signatures for signed device requests, with RFC 9530
//! `Content-Digest`.
//!
//! What it guards against: a request altered in transit or forged without the device's key
//! (the signature covers method, target URI and, with a body, its digest); a captured request
//! replayed (`nonce` remembered until `created + max_age`, `created` bounded both ways); a
//! client choosing a weaker or different algorithm (the algorithm is the device's; an `alg`
//! parameter that disagrees is refused); signatures that quietly cover too little (a fixed
//! minimum set of components); canonicalization games (`@signature-params` is the received
//! `Signature-Input` member byte for byte, see [`sf`]).
//!
//! What it trusts: the gateway's view of the connection (scheme, `Host`/`:authority`, the
//! request target as received), the key lookup (the credential store), the clock passed in,
//! and the nonce store.
//!
//! Wiring into the gateway (the `signature` entry of `auth.modes`):
//! - Build [`RequestParts`] from the request as received ([`RequestParts::from_request`]
//!   with the connection's scheme, or `X-Forwarded-Proto` from a trusted proxy). Only
//!   origin-form targets are accepted (`*` and absolute-form are refused).
//! - Pass `has_body` = the request has content (non-zero `Content-Length`, chunked, or
//!   HTTP/2 DATA). With a body, `content-digest` must be covered and [`Verified::body`] is a
//!   [`DigestChecker`]: feed it every chunk as it streams upstream and, when
//!   [`DigestChecker::finish`] fails, abort the upstream request (never complete it).
//! - [`KeyLookup`] is the credential store's device cache (several keys during a rotation
//!   overlap); [`MemoryNonceStore`] or [`RedisNonceStore`] per `auth.signature.nonce_store`.
//! - Answer every [`Refusal`] with the same 401 detail plus an `Accept-Signature` from
//!   [`accept_signature`]; log [`Refusal::reason`]. [`Refusal::NonceStore`] is the gateway's
//!   fault (Redis down, store full) but is refused all the same.
//! - The clock is passed in (`now`), never read here.
//!
//! Typical use, after the gateway's header checks:
//!
//! ```
//! # use std::sync::Arc;
//! # use rampart_sig::*;
//! # async fn run() -> Result<(), Refusal> {
//! let mut keys = StaticKeys::new();
//! keys.insert("sensor-7", DeviceKey::hmac(&[7u8; 32]).unwrap());
//! let verifier = Verifier::new(
//!     Arc::new(keys),
//!     Arc::new(MemoryNonceStore::new(100_000)),
//!     Policy { max_age_s: 300 },
//! );
//! let mut headers = http::HeaderMap::new();
//! headers.insert("host", "api.example.com".parse().unwrap());
//! let mut req = RequestParts {
//!     method: "GET", scheme: "https", authority: "api.example.com",
//!     target: "/jobs?id=1", headers: &headers,
//! };
//! // What a device does:
//! let fields = sign(&req, &SignParams {
//!     label: "sig1", components: &[Component::Method, Component::TargetUri],
//!     created: 1_700_000_000, expires: None, nonce: Some("n-1"),
//!     keyid: "sensor-7", include_alg: true,
//! }, &SigningKey::hmac(&[7u8; 32])).unwrap();
//! let mut signed = headers.clone();
//! signed.insert("signature-input", fields.input.parse().unwrap());
//! signed.insert("signature", fields.signature.parse().unwrap());
//! req.headers = &signed;
//! // What the gateway does:
//! let ok = verifier.verify(&req, false, 1_700_000_010).await?;
//! assert_eq!(ok.keyid, "sensor-7");
//! // The same request again is a replay.
//! assert_eq!(verifier.verify(&req, false, 1_700_000_011).await.unwrap_err(), Refusal::Replay);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
//! ```

#![forbid(unsafe_code)]

pub mod base;
pub mod digest;
pub mod keys;
pub mod nonce;
pub mod sf;
pub mod sign;
pub mod verify;

pub use base::{BaseError, Component, RequestParts};
pub use digest::{DigestAlg, DigestChecker, DigestError, content_digest};
pub use keys::{Algorithm, DeviceKey, KeyError};
pub use nonce::{MemoryNonceStore, NonceError, NonceOutcome, NonceStore, RedisNonceStore};
pub use sign::{SignParams, SignatureFields, SigningKey, accept_signature, sign};
pub use verify::{KeyLookup, Policy, Refusal, StaticKeys, Verified, Verifier};
