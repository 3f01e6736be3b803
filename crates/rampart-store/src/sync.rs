//! Keeps an [`ApiKeyCache`] and a [`RevocationSet`] current: a full load at start, then a
//! poll of the store's change counter every second (changed rows only), a full reload
//! every few minutes (drops long-expired keys and lapsed entries), and, with Redis, a
//! subscription that applies revocations the moment another node publishes them.
//!
//! Timing: a change written to the store reaches this node within one poll interval
//! plus a query (default 1 s); through Redis, within a network round trip.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::StoreError;
use crate::apikeys::{all_keys, changed_keys};
use crate::bus::{RedisUrl, subscribe_loop};
use crate::cache::ApiKeyCache;
use crate::db::Store;
use crate::revocation::{RevocationSet, changed};
use crate::when::now_unix;

/// Poll and reload intervals.
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// How often the change counter is read (at most 2 s keeps the 5 s promise).
    pub poll_interval: Duration,
    /// How often everything is reloaded from scratch.
    pub full_reload_interval: Duration,
    /// How often lapsed revocations are deleted from the store.
    pub prune_interval: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            poll_interval: Duration::from_secs(1),
            full_reload_interval: Duration::from_secs(300),
            prune_interval: Duration::from_secs(3600),
        }
    }
}

/// Loads everything from the store into the caches; returns the change counter it
/// loaded up to. Call it before serving to start with a complete view.
pub async fn load_once(
    store: &Store,
    keys: &ApiKeyCache,
    revs: &RevocationSet,
) -> Result<i64, StoreError> {
    let upto = store.change_seq().await?;
    let rows = all_keys(store).await?;
    let list = changed(store, -1, upto).await?;
    let now = now_unix();
    keys.replace_all(rows, |id| {
        revs.is_revoked_at(crate::RevocationKind::ApiKey, id, now)
    });
    // Merged, not replaced: an entry that arrived through Redis while this query ran
    // stays (nothing is ever un-revoked; lapsed entries are pruned by time).
    revs.insert_many(list);
    keys.set_loaded();
    revs.set_loaded();
    Ok(upto)
}

/// Applies the rows changed since `after`; returns the new cursor.
pub async fn poll_once(
    store: &Store,
    after: i64,
    keys: &ApiKeyCache,
    revs: &RevocationSet,
) -> Result<i64, StoreError> {
    let upto = store.change_seq().await?;
    if upto == after {
        return Ok(after);
    }
    let rows = changed_keys(store, after, upto).await?;
    let list = changed(store, after, upto).await?;
    for r in &list {
        if r.kind == crate::RevocationKind::ApiKey {
            keys.mark_revoked(&r.value, r.created);
        }
    }
    keys.upsert(rows);
    revs.insert_many(list);
    Ok(upto)
}

/// Spawns the sync task with [`SyncOptions::default`]. It ends when `shutdown`
/// completes.
pub fn spawn_sync(
    store: Store,
    redis: Option<RedisUrl>,
    keys: Arc<ApiKeyCache>,
    revs: Arc<RevocationSet>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    spawn_sync_with(SyncOptions::default(), store, redis, keys, revs, shutdown)
}

/// [`spawn_sync`] with explicit intervals.
pub fn spawn_sync_with(
    opts: SyncOptions,
    store: Store,
    redis: Option<RedisUrl>,
    keys: Arc<ApiKeyCache>,
    revs: Arc<RevocationSet>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let sub =
            redis.map(|u| tokio::spawn(subscribe_loop(u, Arc::clone(&revs), Arc::clone(&keys))));
        tokio::select! {
            () = shutdown => {}
            () = run(opts, &store, &keys, &revs) => {}
        }
        if let Some(s) = sub {
            s.abort();
            revs.set_redis_subscribed(false);
        }
    })
}

async fn run(opts: SyncOptions, store: &Store, keys: &ApiKeyCache, revs: &RevocationSet) {
    let mut cursor: Option<i64> = None;
    let mut last_full = tokio::time::Instant::now();
    let mut last_prune = tokio::time::Instant::now();
    let mut last_mem_prune = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let result = match cursor {
            Some(c) if last_full.elapsed() < opts.full_reload_interval => {
                poll_once(store, c, keys, revs).await
            }
            _ => {
                last_full = tokio::time::Instant::now();
                load_once(store, keys, revs).await
            }
        };
        match result {
            Ok(c) => {
                if failing {
                    tracing::info!("credential store reachable again");
                    failing = false;
                }
                cursor = Some(c);
            }
            Err(e) => {
                // Keep serving the last good view; say so once per outage.
                if !failing {
                    tracing::warn!(error = %e, "credential store poll failed; keeping the last loaded keys and revocations");
                    failing = true;
                }
            }
        }
        // Lapsed entries answer "not revoked" already; dropping them only frees memory.
        if last_mem_prune.elapsed() >= Duration::from_secs(30) {
            last_mem_prune = tokio::time::Instant::now();
            revs.prune(now_unix());
        }
        if last_prune.elapsed() >= opts.prune_interval {
            last_prune = tokio::time::Instant::now();
            // A day of grace so a lagging node never loses an entry it still needs.
            if let Err(e) = crate::Revocations::new(store.clone())
                .prune(now_unix().saturating_sub(86_400))
                .await
            {
                tracing::warn!(error = %e, "pruning lapsed revocations failed");
            }
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
}
