//! The sync task against a store written by someone else (another gateway, the CLI):
//! a created key becomes usable and a revoked one is refused within 5 s, without Redis.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rampart_store::*;

async fn latency(gateway_store: Store, admin_store: Store) {
    let keys = Arc::new(ApiKeyCache::new(&pepper()).unwrap());
    let revs = Arc::new(RevocationSet::new());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = spawn_sync(
        gateway_store,
        None,
        Arc::clone(&keys),
        Arc::clone(&revs),
        async move {
            let _ = rx.await;
        },
    );
    let admin = ApiKeys::new(admin_store.clone(), &pepper()).unwrap();
    let (rec, secret) = admin.create(new_key("synced")).await.unwrap();

    let t = Instant::now();
    while keys.verify(secret.expose()).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "new key not usable within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created_after = t.elapsed();

    assert!(admin.revoke(&rec.id).await.unwrap());
    let t = Instant::now();
    while keys.verify(secret.expose()) != Err(ApiKeyError::Revoked) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "revoked key still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let revoked_after = t.elapsed();
    assert!(revs.is_revoked_apikey(&rec.id));

    Revocations::new(admin_store)
        .add(NewRevocation {
            kind: RevocationKind::Subject,
            value: "eve".into(),
            until: None,
            reason: None,
        })
        .await
        .unwrap();
    let t = Instant::now();
    while !revs.is_revoked_subject("eve") {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "key usable after {created_after:?}, refused {revoked_after:?} after revoke, subject {:?}",
        t.elapsed()
    );
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_changes_reach_a_running_gateway_within_5s() {
    let (store, dir) = sqlite_store().await;
    // A second pool on the same file, as the CLI would open it.
    let admin = Store::open_url("sqlite://rampart.db", Some(&dir))
        .await
        .unwrap();
    latency(store.clone(), admin.clone()).await;
    store.close().await;
    admin.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_reach_a_running_gateway_within_5s() {
    let schema = PgSchema::create().await;
    let gw = Store::open_url(&schema.url(), None).await.unwrap();
    let admin = Store::open_url(&schema.url(), None).await.unwrap();
    latency(gw.clone(), admin.clone()).await;
    gw.close().await;
    admin.close().await;
    schema.drop_now().await;
}

#[tokio::test]
async fn a_failing_store_keeps_the_last_view() {
    let (store, dir) = sqlite_store().await;
    let admin = ApiKeys::new(store.clone(), &pepper()).unwrap();
    let (_, secret) = admin.create(new_key("kept")).await.unwrap();
    let keys = Arc::new(ApiKeyCache::new(&pepper()).unwrap());
    let revs = Arc::new(RevocationSet::new());
    load_once(&store, &keys, &revs).await.unwrap();
    store.close().await;
    // The pool is closed: every poll fails, the cache keeps answering.
    assert!(poll_once(&store, 0, &keys, &revs).await.is_err());
    assert!(keys.verify(secret.expose()).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}
