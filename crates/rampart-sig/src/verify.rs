//! The verification policy for signed device requests.
//!
//! Order matters: everything that needs no key (parsing, required components, `created`)
//! is checked first; the signature next; the nonce is recorded only after the signature
//! verified, so a stranger cannot burn a device's nonces or fill the store.

use std::sync::Arc;

use crate::base::{self, BaseError, Component, RequestParts};
use crate::digest::{DigestChecker, DigestError};
use crate::keys::{Algorithm, DeviceKey};
use crate::nonce::{NonceError, NonceOutcome, NonceStore};
use crate::sf::{self, BareItem, Member};

/// Most signatures considered in one request.
pub const MAX_SIGNATURES: usize = 4;
/// Longest `keyid` (a device name) accepted.
pub const MAX_KEYID: usize = 128;
/// Longest `nonce` accepted.
pub const MAX_NONCE: usize = 256;
/// How far in the future `created` may lie (clock skew between device and gateway).
pub const MAX_FUTURE_S: u64 = 60;

/// Finds the keys a device may sign with now: usually one, two during a rotation overlap,
/// none for an unknown or revoked device. Implemented over the credential store's cached
/// device list; must not block (no I/O on the request path).
pub trait KeyLookup: Send + Sync {
    /// The keys of the device named `keyid`.
    fn keys(&self, keyid: &str) -> Vec<Arc<DeviceKey>>;
}

/// Why a signed request was refused. Every variant but [`Refusal::NonceStore`] is the
/// client's fault; the gateway answers all of them with one generic 401 detail, and may log
/// [`Refusal::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Signature-Input` or `Signature` field.
    #[error("no signature")]
    Missing,
    /// A field that does not parse, a member of the wrong type, labels that do not pair,
    /// a parameter of the wrong type or unknown.
    #[error("malformed signature fields")]
    Malformed,
    /// More than [`MAX_SIGNATURES`] signatures.
    #[error("too many signatures")]
    TooMany,
    /// The covered components do not satisfy the policy (`@method`; `@target-uri` or
    /// `@authority`+`@path`+`@query`; `content-digest` with a body).
    #[error("required components not covered")]
    NotCovered,
    /// A covered component could not be resolved.
    #[error("component: {0}")]
    Component(#[from] BaseError),
    /// `created`, `nonce` or `keyid` absent.
    #[error("required signature parameter missing")]
    MissingParam,
    /// `created` older than the maximum age, or `expires` passed.
    #[error("signature expired")]
    Expired,
    /// `created` more than [`MAX_FUTURE_S`] ahead.
    #[error("signature from the future")]
    Future,
    /// No device of that `keyid`.
    #[error("unknown key")]
    UnknownKey,
    /// An `alg` parameter that is not the device's algorithm.
    #[error("algorithm mismatch")]
    AlgMismatch,
    /// The signature does not verify under any of the device's keys.
    #[error("bad signature")]
    BadSignature,
    /// The nonce was already used.
    #[error("replayed nonce")]
    Replay,
    /// `Content-Digest` malformed or of unsupported algorithms only.
    #[error("content digest: {0}")]
    Digest(#[from] DigestError),
    /// The nonce store could not answer (gateway side); refused all the same.
    #[error("nonce store: {0}")]
    NonceStore(NonceError),
}

impl Refusal {
    /// A stable short code for audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "signature_missing",
            Refusal::Malformed => "signature_malformed",
            Refusal::TooMany => "signature_too_many",
            Refusal::NotCovered => "signature_components",
            Refusal::Component(_) => "signature_component",
            Refusal::MissingParam => "signature_param_missing",
            Refusal::Expired => "signature_expired",
            Refusal::Future => "signature_future",
            Refusal::UnknownKey => "signature_unknown_key",
            Refusal::AlgMismatch => "signature_alg_mismatch",
            Refusal::BadSignature => "signature_invalid",
            Refusal::Replay => "signature_replay",
            Refusal::Digest(DigestError::Mismatch) => "digest_mismatch",
            Refusal::Digest(_) => "digest_malformed",
            Refusal::NonceStore(_) => "nonce_store_unavailable",
        }
    }
}

/// Settings of `[auth.signature]`.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `auth.signature.max_age_s`: oldest `created` accepted, and how long nonces live.
    pub max_age_s: u64,
}

/// A request whose signature verified and whose nonce was fresh.
#[derive(Debug)]
pub struct Verified {
    /// The device (`keyid`).
    pub keyid: String,
    /// The signature's label in the dictionaries.
    pub label: String,
    /// The device's algorithm.
    pub alg: Algorithm,
    /// `created`, Unix seconds.
    pub created: u64,
    /// The components the signature covers.
    pub covered: Vec<Component>,
    /// When `content-digest` is covered: the checker the body must pass, chunk by chunk,
    /// before the request may complete upstream.
    pub body: Option<DigestChecker>,
}

/// A signature that verified but whose nonce is not yet recorded.
#[derive(Debug)]
struct Checked {
    verified: Verified,
    nonce: String,
}

/// Verifies signed requests against a key lookup and a nonce store.
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<dyn KeyLookup>,
    nonces: Arc<dyn NonceStore>,
    policy: Policy,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn field_value(req: &RequestParts<'_>, name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut any = false;
    for v in req.headers.get_all(name) {
        if any {
            out.extend_from_slice(b", ");
        }
        any = true;
        out.extend_from_slice(v.as_bytes());
    }
    any.then_some(out)
}

impl Verifier {
    /// A verifier.
    pub fn new(keys: Arc<dyn KeyLookup>, nonces: Arc<dyn NonceStore>, policy: Policy) -> Self {
        Verifier {
            keys,
            nonces,
            policy,
        }
    }

    /// Verify `req` at time `now` (Unix seconds). `has_body` says whether the request
    /// carries content (a non-zero `Content-Length`, chunked framing, or HTTP/2 DATA):
    /// then `content-digest` must be covered, and the returned [`Verified::body`] must be
    /// fed the body and pass before the request is allowed to complete.
    pub async fn verify(
        &self,
        req: &RequestParts<'_>,
        has_body: bool,
        now: u64,
    ) -> Result<Verified, Refusal> {
        let mut all = self.check(req, has_body, now)?.into_iter();
        let Some(first) = all.next() else {
            return Err(Refusal::Missing);
        };
        // Every signature's nonce is spent: otherwise the same request, replayed with one
        // of its other signatures alone, would verify again.
        for c in std::iter::once(&first).chain(all.as_slice()) {
            let until = c.verified.created.saturating_add(self.policy.max_age_s);
            match self
                .nonces
                .remember(&c.verified.keyid, &c.nonce, now, until)
                .await
            {
                Ok(NonceOutcome::Fresh) => {}
                Ok(NonceOutcome::Replay) => return Err(Refusal::Replay),
                Err(e) => return Err(Refusal::NonceStore(e)),
            }
        }
        Ok(first.verified)
    }

    /// Everything but the nonce store, for every signature the request carries: each one
    /// must pass (a bad signature is never excused by a good one beside it, as for every
    /// other credential); the caller is the first in `Signature-Input` order. Otherwise
    /// the first refusal in that order is returned.
    fn check(
        &self,
        req: &RequestParts<'_>,
        has_body: bool,
        now: u64,
    ) -> Result<Vec<Checked>, Refusal> {
        let input = field_value(req, "signature-input").ok_or(Refusal::Missing)?;
        let sigs = field_value(req, "signature").ok_or(Refusal::Missing)?;
        let input = sf::parse_dictionary(&input).map_err(|_| Refusal::Malformed)?;
        let sigs = sf::parse_dictionary(&sigs).map_err(|_| Refusal::Malformed)?;
        if input.members.is_empty() {
            return Err(Refusal::Missing);
        }
        if input.members.len() > MAX_SIGNATURES {
            return Err(Refusal::TooMany);
        }
        if input.members.len() != sigs.members.len()
            || input.members.iter().any(|m| sigs.get(&m.key).is_none())
        {
            return Err(Refusal::Malformed);
        }
        let mut all = Vec::with_capacity(input.members.len());
        for m in &input.members {
            let sig = sigs.get(&m.key).ok_or(Refusal::Malformed)?;
            all.push(self.check_one(req, has_body, now, m, sig)?);
        }
        Ok(all)
    }

    fn check_one(
        &self,
        req: &RequestParts<'_>,
        has_body: bool,
        now: u64,
        input: &sf::DictMember,
        sig: &sf::DictMember,
    ) -> Result<Checked, Refusal> {
        let Member::InnerList(list) = &input.value else {
            return Err(Refusal::Malformed);
        };
        let signature = match &sig.value {
            Member::Item(sf::Item {
                bare: BareItem::ByteSeq(b),
                ..
            }) => b,
            _ => return Err(Refusal::Malformed),
        };

        let covered = list
            .items
            .iter()
            .map(Component::from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let has = |c: &Component| covered.contains(c);
        let target_bound = has(&Component::TargetUri)
            || (has(&Component::Authority) && has(&Component::Path) && has(&Component::Query));
        let digest_covered = has(&Component::Field("content-digest".into()));
        if !has(&Component::Method) || !target_bound || (has_body && !digest_covered) {
            return Err(Refusal::NotCovered);
        }

        let mut created = None;
        let mut expires = None;
        let mut nonce = None;
        let mut keyid = None;
        let mut alg = None;
        for (k, v) in &list.params {
            match (k.as_str(), v) {
                ("created", BareItem::Integer(i)) => created = Some(*i),
                ("expires", BareItem::Integer(i)) => expires = Some(*i),
                ("nonce", BareItem::String(s)) if !s.is_empty() && s.len() <= MAX_NONCE => {
                    nonce = Some(s.as_str());
                }
                ("keyid", BareItem::String(s)) if !s.is_empty() && s.len() <= MAX_KEYID => {
                    keyid = Some(s.as_str());
                }
                ("alg", BareItem::String(s)) => alg = Some(s.as_str()),
                ("tag", BareItem::String(_)) => {}
                _ => return Err(Refusal::Malformed),
            }
        }
        let (Some(created), Some(nonce), Some(keyid)) = (created, nonce, keyid) else {
            return Err(Refusal::MissingParam);
        };
        let created = u64::try_from(created).map_err(|_| Refusal::Expired)?;
        if created > now.saturating_add(MAX_FUTURE_S) {
            return Err(Refusal::Future);
        }
        if now.saturating_sub(created) > self.policy.max_age_s {
            return Err(Refusal::Expired);
        }
        if let Some(e) = expires
            && u64::try_from(e).map_or(true, |e| e < now)
        {
            return Err(Refusal::Expired);
        }

        let keys = self.keys.keys(keyid);
        if keys.is_empty() {
            return Err(Refusal::UnknownKey);
        }
        // The device's algorithm decides; an `alg` that names another is refused outright,
        // even if some other key of the device would match it.
        let candidates: Vec<&Arc<DeviceKey>> = match alg {
            None => keys.iter().collect(),
            Some(name) => {
                let wanted = Algorithm::from_name(name).ok_or(Refusal::AlgMismatch)?;
                let c: Vec<_> = keys.iter().filter(|k| k.alg() == wanted).collect();
                if c.is_empty() {
                    return Err(Refusal::AlgMismatch);
                }
                c
            }
        };

        let body = if digest_covered {
            let value = field_value(req, "content-digest").ok_or(BaseError::MissingField)?;
            Some(DigestChecker::from_header(&value)?)
        } else {
            None
        };

        let sig_base = base::signature_base(req, &covered, &input.raw)?;
        let key = candidates
            .into_iter()
            .find(|k| k.verify(&sig_base, signature))
            .ok_or(Refusal::BadSignature)?;

        Ok(Checked {
            verified: Verified {
                keyid: keyid.to_owned(),
                label: input.key.clone(),
                alg: key.alg(),
                created,
                covered,
                body,
            },
            nonce: nonce.to_owned(),
        })
    }
}

/// A plain map from device name to keys, for tests and small fixed deployments.
#[derive(Debug, Default)]
pub struct StaticKeys {
    keys: std::collections::HashMap<String, Vec<Arc<DeviceKey>>>,
}

impl StaticKeys {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a key for `keyid`.
    pub fn insert(&mut self, keyid: impl Into<String>, key: DeviceKey) -> &mut Self {
        self.keys
            .entry(keyid.into())
            .or_default()
            .push(Arc::new(key));
        self
    }
}

impl KeyLookup for StaticKeys {
    fn keys(&self, keyid: &str) -> Vec<Arc<DeviceKey>> {
        self.keys.get(keyid).cloned().unwrap_or_default()
    }
}
