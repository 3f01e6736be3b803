//! Envelope encryption in the store, on SQLite and PostgreSQL: secrets survive data-key
//! rotation (with and without re-encryption) and a KEK rewrap; a wrong KEK opens nothing;
//! the raw tables, read directly, hold no clear secret and no clear data key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use rampart_crypto::envelope::EnvelopeError;
use rampart_crypto::{Kek, Kms, LocalKms};
use rampart_store::{Store, StoreError, Vault};
use sqlx::Row as _;

fn kms() -> Arc<dyn Kms> {
    Arc::new(LocalKms::new(&Kek::generate().unwrap()).unwrap())
}

fn secrets() -> Vec<(String, Vec<u8>)> {
    (0..5)
        .map(|i| {
            (
                format!("device:sensor-{i}"),
                format!("CLEAR-SECRET-{i}-0123456789abcdef").into_bytes(),
            )
        })
        .collect()
}

/// Every secret decrypts to its value.
async fn all_decrypt(v: &Vault, want: &[(String, Vec<u8>)]) {
    for (n, s) in want {
        assert_eq!(v.get_secret(n).await.unwrap().unwrap().as_slice(), s, "{n}");
    }
    let (ok, bad) = v.verify_all().await.unwrap();
    assert_eq!((ok, bad.len()), (want.len(), 0));
}

/// The raw rows, as text, for a "no clear secret" check.
async fn raw_rows(store_url: &str, dir: Option<&std::path::Path>) -> String {
    let mut all = String::new();
    if store_url.starts_with("sqlite:") {
        let db = dir.unwrap().join("rampart.db");
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
        for r in sqlx::query("SELECT name, kind, dek_id, ciphertext FROM secrets")
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            for i in 0..4 {
                all.push_str(&r.get::<String, _>(i));
                all.push('\n');
            }
        }
        for r in sqlx::query("SELECT id, wrapped FROM data_keys")
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            all.push_str(&r.get::<String, _>(1));
            all.push('\n');
        }
        pool.close().await;
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect(store_url)
            .await
            .unwrap();
        for r in sqlx::query("SELECT name, kind, dek_id, ciphertext FROM secrets")
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            for i in 0..4 {
                all.push_str(&r.get::<String, _>(i));
                all.push('\n');
            }
        }
        for r in sqlx::query("SELECT id, wrapped FROM data_keys")
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            all.push_str(&r.get::<String, _>(1));
            all.push('\n');
        }
        pool.close().await;
    }
    all
}

async fn vault_contract(url: &str, dir: Option<&std::path::Path>) {
    let open = || async { Store::open_url(url, dir).await.unwrap() };
    let kek1 = kms();
    let want = secrets();

    // No data key yet, and none made without asking.
    let v = Vault::open(open().await, Arc::clone(&kek1), false)
        .await
        .unwrap();
    assert!(v.keyset().is_empty());
    assert!(v.put_secret("x", "operator", b"y").await.is_err());
    let mut v = Vault::open(open().await, Arc::clone(&kek1), true)
        .await
        .unwrap();
    assert_eq!(v.keyset().len(), 1);
    for (n, s) in &want {
        v.put_secret(n, "device_hmac", s).await.unwrap();
    }
    all_decrypt(&v, &want).await;
    let first = v.keyset().primary().unwrap().id().to_owned();

    // rotate-dek: a new primary; old secrets stay under the old key and still decrypt.
    let (second, n) = v.rotate(false).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(n, 0);
    v.put_secret("after-rotate", "operator", b"CLEAR-after")
        .await
        .unwrap();
    let mut want2 = want.clone();
    want2.push(("after-rotate".into(), b"CLEAR-after".to_vec()));
    let metas = v.store().list_secrets().await.unwrap();
    assert_eq!(
        metas.iter().filter(|m| m.dek_id == first).count(),
        want.len()
    );
    // A fresh process (reopened vault) reads them all.
    let v2 = Vault::open(open().await, Arc::clone(&kek1), false)
        .await
        .unwrap();
    all_decrypt(&v2, &want2).await;

    // rotate-dek --reencrypt: every secret moves to the new primary, in one transaction.
    let (third, n) = v.rotate(true).await.unwrap();
    assert_eq!(n, want2.len());
    let metas = v.store().list_secrets().await.unwrap();
    assert!(metas.iter().all(|m| m.dek_id == third));
    all_decrypt(&v, &want2).await;
    let stats = v.store().key_stats().await.unwrap();
    assert_eq!(stats.data_keys, 3, "old keys are kept");
    assert_eq!(stats.primary_id.as_deref(), Some(third.as_str()));
    assert_eq!(stats.secrets, i64::try_from(want2.len()).unwrap());

    // rewrap under a new KEK: every data key, one transaction; secrets untouched.
    let before = raw_rows(url, dir).await;
    let kek2 = kms();
    assert_eq!(v.rewrap(Arc::clone(&kek2)).await.unwrap(), 3);
    let after = raw_rows(url, dir).await;
    assert_ne!(before, after, "wrapped keys changed");
    let v3 = Vault::open(open().await, Arc::clone(&kek2), false)
        .await
        .unwrap();
    all_decrypt(&v3, &want2).await;
    // The old KEK no longer opens the store; a wrong one never did.
    for k in [kek1, kms()] {
        match Vault::open(open().await, k, true).await {
            Err(StoreError::Crypto(EnvelopeError::Unwrap { .. })) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a wrong KEK opened the store"),
        }
    }

    // The raw tables: no clear secret, no clear data key, and base64 ciphertexts only.
    let raw = raw_rows(url, dir).await;
    for (_, s) in &want2 {
        let s = std::str::from_utf8(s).unwrap();
        assert!(!raw.contains(s), "clear secret in the table");
        assert!(
            !raw.contains(&STANDARD.encode(s)),
            "base64 of a clear secret"
        );
    }
    assert!(!raw.contains("CLEAR"));

    // A ciphertext moved to another row does not decrypt (bound to its name).
    let store = open().await;
    let names: Vec<String> = want2.iter().map(|(n, _)| n.clone()).collect();
    swap_ciphertexts(url, dir, &names[0], &names[1]).await;
    assert!(v3.get_secret(&names[0]).await.is_err());
    assert!(v3.get_secret(&names[1]).await.is_ok());
    let (_, bad) = v3.verify_all().await.unwrap();
    assert_eq!(bad, vec![names[0].clone()]);
    store.close().await;
}

async fn swap_ciphertexts(url: &str, dir: Option<&std::path::Path>, a: &str, b: &str) {
    let sql = "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name = $2) \
               WHERE name = $1";
    if url.starts_with("sqlite:") {
        let db = dir.unwrap().join("rampart.db");
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
        sqlx::query(sql)
            .bind(a)
            .bind(b)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect(url)
            .await
            .unwrap();
        sqlx::query(sql)
            .bind(a)
            .bind(b)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
}

#[tokio::test]
async fn vault_on_sqlite() {
    let dir = private_dir("vault");
    vault_contract("sqlite://rampart.db", Some(&dir)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn vault_on_postgres() {
    let schema = PgSchema::create().await;
    vault_contract(&schema.url(), None).await;
    schema.drop_now().await;
}
