//! Secrets at rest: data keys (wrapped under the key-encryption key) and the secrets
//! encrypted under them, in the `data_keys` and `secrets` tables (migration 2).
//!
//! [`Vault::open`] unwraps every stored data key at once, so a wrong `crypto.kek` is found
//! when the gateway starts, not when a device first signs. Rotation adds a primary and
//! keeps the old keys (`--reencrypt` moves every secret in the same transaction); a KEK
//! change rewraps every data key in one transaction and touches no secret.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rampart_crypto::envelope::{DataKey, EnvelopeError, Keyset, Kms, Plaintext, ciphertext_key_id};
use sqlx::Row as _;

use crate::StoreError;
use crate::db::{Store, with_pool};
use crate::revocation::BUMP_SEQ;
use crate::when::now_unix;

/// Longest secret name.
pub const MAX_SECRET_NAME: usize = 200;
/// Largest secret (device HMAC keys are 32 bytes; this leaves room for PEM blobs).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// What `crypto status` and the metrics show: no key material, and readable without the
/// KEK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// Data keys ever created (rotation keeps old ones, so this never decreases).
    pub data_keys: i64,
    pub primary_id: Option<String>,
    /// Unix seconds the primary data key was created.
    pub primary_created: Option<i64>,
    pub secrets: i64,
    /// Providers that wrapped the stored keys (`local`).
    pub kms: Vec<String>,
}

/// A stored secret's metadata (never its value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretMeta {
    pub name: String,
    pub kind: String,
    pub dek_id: String,
    pub created: i64,
    pub updated: i64,
}

struct KeyRow {
    id: String,
    version: u32,
    wrapped: Vec<u8>,
    primary: bool,
}

fn b64(v: &[u8]) -> String {
    STANDARD.encode(v)
}

fn unb64(s: &str, what: &str) -> Result<Vec<u8>, StoreError> {
    STANDARD
        .decode(s)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not base64")))
}

fn secret_context(name: &str) -> Vec<u8> {
    let mut c = b"rampart-secret\0".to_vec();
    c.extend_from_slice(name.as_bytes());
    c
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || name.len() > MAX_SECRET_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-:/@".contains(&b))
    {
        return Err(StoreError::Invalid(format!(
            "a secret name is 1 to {MAX_SECRET_NAME} letters, digits or `_.-:/@`"
        )));
    }
    Ok(())
}

impl Store {
    /// Data-key and secret counts, the primary key and its age: what `crypto status`
    /// prints when no KEK is configured, and what the metrics read.
    pub async fn key_stats(&self) -> Result<KeyStats, StoreError> {
        with_pool!(&self.pool, |p| async {
            let data_keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM data_keys")
                .fetch_one(p)
                .await?;
            let secrets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets")
                .fetch_one(p)
                .await?;
            let primary = sqlx::query("SELECT id, created_at FROM data_keys WHERE is_primary = 1")
                .fetch_optional(p)
                .await?;
            let (primary_id, primary_created) = match primary {
                Some(r) => (Some(r.try_get("id")?), Some(r.try_get("created_at")?)),
                None => (None, None),
            };
            let kms: Vec<String> =
                sqlx::query_scalar("SELECT DISTINCT kms FROM data_keys ORDER BY kms")
                    .fetch_all(p)
                    .await?;
            Ok::<_, StoreError>(KeyStats {
                data_keys,
                primary_id,
                primary_created,
                secrets,
                kms,
            })
        }
        .await)
    }

    /// Every secret's metadata, by name.
    pub async fn list_secrets(&self) -> Result<Vec<SecretMeta>, StoreError> {
        with_pool!(&self.pool, |p| async {
            let rows = sqlx::query(
                "SELECT name, kind, dek_id, created_at, updated_at FROM secrets ORDER BY name",
            )
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(SecretMeta {
                        name: r.try_get("name")?,
                        kind: r.try_get("kind")?,
                        dek_id: r.try_get("dek_id")?,
                        created: r.try_get("created_at")?,
                        updated: r.try_get("updated_at")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        }
        .await)
    }

    async fn key_rows(&self) -> Result<Vec<KeyRow>, StoreError> {
        with_pool!(&self.pool, |p| async {
            let rows = sqlx::query(
                "SELECT id, version, wrapped, is_primary FROM data_keys ORDER BY version",
            )
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    let version: i64 = r.try_get("version")?;
                    let wrapped: String = r.try_get("wrapped")?;
                    let primary: i64 = r.try_get("is_primary")?;
                    Ok(KeyRow {
                        id: r.try_get("id")?,
                        version: u32::try_from(version)
                            .map_err(|_| StoreError::Corrupt("data key version".into()))?,
                        wrapped: unb64(&wrapped, "a wrapped data key")?,
                        primary: primary == 1,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        }
        .await)
    }
}

/// The unwrapped data keys of a store, for encrypting and decrypting secrets. No
/// `Debug`; the keys are wiped when it is dropped.
pub struct Vault {
    store: Store,
    kms: Arc<dyn Kms>,
    keys: Keyset,
}

impl Vault {
    /// Unwraps every stored data key with `kms`. With `create_if_empty`, an empty store
    /// gets its first (primary) data key. A key that does not unwrap is
    /// [`StoreError::Crypto`] with [`EnvelopeError::Unwrap`]: the wrong `crypto.kek`.
    pub async fn open(
        store: Store,
        kms: Arc<dyn Kms>,
        create_if_empty: bool,
    ) -> Result<Vault, StoreError> {
        let mut rows = store.key_rows().await?;
        if rows.is_empty() && create_if_empty {
            let first = DataKey::generate(1)?;
            let wrapped = kms.wrap(&first)?;
            let name = kms.name();
            let now = now_unix();
            with_pool!(&store.pool, |p| async {
                let mut tx = p.begin().await?;
                let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
                // Under the change-counter lock: another gateway may have won the race.
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM data_keys")
                    .fetch_one(&mut *tx)
                    .await?;
                if n == 0 {
                    sqlx::query(
                        "INSERT INTO data_keys (id, version, wrapped, kms, created_at, \
                         is_primary, seq) VALUES ($1, 1, $2, $3, $4, 1, $5)",
                    )
                    .bind(first.id())
                    .bind(b64(&wrapped))
                    .bind(name)
                    .bind(now)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok::<(), sqlx::Error>(())
            }
            .await)?;
            rows = store.key_rows().await?;
        }
        let mut keys = Keyset::new();
        for r in rows {
            let k = kms.unwrap_key(&r.id, r.version, &r.wrapped)?;
            keys.insert(k, r.primary);
        }
        Ok(Vault { store, kms, keys })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn keyset(&self) -> &Keyset {
        &self.keys
    }

    pub fn kms_name(&self) -> &'static str {
        self.kms.name()
    }

    /// Encrypts under the primary data key, bound to `context`.
    pub fn encrypt(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(self.keys.encrypt(plaintext, context)?)
    }

    /// Decrypts a ciphertext of any stored data key.
    pub fn decrypt(&self, ciphertext: &[u8], context: &[u8]) -> Result<Plaintext, StoreError> {
        Ok(self.keys.decrypt(ciphertext, context)?)
    }

    /// Stores (or replaces) a secret, encrypted under the primary data key and bound to
    /// its name.
    pub async fn put_secret(
        &self,
        name: &str,
        kind: &str,
        plaintext: &[u8],
    ) -> Result<(), StoreError> {
        check_name(name)?;
        check_name(kind)?;
        if plaintext.len() > MAX_SECRET_BYTES {
            return Err(StoreError::Invalid(format!(
                "a secret is at most {MAX_SECRET_BYTES} bytes"
            )));
        }
        let ct = self.keys.encrypt(plaintext, &secret_context(name))?;
        let dek = ciphertext_key_id(&ct)?.to_owned();
        let now = now_unix();
        with_pool!(&self.store.pool, |p| {
            async {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO secrets (name, kind, dek_id, ciphertext, created_at, updated_at, seq) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) \
                 ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, dek_id = excluded.dek_id, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, seq = excluded.seq",
            )
            .bind(name)
            .bind(kind)
            .bind(&dek)
            .bind(b64(&ct))
            .bind(now)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        }
        .await
        })?;
        Ok(())
    }

    /// Encrypts `plaintext` as the secret `name` would be (bound to the name, under the
    /// primary data key), for writers that insert the row in their own transaction:
    /// `(data-key id, base64 ciphertext)`.
    pub(crate) fn seal(
        &self,
        name: &str,
        plaintext: &[u8],
    ) -> Result<(String, String), StoreError> {
        check_name(name)?;
        let ct = self.keys.encrypt(plaintext, &secret_context(name))?;
        let dek = ciphertext_key_id(&ct)?.to_owned();
        Ok((dek, b64(&ct)))
    }

    /// Decrypts a stored (base64) ciphertext of the secret `name`.
    pub(crate) fn unseal(&self, name: &str, ct: &str) -> Result<Plaintext, StoreError> {
        let ct = unb64(ct, "a secret ciphertext")?;
        Ok(self.keys.decrypt(&ct, &secret_context(name))?)
    }

    /// A secret's value; `None` when there is no such secret.
    pub async fn get_secret(&self, name: &str) -> Result<Option<Plaintext>, StoreError> {
        check_name(name)?;
        let ct: Option<String> = with_pool!(&self.store.pool, |p| {
            sqlx::query_scalar("SELECT ciphertext FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await
        })?;
        let Some(ct) = ct else { return Ok(None) };
        let ct = unb64(&ct, "a secret ciphertext")?;
        Ok(Some(self.keys.decrypt(&ct, &secret_context(name))?))
    }

    /// Deletes a secret; `false` when there was none.
    pub async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        let n = with_pool!(&self.store.pool, |p| async {
            let mut tx = p.begin().await?;
            let _: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            let n = sqlx::query("DELETE FROM secrets WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(n)
        }
        .await)?;
        Ok(n > 0)
    }

    /// Decrypts every stored secret; returns how many did and the names that did not.
    pub async fn verify_all(&self) -> Result<(usize, Vec<String>), StoreError> {
        let rows = self.secret_rows().await?;
        let mut ok = 0;
        let mut bad = Vec::new();
        for (name, ct) in rows {
            match self.keys.decrypt(&ct, &secret_context(&name)) {
                Ok(_) => ok += 1,
                Err(_) => bad.push(name),
            }
        }
        Ok((ok, bad))
    }

    async fn secret_rows(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        with_pool!(&self.store.pool, |p| async {
            let rows = sqlx::query("SELECT name, ciphertext FROM secrets ORDER BY name")
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    let ct: String = r.try_get("ciphertext")?;
                    Ok((r.try_get("name")?, unb64(&ct, "a secret ciphertext")?))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        }
        .await)
    }

    /// Makes a new primary data key (old keys stay and still decrypt). With `reencrypt`,
    /// every secret is re-encrypted under it in the same transaction. Returns the new
    /// key's id and the number of secrets re-encrypted.
    pub async fn rotate(&mut self, reencrypt: bool) -> Result<(String, usize), StoreError> {
        let version = self
            .keys
            .keys()
            .map(DataKey::version)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("data key version overflow".into()))?;
        let key = DataKey::generate(version)?;
        let wrapped = b64(&self.kms.wrap(&key)?);
        let kms = self.kms.name();
        let now = now_unix();
        let id = key.id().to_owned();
        let new_key = &key;
        let keys = &self.keys;
        let count = with_pool!(&self.store.pool, |p| async {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            sqlx::query("UPDATE data_keys SET is_primary = 0, seq = $1 WHERE is_primary = 1")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO data_keys (id, version, wrapped, kms, created_at, is_primary, seq) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6)",
            )
            .bind(&id)
            .bind(i64::from(version))
            .bind(&wrapped)
            .bind(kms)
            .bind(now)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            let mut count = 0usize;
            if reencrypt {
                let rows = sqlx::query("SELECT name, ciphertext FROM secrets")
                    .fetch_all(&mut *tx)
                    .await?;
                for r in &rows {
                    let name: String = r.try_get("name")?;
                    let ct: String = r.try_get("ciphertext")?;
                    let ctx = secret_context(&name);
                    let plain = keys.decrypt(&unb64(&ct, "a secret ciphertext")?, &ctx)?;
                    let new_ct = new_key.encrypt(&plain, &ctx)?;
                    sqlx::query(
                        "UPDATE secrets SET ciphertext = $1, dek_id = $2, updated_at = $3, \
                         seq = $4 WHERE name = $5",
                    )
                    .bind(b64(&new_ct))
                    .bind(&id)
                    .bind(now)
                    .bind(seq)
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                    count += 1;
                }
            }
            tx.commit().await?;
            Ok::<usize, StoreError>(count)
        }
        .await)?;
        self.keys.insert(key, true);
        Ok((id, count))
    }

    /// Rewraps every data key under `new_kms` in one transaction (no secret is
    /// re-encrypted). Every stored key must unwrap under the current KEK first; if one
    /// does not, nothing changes. Returns the number of keys rewrapped.
    pub async fn rewrap(&mut self, new_kms: Arc<dyn Kms>) -> Result<usize, StoreError> {
        let old = Arc::clone(&self.kms);
        let name = new_kms.name();
        let count = with_pool!(&self.store.pool, |p| async {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            let rows = sqlx::query("SELECT id, version, wrapped FROM data_keys")
                .fetch_all(&mut *tx)
                .await?;
            let mut count = 0usize;
            for r in &rows {
                let id: String = r.try_get("id")?;
                let version: i64 = r.try_get("version")?;
                let version = u32::try_from(version)
                    .map_err(|_| StoreError::Corrupt("data key version".into()))?;
                let wrapped: String = r.try_get("wrapped")?;
                let key = old.unwrap_key(&id, version, &unb64(&wrapped, "a wrapped data key")?)?;
                let rewrapped = new_kms.wrap(&key)?;
                // Prove the new wrapping opens before it replaces the old one.
                new_kms.unwrap_key(&id, version, &rewrapped)?;
                sqlx::query("UPDATE data_keys SET wrapped = $1, kms = $2, seq = $3 WHERE id = $4")
                    .bind(b64(&rewrapped))
                    .bind(name)
                    .bind(seq)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                count += 1;
            }
            tx.commit().await?;
            Ok::<usize, StoreError>(count)
        }
        .await)?;
        self.kms = new_kms;
        Ok(count)
    }
}

impl From<EnvelopeError> for StoreError {
    fn from(e: EnvelopeError) -> Self {
        StoreError::Crypto(e)
    }
}
