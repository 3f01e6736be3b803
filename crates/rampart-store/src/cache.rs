//! The request path's view of API keys: a snapshot map from key id to record and stored
//! tag, swapped atomically by the sync task. `verify` never blocks and never does I/O.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use aws_lc_rs::hmac;

use crate::StoreError;
use crate::apikeys::{ApiKeyRecord, pepper_key};
use crate::key::{self, FormatError};
use crate::when::now_unix;

/// Why a presented API key is refused. The precise reason is for logs and metrics; the
/// client always gets one generic answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Not shaped like a rampart key.
    #[error("malformed")]
    Malformed,
    /// Shaped like one, but the checksum is wrong (a typo or a made-up key).
    #[error("bad_checksum")]
    BadChecksum,
    /// No key with this id.
    #[error("unknown")]
    Unknown,
    /// The id exists but the secret does not match.
    #[error("mismatch")]
    Mismatch,
    #[error("expired")]
    Expired,
    #[error("revoked")]
    Revoked,
}

impl ApiKeyError {
    /// A stable label for `rampart_auth_failures_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            ApiKeyError::Malformed => "malformed",
            ApiKeyError::BadChecksum => "bad_checksum",
            ApiKeyError::Unknown => "unknown",
            ApiKeyError::Mismatch => "mismatch",
            ApiKeyError::Expired => "expired",
            ApiKeyError::Revoked => "revoked",
        }
    }
}

struct Entry {
    record: Arc<ApiKeyRecord>,
    tag: [u8; 32],
}

/// In-memory API keys, loaded and kept current by [`crate::spawn_sync`].
pub struct ApiKeyCache {
    pepper: hmac::Key,
    map: ArcSwap<HashMap<Box<str>, Arc<Entry>>>,
    loaded: AtomicBool,
}

impl fmt::Debug for ApiKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyCache")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl ApiKeyCache {
    /// An empty cache verifying under `pepper` (`auth.api_key.pepper`).
    pub fn new(pepper: &rampart_config::secret::Secret) -> Result<ApiKeyCache, StoreError> {
        Ok(ApiKeyCache {
            pepper: pepper_key(pepper)?,
            map: ArcSwap::from_pointee(HashMap::new()),
            loaded: AtomicBool::new(false),
        })
    }

    /// A cache for a gateway without API-key authentication (revocations still sync
    /// through it): its pepper is random and thrown away, so no key ever verifies.
    pub fn disabled() -> Result<ApiKeyCache, StoreError> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| StoreError::Random)?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(ApiKeyCache {
            pepper: key,
            map: ArcSwap::from_pointee(HashMap::new()),
            loaded: AtomicBool::new(false),
        })
    }

    /// [`ApiKeyCache::new`] with the pepper of `cfg`.
    pub fn from_config(cfg: &rampart_config::Config) -> Result<ApiKeyCache, StoreError> {
        ApiKeyCache::new(crate::apikeys::pepper_from_config(cfg)?)
    }

    /// Checks a presented key: format and checksum, O(1) lookup by id, then the keyed
    /// hash compared in constant time (computed even for an unknown id, so the answer
    /// time does not tell ids apart). Only a key whose secret matches learns whether it
    /// is expired or revoked.
    pub fn verify(&self, presented: &str) -> Result<ApiKeyRecord, ApiKeyError> {
        self.verify_shared(presented)
            .map(|r| ApiKeyRecord::clone(&r))
    }

    /// [`ApiKeyCache::verify`] without copying the record.
    pub fn verify_shared(&self, presented: &str) -> Result<Arc<ApiKeyRecord>, ApiKeyError> {
        self.verify_at(presented, now_unix())
    }

    /// [`ApiKeyCache::verify_shared`] at a given time (Unix seconds).
    pub fn verify_at(&self, presented: &str, now: i64) -> Result<Arc<ApiKeyRecord>, ApiKeyError> {
        let parsed = key::parse(presented).map_err(|e| match e {
            FormatError::Malformed => ApiKeyError::Malformed,
            FormatError::BadChecksum => ApiKeyError::BadChecksum,
        })?;
        let map = self.map.load();
        let Some(entry) = map.get(parsed.id) else {
            // Same work as a known id: an HMAC and a comparison against a dummy tag.
            let _ = hmac::verify(&self.pepper, parsed.body.as_bytes(), &[0u8; 32]);
            return Err(ApiKeyError::Unknown);
        };
        hmac::verify(&self.pepper, parsed.body.as_bytes(), &entry.tag)
            .map_err(|_| ApiKeyError::Mismatch)?;
        if entry.record.revoked.is_some() {
            return Err(ApiKeyError::Revoked);
        }
        if entry.record.is_expired_at(now) {
            return Err(ApiKeyError::Expired);
        }
        Ok(Arc::clone(&entry.record))
    }

    /// Keys held (revoked and expired ones included until the next full reload).
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first full load from the store has completed.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub(crate) fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Replaces the whole map (full reload). Keys that expired more than a day ago are
    /// left out: they would only ever answer `Expired`.
    /// `revoked(id)`: revocations already known in memory (e.g. through Redis) that the
    /// rows may predate.
    pub(crate) fn replace_all(
        &self,
        rows: Vec<(ApiKeyRecord, [u8; 32])>,
        revoked: impl Fn(&str) -> bool,
    ) {
        let now = now_unix();
        let cutoff = now.saturating_sub(86_400);
        let map: HashMap<Box<str>, Arc<Entry>> = rows
            .into_iter()
            .filter(|(r, _)| r.expires.is_none_or(|e| e > cutoff))
            .map(|(mut record, tag)| {
                if record.revoked.is_none() && revoked(&record.id) {
                    record.revoked = Some(now);
                }
                (
                    record.id.clone().into_boxed_str(),
                    Arc::new(Entry {
                        record: Arc::new(record),
                        tag,
                    }),
                )
            })
            .collect();
        self.map.store(Arc::new(map));
    }

    /// Inserts or replaces the given keys (incremental sync).
    pub(crate) fn upsert(&self, rows: Vec<(ApiKeyRecord, [u8; 32])>) {
        if rows.is_empty() {
            return;
        }
        let mut next = HashMap::clone(&self.map.load());
        for (record, tag) in rows {
            next.insert(
                record.id.clone().into_boxed_str(),
                Arc::new(Entry {
                    record: Arc::new(record),
                    tag,
                }),
            );
        }
        self.map.store(Arc::new(next));
    }

    /// Refuses a key from now on (a revocation seen through Redis or the admin API,
    /// before the store poll brings the row).
    pub fn mark_revoked(&self, id: &str, at: i64) {
        let cur = self.map.load();
        let Some(e) = cur.get(id) else {
            return;
        };
        if e.record.revoked.is_some() {
            return;
        }
        let mut rec = ApiKeyRecord::clone(&e.record);
        rec.revoked = Some(at);
        let tag = e.tag;
        let mut next = HashMap::clone(&cur);
        next.insert(
            id.into(),
            Arc::new(Entry {
                record: Arc::new(rec),
                tag,
            }),
        );
        self.map.store(Arc::new(next));
    }
}
