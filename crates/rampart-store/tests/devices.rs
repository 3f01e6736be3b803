//! Device credentials in the store, on SQLite and PostgreSQL: create, rotate with and
//! without overlap, revoke; HMAC secrets only encrypted (the raw `secrets` and `devices`
//! rows hold no clear secret); no vault means no HMAC device.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use rampart_crypto::{Kek, Kms, LocalKms};
use rampart_store::{
    DeviceAlg, DeviceMaterial, Devices, NewDevice, RateLimitOverride, Store, StoreError, Vault,
};
use sqlx::Row as _;

fn new(name: &str, alg: DeviceAlg) -> NewDevice {
    NewDevice {
        name: name.into(),
        tenant: "acme".into(),
        scopes: vec!["jobs".into(), "metrics".into()],
        roles: vec!["reader".into()],
        alg,
        public_key: (alg == DeviceAlg::Ed25519).then_some([9u8; 32]),
        rate_limit: RateLimitOverride::default(),
    }
}

fn hmac_bytes(m: &DeviceMaterial) -> Vec<u8> {
    match m {
        DeviceMaterial::Hmac(b) => b.to_vec(),
        DeviceMaterial::Ed25519(_) => panic!("not hmac"),
    }
}

/// Every text column of `secrets` and `devices`, read with a plain pool.
async fn raw_text(url: &str, dir: Option<&std::path::Path>) -> String {
    let mut all = String::new();
    macro_rules! dump {
        ($pool:expr) => {
            for q in [
                "SELECT name, kind, dek_id, ciphertext FROM secrets",
                "SELECT name, tenant, scopes, roles, alg, COALESCE(public_key, ''), COALESCE(prev_public_key, '') FROM devices",
            ] {
                for r in sqlx::query(q).fetch_all(&$pool).await.unwrap() {
                    for i in 0..r.len() {
                        all.push_str(&r.get::<String, _>(i));
                        all.push('\n');
                    }
                }
            }
        };
    }
    if url.starts_with("sqlite:") {
        let db = dir.unwrap().join("rampart.db");
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
        dump!(pool);
        pool.close().await;
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect(url)
            .await
            .unwrap();
        dump!(pool);
        pool.close().await;
    }
    all
}

async fn contract(url: &str, dir: Option<&std::path::Path>) {
    let store = Store::open_url(url, dir).await.unwrap();
    // Without a vault: Ed25519 only.
    let plain = Devices::new(&store, None);
    let err = plain
        .create(new("hm-0", DeviceAlg::HmacSha256))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Config(ref m) if m.contains("crypto.kek")),
        "{err}"
    );
    let (ed, secret) = plain.create(new("ed-1", DeviceAlg::Ed25519)).await.unwrap();
    assert!(secret.is_none());
    assert_eq!(
        ed.public_key.as_deref(),
        Some(STANDARD.encode([9u8; 32]).as_str())
    );

    let kms: Arc<dyn Kms> = Arc::new(LocalKms::new(&Kek::generate().unwrap()).unwrap());
    let vault = Vault::open(store.clone(), kms, true).await.unwrap();
    let devs = Devices::new(&store, Some(&vault));
    let (rec, secret) = devs
        .create(new("hm-1", DeviceAlg::HmacSha256))
        .await
        .unwrap();
    let shown = secret.unwrap().expose().to_owned();
    let raw = URL_SAFE_NO_PAD.decode(&shown).unwrap();
    assert_eq!(raw.len(), 32);
    assert_eq!((rec.generation, rec.public_key.clone()), (1, None));
    assert!(format!("{rec:?}").find(&shown).is_none());
    // Names are unique.
    assert!(matches!(
        devs.create(new("hm-1", DeviceAlg::HmacSha256)).await,
        Err(StoreError::Invalid(_))
    ));

    let now = rampart_store::when::now_unix();
    let (loaded, skipped) = devs.load_credentials(now).await.unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let hm = loaded.iter().find(|d| d.record.name == "hm-1").unwrap();
    assert_eq!(hmac_bytes(&hm.current), raw);
    assert!(hm.previous.is_none());
    // Without the vault the HMAC device is named as not loadable, the Ed25519 one loads.
    let (l2, s2) = plain.load_credentials(now).await.unwrap();
    assert_eq!(s2, ["hm-1"]);
    assert_eq!(l2.len(), 1);

    // Rotate with overlap: both secrets load, the old one until the overlap ends.
    let (r2, s2) = devs.rotate("hm-1", None, 3600).await.unwrap().unwrap();
    let raw2 = URL_SAFE_NO_PAD.decode(s2.unwrap().expose()).unwrap();
    assert_ne!(raw2, raw);
    assert_eq!(r2.generation, 2);
    let until = r2.previous_valid_until.unwrap();
    assert!(until >= now + 3599);
    let (loaded, _) = devs.load_credentials(now).await.unwrap();
    let hm = loaded.iter().find(|d| d.record.name == "hm-1").unwrap();
    assert_eq!(hmac_bytes(&hm.current), raw2);
    assert_eq!(hmac_bytes(&hm.previous.as_ref().unwrap().0), raw);
    // After the overlap, only the new one.
    let (loaded, _) = devs.load_credentials(until + 1).await.unwrap();
    let hm = loaded.iter().find(|d| d.record.name == "hm-1").unwrap();
    assert!(hm.previous.is_none());
    // Rotate with no overlap: the previous credential is not loaded at all.
    let (_, s3) = devs.rotate("hm-1", None, 0).await.unwrap().unwrap();
    let raw3 = URL_SAFE_NO_PAD.decode(s3.unwrap().expose()).unwrap();
    let now = rampart_store::when::now_unix();
    let (loaded, _) = devs.load_credentials(now).await.unwrap();
    let hm = loaded.iter().find(|d| d.record.name == "hm-1").unwrap();
    assert_eq!(hmac_bytes(&hm.current), raw3);
    assert!(hm.previous.is_none());
    // Ed25519 rotation needs a key; HMAC rotation refuses one.
    assert!(devs.rotate("ed-1", None, 0).await.is_err());
    assert!(devs.rotate("hm-1", Some([1; 32]), 0).await.is_err());
    assert!(devs.rotate("nope", None, 0).await.unwrap().is_none());
    let (e2, _) = devs
        .rotate("ed-1", Some([7; 32]), 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e2.public_key.as_deref(),
        Some(STANDARD.encode([7u8; 32]).as_str())
    );

    // The raw tables hold no clear secret, in any encoding.
    let text = raw_text(url, dir).await;
    for r in [&raw, &raw2, &raw3] {
        assert!(!text.contains(&URL_SAFE_NO_PAD.encode(r)));
        assert!(!text.contains(&STANDARD.encode(r)));
        assert!(!text.as_bytes().windows(32).any(|w| w == r.as_slice()));
    }

    // Revoke: gone from the loaded set, secrets deleted, listed as revoked.
    let rv = devs.revoke("hm-1").await.unwrap().unwrap();
    assert!(rv.revoked.is_some());
    let (loaded, _) = devs.load_credentials(now).await.unwrap();
    assert!(loaded.iter().all(|d| d.record.name != "hm-1"));
    assert!(
        store
            .list_secrets()
            .await
            .unwrap()
            .iter()
            .all(|s| !s.name.starts_with("device:hm-1:"))
    );
    assert!(devs.rotate("hm-1", None, 0).await.is_err());
    assert!(devs.revoke("nope").await.unwrap().is_none());
    let list = devs.list().await.unwrap();
    assert_eq!(list.len(), 2);
    store.close().await;
}

#[tokio::test]
async fn devices_on_sqlite() {
    let dir = private_dir("devices");
    contract("sqlite://rampart.db", Some(&dir)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn devices_on_postgres() {
    let schema = PgSchema::create().await;
    contract(&schema.url(), None).await;
    schema.drop_now().await;
}
