//! Keeps the gateway's device directory (the `signature` mode) in step with the
//! credential store: a full load at start, then the store's change counter polled every
//! second and the devices reloaded when it moved, so a `device create|rotate|revoke` (CLI
//! or `/admin/devices`, on any node sharing the store) takes effect within 5 s.
//!
//! HMAC secrets are decrypted through a vault opened afresh at each reload (so data keys
//! created after the start, by the first HMAC device or a `rotate-dek`, are known). A
//! device whose secret cannot be decrypted is left out, so it is refused, and named in a
//! warning. Fail closed at start: a `signature` mode without a usable store, a wrong
//! `crypto.kek`, or `nonce_store = "redis"` without `[redis] url` stops `serve`.

use std::sync::Arc;
use std::time::Duration;

use rampart_authn::{DeviceDirectory, DeviceEntry, DeviceInfo, SignatureAuth};
use rampart_config::Config;
use rampart_config::raw::NonceStoreKind;
use rampart_crypto::Kms;
use rampart_sig::{DeviceKey, MemoryNonceStore, NonceStore, Policy, RedisNonceStore};
use rampart_store::{DeviceMaterial, Devices, Store, StoreError, Vault, when};

/// Nonces remembered in memory at most (each lives `max_age_s`); past it new signed
/// requests are refused (`nonce_store_unavailable`) rather than forgetting nonces early.
pub const MEMORY_NONCES: usize = 1_000_000;
/// Default `auth.signature.max_age_s`.
pub const DEFAULT_MAX_AGE_S: u64 = 300;
/// How long one Redis nonce command may take.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

fn key_of(m: &DeviceMaterial) -> Option<Arc<DeviceKey>> {
    match m {
        DeviceMaterial::Ed25519(k) => Some(Arc::new(DeviceKey::ed25519(*k))),
        DeviceMaterial::Hmac(b) => DeviceKey::hmac(b).ok().map(Arc::new),
    }
}

/// Reads every live device (and its key material) into `dir`.
pub async fn load(
    store: &Store,
    kms: Option<&Arc<dyn Kms>>,
    dir: &DeviceDirectory,
) -> Result<usize, StoreError> {
    let vault = match kms {
        Some(k) => Some(Vault::open(store.clone(), Arc::clone(k), false).await?),
        None => None,
    };
    let (creds, skipped) = Devices::new(store, vault.as_ref())
        .load_credentials(when::now_unix())
        .await?;
    if !skipped.is_empty() {
        tracing::warn!(
            devices = %skipped.join(" "),
            "devices whose credential cannot be loaded (an hmac-sha256 secret without a usable crypto.kek?) are refused"
        );
    }
    let n = creds.len();
    dir.replace_all(creds.into_iter().filter_map(|c| {
        let mut keys = vec![(key_of(&c.current)?, None)];
        if let Some((m, until)) = &c.previous
            && let Some(k) = key_of(m)
        {
            keys.push((k, Some(*until)));
        }
        let r = c.record;
        Some((
            r.name,
            DeviceEntry {
                info: DeviceInfo {
                    tenant: (!r.tenant.is_empty()).then_some(r.tenant),
                    scopes: r.scopes,
                    roles: r.roles,
                    rate_override: rampart_http::RateOverride::from_parts(
                        r.rate_limit.tier,
                        r.rate_limit.per_minute,
                        r.rate_limit.burst,
                    ),
                },
                keys,
            },
        ))
    }));
    Ok(n)
}

/// Builds the `signature` mode: nonce store, device directory (loaded now), sync task.
pub async fn start(cfg: &Config, store: &Store) -> Result<Arc<SignatureAuth>, String> {
    let section = cfg
        .later
        .auth
        .as_ref()
        .and_then(|a| a.signature.clone())
        .unwrap_or_default();
    let policy = Policy {
        max_age_s: section.max_age_s.unwrap_or(DEFAULT_MAX_AGE_S),
    };
    let nonces: Arc<dyn NonceStore> = match section.nonce_store.unwrap_or_default() {
        NonceStoreKind::Memory => Arc::new(MemoryNonceStore::new(MEMORY_NONCES)),
        NonceStoreKind::Redis => {
            let url = cfg
                .later
                .redis
                .as_ref()
                .and_then(|r| r.url.as_ref())
                .ok_or("auth.signature.nonce_store = \"redis\" needs [redis] url")?;
            let url = std::str::from_utf8(url.expose())
                .map_err(|_| "redis.url is not UTF-8".to_owned())?;
            // The redis crate's error may quote the URL (password included): say what only.
            let client = redis::Client::open(url)
                .map_err(|_| "redis.url: not a valid redis:// URL".to_owned())?;
            Arc::new(RedisNonceStore::new(
                client,
                "rampart:sig:nonce:",
                REDIS_TIMEOUT,
            ))
        }
    };
    let kms = crate::crypto::kms_from_config(cfg).map_err(|e| format!("crypto.kek: {e}"))?;
    let dir = Arc::new(DeviceDirectory::new());
    match load(store, kms.as_ref(), &dir).await {
        Ok(n) => tracing::info!(devices = n, "signed-request devices loaded"),
        Err(StoreError::Crypto(_)) => {
            return Err(
                "crypto.kek cannot unwrap the data keys in the credential store (wrong key-encryption key?)"
                    .into(),
            );
        }
        Err(e) => return Err(format!("credential store (devices): {e}")),
    }
    let auth = Arc::new(SignatureAuth::new(Arc::clone(&dir), nonces, policy));
    let store = store.clone();
    tokio::spawn(async move {
        let mut seen = store.change_seq().await.ok();
        let mut failing = false;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = match store.change_seq().await {
                Ok(v) => v,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "credential store poll failed; keeping the loaded devices");
                        failing = true;
                    }
                    continue;
                }
            };
            if Some(now) == seen {
                continue;
            }
            match load(&store, kms.as_ref(), &dir).await {
                Ok(_) => {
                    seen = Some(now);
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "reloading devices failed; keeping the loaded devices");
                        failing = true;
                    }
                }
            }
        }
    });
    Ok(auth)
}
