//! The store on the real PostgreSQL at 127.0.0.1:5432 (database `test`), each test in a
//! schema of its own that is dropped afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use rampart_store::{ApiKeys, Backend, Store};

#[tokio::test]
async fn contract_on_postgres() {
    let schema = PgSchema::create().await;
    let store = Store::open_url(&schema.url(), None).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    store_contract(store.clone()).await;
    store.close().await;
    schema.drop_now().await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_shared() {
    let schema = PgSchema::create().await;
    // Two gateways starting at once: the migration lock lets one apply, the other wait.
    let url = schema.url();
    let (a, b) = tokio::join!(Store::open_url(&url, None), Store::open_url(&url, None));
    let (a, b) = (a.unwrap(), b.unwrap());
    let keys_a = ApiKeys::new(a.clone(), &pepper()).unwrap();
    let keys_b = ApiKeys::new(b.clone(), &pepper()).unwrap();
    let (rec, _) = keys_a.create(new_key("shared")).await.unwrap();
    assert_eq!(keys_b.list().await.unwrap(), vec![rec]);
    assert_eq!(b.schema_version().await.unwrap(), 3);
    // The hash column holds 64 hex digits, never the key.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&schema.url())
        .await
        .unwrap();
    let h: String = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(h.len(), 64);
    pool.close().await;
    a.close().await;
    b.close().await;
    schema.drop_now().await;
}

#[tokio::test]
async fn bad_url_is_not_echoed() {
    let e = Store::open_url("postgres://u:hunter2@127.0.0.1:1/x?sslmode=bogus", None)
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
