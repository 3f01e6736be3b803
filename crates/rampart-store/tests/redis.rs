//! Revocation fan-out through the real Redis at 127.0.0.1:6379: gateways whose store
//! poll is turned down to once a minute still see a revocation within 1 s, and a gateway
//! that starts later reads it from the Redis set.
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

/// Polling slowed down so that only Redis can deliver within the test's deadlines.
fn slow_poll() -> SyncOptions {
    SyncOptions {
        poll_interval: Duration::from_secs(60),
        ..SyncOptions::default()
    }
}

struct Node {
    keys: Arc<ApiKeyCache>,
    revs: Arc<RevocationSet>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    fn start(store: Store, redis: RedisUrl) -> Node {
        let keys = Arc::new(ApiKeyCache::new(&pepper()).unwrap());
        let revs = Arc::new(RevocationSet::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = spawn_sync_with(
            slow_poll(),
            store,
            Some(redis),
            Arc::clone(&keys),
            Arc::clone(&revs),
            async move {
                let _ = rx.await;
            },
        );
        Node {
            keys,
            revs,
            stop: Some(tx),
            task,
        }
    }

    async fn ready(&self) {
        let t = Instant::now();
        while !(self.revs.redis_subscribed() && self.keys.is_loaded()) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "node did not subscribe"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("sync task ends on shutdown")
            .unwrap();
        assert!(!self.revs.redis_subscribed());
    }
}

/// Waits until `f` holds, at most `limit` after `t`; returns how long after `t`.
async fn within(t: Instant, limit: Duration, f: impl Fn() -> bool) -> Duration {
    while !f() {
        assert!(t.elapsed() < limit, "not seen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_every_gateway_within_one_second() {
    let ns = unique("rampart-test");
    let redis = RedisUrl::new(REDIS).unwrap().with_namespace(&ns);
    let (store, dir) = sqlite_store().await;
    let writer = store.clone().with_redis(redis.clone());
    let keys = ApiKeys::new(writer.clone(), &pepper()).unwrap();
    let (rec, secret) = keys.create(new_key("fanout")).await.unwrap();

    let a = Node::start(store.clone(), redis.clone());
    let b = Node::start(store.clone(), redis.clone());
    a.ready().await;
    b.ready().await;
    assert!(a.keys.verify(secret.expose()).is_ok());

    let now = when::now_unix();
    // Timed from before the write: store insert, publish, delivery, apply.
    let t0 = Instant::now();
    let (_, published) = Revocations::new(writer.clone())
        .add_and_publish(NewRevocation {
            kind: RevocationKind::Jti,
            value: "fan-1".into(),
            until: Some(now + 120),
            reason: None,
        })
        .await
        .unwrap();
    assert!(matches!(published, Some(Ok(()))));
    let da = within(t0, Duration::from_secs(1), || {
        a.revs.is_revoked_jti("fan-1")
    })
    .await;
    let db = within(t0, Duration::from_secs(1), || {
        b.revs.is_revoked_jti("fan-1")
    })
    .await;
    eprintln!("jti revocation seen after {da:?} / {db:?}");

    // An API key revoked on one node is refused by the others' caches at once.
    let t0 = Instant::now();
    assert!(keys.revoke(&rec.id).await.unwrap());
    within(t0, Duration::from_secs(1), || {
        a.keys.verify(secret.expose()) == Err(ApiKeyError::Revoked)
            && b.keys.verify(secret.expose()) == Err(ApiKeyError::Revoked)
    })
    .await;
    assert!(b.revs.is_revoked_apikey(&rec.id));

    // A gateway that starts later, with an empty store of its own: it can only learn the
    // revocation from the Redis set.
    let (empty, dir2) = sqlite_store().await;
    let late = Node::start(empty.clone(), redis.clone());
    late.ready().await;
    assert!(late.revs.is_revoked_jti("fan-1"));
    assert!(late.revs.is_revoked_apikey(&rec.id));

    // Garbage on the channel is ignored; the subscription stays up.
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for junk in [
        "not json",
        "{\"kind\":\"jti\",\"value\":\"\",\"until\":null}",
        "{\"kind\":\"root\",\"value\":\"x\"}",
    ] {
        let _: () = redis::cmd("PUBLISH")
            .arg(format!("{ns}:revocations"))
            .arg(junk)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let t0 = Instant::now();
    Revocations::new(writer.clone())
        .add(NewRevocation {
            kind: RevocationKind::Subject,
            value: "after-junk".into(),
            until: Some(now + 120),
            reason: None,
        })
        .await
        .unwrap();
    within(t0, Duration::from_secs(1), || {
        a.revs.is_revoked_subject("after-junk")
    })
    .await;
    assert_eq!(a.revs.len(), 3);

    for n in [a, b, late] {
        n.stop().await;
    }
    let _: () = redis::cmd("DEL")
        .arg(format!("{ns}:revocations"))
        .query_async(&mut conn)
        .await
        .unwrap();
    store.close().await;
    empty.close().await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[tokio::test]
async fn unreachable_redis_does_not_fail_the_write() {
    let (store, dir) = sqlite_store().await;
    // Nothing listens on port 1.
    let writer = store
        .clone()
        .with_redis(RedisUrl::new("redis://127.0.0.1:1").unwrap());
    let (rev, published) = Revocations::new(writer)
        .add_and_publish(NewRevocation {
            kind: RevocationKind::Jti,
            value: "stored-anyway".into(),
            until: None,
            reason: None,
        })
        .await
        .unwrap();
    assert_eq!(rev.value, "stored-anyway");
    assert!(matches!(published, Some(Err(StoreError::Redis(_)))));
    let list = Revocations::new(store.clone()).list().await.unwrap();
    assert_eq!(list.len(), 1);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn redis_urls_are_checked_and_redacted() {
    assert!(RedisUrl::new("http://x").is_err());
    let u = RedisUrl::new("redis://:hunter2@127.0.0.1:6379").unwrap();
    assert!(!format!("{u:?}").contains("hunter2"));
    assert_eq!(u.channel(), "rampart:revocations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_messages_is_applied() {
    let ns = unique("rampart-burst");
    let redis = RedisUrl::new(REDIS).unwrap().with_namespace(&ns);
    let (store, dir) = sqlite_store().await;
    let node = Node::start(store.clone(), redis);
    node.ready().await;
    let until = when::now_unix() + 120;
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("PUBLISH")
            .arg(format!("{ns}:revocations"))
            .arg(format!(
                "{{\"kind\":\"jti\",\"value\":\"burst-{i}\",\"until\":{until}}}"
            ))
            .ignore();
    }
    let t0 = Instant::now();
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    let took = within(t0, Duration::from_secs(3), || node.revs.len() == 2000).await;
    eprintln!("2000 published revocations applied after {took:?}");
    assert!(node.revs.is_revoked_jti("burst-0") && node.revs.is_revoked_jti("burst-1999"));
    node.stop().await;
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
