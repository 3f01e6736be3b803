//! Test support: private data directories, a pepper, and a throw-away PostgreSQL schema.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rampart_config::secret::Secret;
use rampart_store::{NewApiKey, Store};

pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS: &str = "redis://127.0.0.1:6379";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A token unique to this process and call (for directories, schemas, namespaces).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A data directory that passes the data-root rules wherever the clone sits.
pub fn private_dir(name: &str) -> PathBuf {
    rampart_test_support::private_dir(env!("CARGO_TARGET_TMPDIR"), name)
}

pub fn pepper() -> Secret {
    Secret::new(b"test-pepper-0123456789abcdef-0123456789".to_vec())
}

pub fn new_key(name: &str) -> NewApiKey {
    NewApiKey {
        name: name.into(),
        tenant: "acme".into(),
        scopes: vec!["jobs".into(), "metrics".into()],
        roles: vec!["reader".into()],
        ..NewApiKey::default()
    }
}

pub async fn sqlite_store() -> (Store, PathBuf) {
    let dir = private_dir("sqlite");
    let s = Store::open_url("sqlite://rampart.db", Some(&dir))
        .await
        .unwrap();
    (s, dir)
}

/// A fresh schema in the test database; dropped by [`PgSchema::drop_now`] (and, as a
/// fallback, on drop).
pub struct PgSchema {
    pub name: String,
    dropped: bool,
}

impl PgSchema {
    pub async fn create() -> PgSchema {
        let name = unique("rs_test");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(PG_BASE)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (database test, user postgres); scripts/test starts it");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        PgSchema {
            name,
            dropped: false,
        }
    }

    /// A store URL whose connections use this schema.
    pub fn url(&self) -> String {
        format!("{PG_BASE}?options=-c%20search_path%3D{}", self.name)
    }

    pub async fn drop_now(mut self) {
        drop_schema(&self.name).await;
        self.dropped = true;
    }
}

async fn drop_schema(name: &str) {
    if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(PG_BASE)
        .await
    {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
        )))
        .execute(&pool)
        .await;
        pool.close().await;
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        // A failed test: clean up on a runtime of our own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_schema(&name));
            }
        })
        .join();
    }
}

/// A well-formed key (valid checksum) for `id` with a chosen secret.
pub fn forge(id: &str, secret_char: char) -> String {
    let secret: String = std::iter::repeat_n(secret_char, rampart_store::key::SECRET_LEN).collect();
    let body = format!("rpk_{id}_{secret}");
    let check = rampart_store::key::checksum(body.as_bytes());
    format!("{body}_{}", std::str::from_utf8(&check).unwrap())
}

/// What every backend must do; run against SQLite and PostgreSQL.
pub async fn store_contract(store: Store) {
    use rampart_store::*;
    use std::sync::Arc;

    assert_eq!(store.schema_version().await.unwrap(), 3);
    let keys = ApiKeys::new(store.clone(), &pepper()).unwrap();
    let cache = Arc::new(ApiKeyCache::new(&pepper()).unwrap());
    let revs = Arc::new(RevocationSet::new());
    assert!(!cache.is_loaded());
    let mut cursor = load_once(&store, &cache, &revs).await.unwrap();
    assert!(cache.is_loaded() && revs.is_loaded());
    assert_eq!(cache.len(), 0);

    // Create: the secret is returned once, well-formed, and verifies.
    let now = when::now_unix();
    let mut req = new_key("ci deploy");
    req.scopes = vec!["jobs".into(), "metrics".into(), "jobs".into()];
    req.rate_limit = RateLimitOverride {
        per_minute: Some(120),
        burst: None,
        tier: Some("heavy".into()),
    };
    let (rec, secret) = keys.create(req).await.unwrap();
    let k = secret.expose().to_owned();
    assert_eq!(k.len(), key::KEY_LEN);
    assert_eq!(key::parse(&k).unwrap().id, rec.id);
    assert_eq!(
        rec.scopes,
        ["jobs", "metrics"],
        "duplicates dropped, order kept"
    );
    assert_eq!(rec.roles, ["reader"]);
    assert!((now..=now + 5).contains(&rec.created));
    assert_eq!(format!("{secret:?}"), "ApiKeySecret([redacted])");

    // Not visible to the cache until a poll.
    assert_eq!(cache.verify(&k), Err(ApiKeyError::Unknown));
    cursor = poll_once(&store, cursor, &cache, &revs).await.unwrap();
    let got = cache.verify(&k).unwrap();
    assert_eq!(got, rec);
    assert_eq!(got.rate_limit.per_minute, Some(120));
    assert_eq!(got.rate_limit.burst, None);
    assert_eq!(got.rate_limit.tier.as_deref(), Some("heavy"));

    // Metadata only in list/get.
    let listed = keys.list().await.unwrap();
    assert_eq!(listed, vec![rec.clone()]);
    assert!(!format!("{listed:?}").contains(&k[17..60]));
    assert_eq!(keys.get(&rec.id).await.unwrap(), Some(rec.clone()));
    assert_eq!(keys.get("nope").await.unwrap(), None);

    // Refusals.
    let mut typo = k.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    assert_eq!(cache.verify(&typo), Err(ApiKeyError::BadChecksum));
    assert_eq!(cache.verify("Bearer x"), Err(ApiKeyError::Malformed));
    assert_eq!(
        cache.verify(&forge("AAAAAAAAAAAA", 'x')),
        Err(ApiKeyError::Unknown)
    );
    assert_eq!(
        cache.verify(&forge(&rec.id, 'x')),
        Err(ApiKeyError::Mismatch)
    );
    // A cache with another pepper verifies nothing.
    let other = ApiKeyCache::new(&rampart_config::secret::Secret::new(vec![7u8; 32])).unwrap();
    load_once(&store, &other, &RevocationSet::new())
        .await
        .unwrap();
    assert_eq!(other.verify(&k), Err(ApiKeyError::Mismatch));

    // Expiry.
    let mut short = new_key("short");
    short.expires = Some(now + 3600);
    let (srec, ssecret) = keys.create(short).await.unwrap();
    cursor = poll_once(&store, cursor, &cache, &revs).await.unwrap();
    assert!(cache.verify_at(ssecret.expose(), now + 10).is_ok());
    assert_eq!(
        cache
            .verify_at(ssecret.expose(), now + 3600)
            .map(|r| r.id.clone()),
        Err(ApiKeyError::Expired)
    );
    let mut past = new_key("past");
    past.expires = Some(now - 1);
    assert!(matches!(
        keys.create(past).await,
        Err(StoreError::Invalid(_))
    ));

    // Revoke: the row, an apikey revocation lapsing with the key, and the cache.
    assert!(keys.revoke(&srec.id).await.unwrap());
    assert!(keys.revoke(&srec.id).await.unwrap(), "idempotent");
    assert!(!keys.revoke("AAAAAAAAAAAA").await.unwrap());
    assert!(!keys.revoke("../etc").await.unwrap());
    let revoked = keys.get(&srec.id).await.unwrap().unwrap();
    let revoked_at = revoked.revoked.unwrap();
    assert!(revoked_at >= now);
    let before = cursor;
    cursor = poll_once(&store, cursor, &cache, &revs).await.unwrap();
    assert!(cursor > before);
    assert_eq!(
        cache.verify(ssecret.expose()).map(|_| ()),
        Err(ApiKeyError::Revoked)
    );
    assert!(cache.verify(&k).is_ok(), "other keys unaffected");
    assert!(revs.is_revoked_apikey(&srec.id));
    assert!(!revs.is_revoked_apikey(&rec.id));
    let list = Revocations::new(store.clone()).list().await.unwrap();
    let e = list
        .iter()
        .find(|r| r.kind == RevocationKind::ApiKey)
        .unwrap();
    assert_eq!(e.value, srec.id);
    assert_eq!(
        e.until,
        Some(now + 3600),
        "lapses when the key would have expired"
    );

    // Revocations of every kind.
    let r = Revocations::new(store.clone());
    let fp = "AB:".repeat(31) + "AB";
    for (kind, value, until) in [
        (RevocationKind::Jti, "tok-1", Some(now + 600)),
        (RevocationKind::Subject, "mallory", None),
        (RevocationKind::Cert, fp.as_str(), Some(now + 600)),
    ] {
        r.add(NewRevocation {
            kind,
            value: value.into(),
            until,
            reason: Some("test".into()),
        })
        .await
        .unwrap();
    }
    // Re-revoking never shortens.
    r.add(NewRevocation {
        kind: RevocationKind::Jti,
        value: "tok-1".into(),
        until: Some(now + 60),
        reason: None,
    })
    .await
    .unwrap();
    for bad in [
        NewRevocation {
            kind: RevocationKind::Jti,
            value: String::new(),
            until: None,
            reason: None,
        },
        NewRevocation {
            kind: RevocationKind::Cert,
            value: "abc".into(),
            until: None,
            reason: None,
        },
        NewRevocation {
            kind: RevocationKind::ApiKey,
            value: "x".into(),
            until: None,
            reason: None,
        },
        NewRevocation {
            kind: RevocationKind::Jti,
            value: "t".into(),
            until: Some(now - 5),
            reason: None,
        },
    ] {
        assert!(matches!(r.add(bad).await, Err(StoreError::Invalid(_))));
    }
    let list = r.list().await.unwrap();
    assert_eq!(list.len(), 4, "{list:?}");
    let jti = list.iter().find(|x| x.kind == RevocationKind::Jti).unwrap();
    assert_eq!(jti.until, Some(now + 600));
    assert_eq!(jti.reason.as_deref(), Some("test"));
    let cert = list
        .iter()
        .find(|x| x.kind == RevocationKind::Cert)
        .unwrap();
    assert_eq!(cert.value, "ab".repeat(32), "fingerprints normalized");

    assert!(!revs.is_revoked_jti("tok-1"));
    cursor = poll_once(&store, cursor, &cache, &revs).await.unwrap();
    assert!(revs.is_revoked_jti("tok-1"));
    assert!(revs.is_revoked_subject("mallory"));
    assert!(revs.is_revoked_cert(&"ab".repeat(32)));
    assert!(revs.is_revoked_cert(&fp));
    assert!(!revs.is_revoked_subject("alice"));
    assert_eq!(revs.len(), 4);

    // Nothing changed: the poll reads only the counter.
    assert_eq!(
        poll_once(&store, cursor, &cache, &revs).await.unwrap(),
        cursor
    );

    // Concurrent writers: every change gets its own sequence number, none is lost.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            keys.create(new_key(&format!("parallel {i}")))
                .await
                .unwrap()
        }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.push(t.await.unwrap());
    }
    let next = poll_once(&store, cursor, &cache, &revs).await.unwrap();
    assert_eq!(next, cursor + 16);
    for (rec, secret) in &made {
        assert_eq!(cache.verify(secret.expose()).unwrap().id, rec.id);
    }
    assert_eq!(keys.list().await.unwrap().len(), 18);

    // A full reload agrees with the incremental view.
    let fresh = ApiKeyCache::new(&pepper()).unwrap();
    let fresh_revs = RevocationSet::new();
    assert_eq!(load_once(&store, &fresh, &fresh_revs).await.unwrap(), next);
    assert_eq!(fresh.len(), cache.len());
    assert_eq!(fresh_revs.len(), revs.len());
    assert_eq!(
        fresh.verify(ssecret.expose()).map(|_| ()),
        Err(ApiKeyError::Revoked)
    );

    // Prune deletes only lapsed entries.
    assert_eq!(r.prune(now).await.unwrap(), 0);
    assert_eq!(r.prune(now + 601).await.unwrap(), 2);
    assert_eq!(r.list().await.unwrap().len(), 2);
}
