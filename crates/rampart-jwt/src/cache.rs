//! The verified-token cache: SHA-256 of the whole token → what verification produced.
//!
//! Bound: `cache_entries` entries in total (16 shards of `cache_entries / 16`, at least
//! one each), each about 200 bytes plus the claim strings (themselves capped by
//! [`crate::claims::MAX_CLAIM_STRING`]); 10,000 entries ≈ a few MiB. Only tokens whose
//! signature and claims checks passed are inserted, so an attacker cannot fill it with
//! forgeries; failures are never cached. A full shard evicts an arbitrary entry (keys are
//! uniformly distributed hashes, so this is random eviction: O(1), no bookkeeping).
//! Expired entries are dropped when met. A hit still runs the time checks and is
//! honoured only while the key that verified the token is still in the key set.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::VerifiedToken;

const SHARDS: usize = 16;

/// Which key verified a cached token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRef {
    Jwk([u8; 32]),
    Hmac,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub token: VerifiedToken,
    pub nbf: Option<u64>,
    pub key: KeyRef,
}

pub(crate) struct TokenCache {
    shards: Vec<Mutex<HashMap<[u8; 32], Entry>>>,
    per_shard: usize,
}

impl TokenCache {
    pub fn new(entries: usize) -> Self {
        let per_shard = if entries == 0 {
            0
        } else {
            entries.div_ceil(SHARDS)
        };
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    fn shard(&self, h: &[u8; 32]) -> Option<MutexGuard<'_, HashMap<[u8; 32], Entry>>> {
        let m = self.shards.get(usize::from(h[0]) % SHARDS)?;
        Some(m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn get(&self, h: &[u8; 32]) -> Option<Entry> {
        if !self.enabled() {
            return None;
        }
        self.shard(h)?.get(h).cloned()
    }

    pub fn remove(&self, h: &[u8; 32]) {
        if let Some(mut s) = self.shard(h) {
            s.remove(h);
        }
    }

    pub fn insert(&self, h: [u8; 32], e: Entry) {
        if !self.enabled() {
            return;
        }
        let per_shard = self.per_shard;
        if let Some(mut s) = self.shard(&h) {
            if s.len() >= per_shard && !s.contains_key(&h) {
                let victim = s.keys().next().copied();
                if let Some(v) = victim {
                    s.remove(&v);
                }
            }
            s.insert(h, e);
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| {
                m.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(exp: u64) -> Entry {
        Entry {
            token: VerifiedToken {
                subject: "s".into(),
                tenant: None,
                scopes: vec![],
                roles: vec![],
                jti: None,
                exp,
                alg: "ES256",
                kid: None,
            },
            nbf: None,
            key: KeyRef::Hmac,
        }
    }

    #[test]
    fn bounded() {
        let c = TokenCache::new(64);
        for i in 0..10_000u32 {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            h[0] = (i % 251) as u8;
            c.insert(h, entry(1));
        }
        assert!(c.len() <= 64, "{}", c.len());
        assert!(c.len() >= 16);
    }

    #[test]
    fn disabled_stores_nothing() {
        let c = TokenCache::new(0);
        c.insert([1; 32], entry(1));
        assert!(c.get(&[1; 32]).is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn get_and_remove() {
        let c = TokenCache::new(10);
        c.insert([2; 32], entry(7));
        assert_eq!(c.get(&[2; 32]).unwrap().token.exp, 7);
        c.remove(&[2; 32]);
        assert!(c.get(&[2; 32]).is_none());
    }
}
