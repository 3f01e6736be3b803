//! The store on a real SQLite file in a private data directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use common::*;
use rampart_store::{ApiKeys, Backend, Store, StoreError};

#[tokio::test]
async fn contract_on_sqlite() {
    let (store, dir) = sqlite_store().await;
    assert_eq!(store.backend(), Backend::Sqlite);
    store_contract(store.clone()).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn file_is_private_wal_and_holds_no_secret() {
    let (store, dir) = sqlite_store().await;
    let keys = ApiKeys::new(store.clone(), &pepper()).unwrap();
    let (_, secret) = keys.create(new_key("k")).await.unwrap();
    let key = secret.expose().to_owned();
    let db = dir.join("rampart.db");
    assert_eq!(std::fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
    let wal = dir.join("rampart.db-wal");
    assert!(wal.exists(), "WAL journal");
    assert_eq!(std::fs::metadata(&wal).unwrap().mode() & 0o077, 0);
    let mode: String = {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
        let m = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        m
    };
    assert_eq!(mode, "wal");
    store.close().await;
    // Neither the key, nor its secret part, appears in any file.
    let secret_part = &key[17..60];
    for f in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret_part));
    }
    // Reopening applies nothing and keeps the data.
    let again = Store::open_url("sqlite://rampart.db", Some(&dir))
        .await
        .unwrap();
    assert_eq!(again.schema_version().await.unwrap(), 3);
    assert_eq!(
        ApiKeys::new(again.clone(), &pepper())
            .unwrap()
            .list()
            .await
            .unwrap()
            .len(),
        1
    );
    again.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn refuses_unsafe_files_and_paths() {
    let dir = private_dir("unsafe");
    // Outside data_dir.
    for url in [
        "sqlite://../x.db",
        "sqlite:///etc/rampart.db",
        "sqlite://x.db?mode=memory",
    ] {
        assert!(
            matches!(
                Store::open_url(url, Some(&dir)).await,
                Err(StoreError::Config(_))
            ),
            "{url}"
        );
    }
    // A readable existing file.
    let db = dir.join("open.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Store::open_url("sqlite://open.db", Some(&dir))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    // A symlink.
    std::os::unix::fs::symlink("/etc/hostname", dir.join("link.db")).unwrap();
    assert!(matches!(
        Store::open_url("sqlite://link.db", Some(&dir)).await,
        Err(StoreError::File(_))
    ));
    // A data directory that group/other can enter.
    let loose = dir.join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(
        Store::open_url("sqlite://x.db", Some(&loose)).await,
        Err(StoreError::Config(_))
    ));
    // A missing data directory is created 0700.
    let fresh = dir.join("fresh");
    let s = Store::open_url("sqlite://x.db", Some(&fresh))
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
    s.close().await;
    // No data_dir at all.
    assert!(matches!(
        Store::open_url("sqlite://x.db", None).await,
        Err(StoreError::Config(_))
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn open_from_config() {
    let dir = private_dir("cfg");
    let text = format!(
        "profile = \"dev\"\n[server]\ndata_dir = \"{d}/data\"\nallowed_data_roots = [\"{d}\"]\n\
         [upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[auth.api_key]\npepper = \"env:PEPPER\"\n",
        d = dir.display()
    );
    let env = vec![("PEPPER".to_owned(), "p".repeat(40))];
    let cfg = rampart_config::load_from_strs(&[("c.toml", &text)], &env).unwrap();
    let store = Store::open(&cfg).await.unwrap();
    assert!(
        dir.join("data/rampart.db").exists(),
        "default url under data_dir"
    );
    let keys = ApiKeys::from_config(store.clone(), &cfg).unwrap();
    keys.create(new_key("x")).await.unwrap();
    store.close().await;

    // data_dir outside the allowed roots: refused before anything is created.
    let other = private_dir("cfg-other");
    let text = format!(
        "profile = \"dev\"\n[server]\ndata_dir = \"{o}/data\"\nallowed_data_roots = [\"{d}\"]\n\
         [upstreams.app]\nurl = \"http://127.0.0.1:1\"\n",
        d = dir.display(),
        o = other.display()
    );
    let cfg = rampart_config::load_from_strs(&[("c.toml", &text)], &[]).unwrap();
    assert!(matches!(
        Store::open(&cfg).await,
        Err(StoreError::Config(_))
    ));
    assert!(!other.join("data").exists());
    // No pepper: ApiKeys refuses with the key's name.
    let store = Store::open_url("sqlite://y.db", Some(&dir)).await.unwrap();
    let e = ApiKeys::from_config(store.clone(), &cfg).unwrap_err();
    assert!(e.to_string().contains("auth.api_key.pepper"), "{e}");
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other);
}
