//! Device credentials for signed requests (RFC 9421, `auth.modes` entry `signature`).
//!
//! Guards against: a copy of the database yielding a device key. An Ed25519 device keeps
//! only its public key here; an HMAC device's secret is stored only as a ciphertext in
//! the `secrets` table (name `device:<name>:<generation>`, under a data key, bound to
//! that name), written in the same transaction as the device row, and an HMAC device
//! cannot be created without `crypto.kek`. Rotation keeps the previous credential valid
//! until a chosen time (`--overlap`), then only the new one verifies; revocation stops
//! both and deletes the stored secrets. Records, errors and listings never carry a secret.
//!
//! Trusts: the database and the vault (whoever can write the database can add devices).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sqlx::Row as _;
use zeroize::Zeroizing;

use crate::StoreError;
use crate::apikeys::{MAX_FIELD_BYTES, MAX_LIST, RateLimitOverride, split};
use crate::db::{Store, with_pool};
use crate::revocation::BUMP_SEQ;
use crate::vault::Vault;
use crate::when::now_unix;

/// Most devices loaded into a gateway's memory (the cache is bounded; more is refused
/// at load with a warning, never silently truncated to a wrong answer).
pub const MAX_DEVICES: usize = 100_000;
/// Longest rotation overlap accepted (30 days).
pub const MAX_OVERLAP_S: i64 = 30 * 86_400;
/// Bytes of a generated HMAC secret.
pub const HMAC_SECRET_BYTES: usize = 32;

/// The algorithm a device signs with (its records's, never the request's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceAlg {
    HmacSha256,
    Ed25519,
}

impl DeviceAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceAlg::HmacSha256 => "hmac-sha256",
            DeviceAlg::Ed25519 => "ed25519",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceAlg> {
        match s {
            "hmac-sha256" => Some(DeviceAlg::HmacSha256),
            "ed25519" => Some(DeviceAlg::Ed25519),
            _ => None,
        }
    }
}

impl serde::Serialize for DeviceAlg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What [`Devices::create`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub name: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub alg: DeviceAlg,
    /// The Ed25519 public key (required for `ed25519`, refused for HMAC).
    pub public_key: Option<[u8; 32]>,
    pub rate_limit: RateLimitOverride,
}

/// A device's metadata. Never holds a secret (an Ed25519 public key is not one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceRecord {
    pub name: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub alg: DeviceAlg,
    /// 1 at creation, +1 per rotation.
    pub generation: i64,
    /// Standard base64 of the raw Ed25519 public key (Ed25519 devices only).
    pub public_key: Option<String>,
    /// Unix seconds until which the credential before the last rotation still verifies.
    pub previous_valid_until: Option<i64>,
    pub created: i64,
    pub rotated: Option<i64>,
    pub revoked: Option<i64>,
    pub rate_limit: RateLimitOverride,
}

/// A freshly generated HMAC secret, shown to the operator once: 32 random bytes,
/// base64url without padding (the HMAC key is the decoded bytes). Wiped on drop;
/// `Debug` is redacted and there is no `Display`.
pub struct DeviceSecret(Zeroizing<String>);

impl DeviceSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecret([redacted])")
    }
}

/// Key material a gateway verifies with. No `Debug` of the bytes; wiped on drop.
pub enum DeviceMaterial {
    Ed25519([u8; 32]),
    Hmac(Zeroizing<Vec<u8>>),
}

impl fmt::Debug for DeviceMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceMaterial::Ed25519(_) => "Ed25519(..)",
            DeviceMaterial::Hmac(_) => "Hmac([redacted])",
        })
    }
}

/// A usable device as the gateway loads it: its record, the current credential and,
/// during a rotation overlap, the previous one with the time it lapses.
#[derive(Debug)]
pub struct DeviceCredentials {
    pub record: DeviceRecord,
    pub current: DeviceMaterial,
    pub previous: Option<(DeviceMaterial, i64)>,
}

/// A device name: 1 to 128 letters, digits, `.`, `_`, `-`, starting with a letter or
/// digit (it is the signature's `keyid` and part of a secret's name).
pub fn valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FIELD_BYTES
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn check_token(what: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty()
        || s.len() > MAX_FIELD_BYTES
        || !s
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1 to {MAX_FIELD_BYTES} printable ASCII bytes without spaces, quotes or backslashes"
        )));
    }
    Ok(())
}

fn check_new(d: &NewDevice) -> Result<(), StoreError> {
    if !valid_device_name(&d.name) {
        return Err(StoreError::Invalid(format!(
            "the device name must be 1 to {MAX_FIELD_BYTES} letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )));
    }
    check_token("the tenant", &d.tenant)?;
    for (what, list) in [("scope", &d.scopes), ("role", &d.roles)] {
        if list.len() > MAX_LIST {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_LIST} {what}s per device"
            )));
        }
        for s in list {
            check_token(what, s)?;
        }
    }
    match (d.alg, d.public_key.is_some()) {
        (DeviceAlg::Ed25519, false) => Err(StoreError::Invalid(
            "an ed25519 device needs its public key (--public-key FILE)".into(),
        )),
        (DeviceAlg::HmacSha256, true) => Err(StoreError::Invalid(
            "an hmac-sha256 device has no public key: rampart generates its secret".into(),
        )),
        _ => Ok(()),
    }?;
    if let Some(t) = &d.rate_limit.tier {
        check_token("the rate-limit tier", t)?;
    }
    if d.rate_limit.per_minute == Some(0) || d.rate_limit.burst == Some(0) {
        return Err(StoreError::Invalid(
            "a rate-limit override must be at least 1".into(),
        ));
    }
    Ok(())
}

fn secret_name(device: &str, generation: i64) -> String {
    format!("device:{device}:{generation}")
}

fn no_kek() -> StoreError {
    StoreError::Config(
        "crypto.kek is not set: an hmac-sha256 device's secret is stored only encrypted, \
         so envelope encryption must be enabled ([crypto] kek = \"env:RAMPART_KEK\"); \
         or use --alg ed25519"
            .into(),
    )
}

/// 32 random bytes, and their base64url text.
fn new_hmac_secret() -> Result<(Zeroizing<Vec<u8>>, DeviceSecret), StoreError> {
    let mut raw = Zeroizing::new(vec![0u8; HMAC_SECRET_BYTES]);
    aws_lc_rs::rand::fill(raw.as_mut_slice()).map_err(|_| StoreError::Random)?;
    let text = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_slice()));
    Ok((raw, DeviceSecret(text)))
}

fn to_i64(v: Option<u64>) -> Result<Option<i64>, StoreError> {
    v.map(|n| {
        i64::try_from(n).map_err(|_| StoreError::Invalid("rate-limit value too large".into()))
    })
    .transpose()
}

macro_rules! columns {
    () => {
        "name, tenant, scopes, roles, alg, generation, public_key, prev_generation, \
         prev_public_key, prev_until, created_at, rotated_at, revoked_at, rate_per_minute, \
         rate_burst, rate_tier"
    };
}

/// A `devices` row: the record plus `(prev_generation, prev_public_key)`.
struct Row {
    record: DeviceRecord,
    prev_generation: Option<i64>,
    prev_public_key: Option<String>,
}

macro_rules! row_to_device {
    ($r:expr) => {{
        let r = $r;
        (|| -> Result<Row, StoreError> {
            let name: String = r.try_get("name")?;
            let alg: String = r.try_get("alg")?;
            let alg = DeviceAlg::parse(&alg)
                .ok_or_else(|| StoreError::Corrupt(format!("device {name}: unknown alg")))?;
            let u = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
            let record = DeviceRecord {
                tenant: r.try_get("tenant")?,
                scopes: split(&r.try_get::<String, _>("scopes")?),
                roles: split(&r.try_get::<String, _>("roles")?),
                alg,
                generation: r.try_get("generation")?,
                public_key: r.try_get("public_key")?,
                previous_valid_until: r.try_get("prev_until")?,
                created: r.try_get("created_at")?,
                rotated: r.try_get("rotated_at")?,
                revoked: r.try_get("revoked_at")?,
                rate_limit: RateLimitOverride {
                    per_minute: u(r.try_get("rate_per_minute")?),
                    burst: u(r.try_get("rate_burst")?),
                    tier: r.try_get("rate_tier")?,
                },
                name,
            };
            Ok(Row {
                record,
                prev_generation: r.try_get("prev_generation")?,
                prev_public_key: r.try_get("prev_public_key")?,
            })
        })()
    }};
}

fn decode_public(name: &str, b64: Option<&str>) -> Result<[u8; 32], StoreError> {
    let raw = b64
        .and_then(|s| STANDARD.decode(s).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("device {name}: malformed public key")))?;
    <[u8; 32]>::try_from(raw.as_slice())
        .map_err(|_| StoreError::Corrupt(format!("device {name}: malformed public key")))
}

/// Creates, rotates, revokes and lists devices. HMAC devices need the vault
/// (`crypto.kek`); without one only Ed25519 devices can be created or rotated.
pub struct Devices<'a> {
    store: &'a Store,
    vault: Option<&'a Vault>,
}

impl fmt::Debug for Devices<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Devices")
            .field("store", self.store)
            .field("vault", &self.vault.is_some())
            .finish()
    }
}

impl<'a> Devices<'a> {
    pub fn new(store: &'a Store, vault: Option<&'a Vault>) -> Self {
        Devices { store, vault }
    }

    /// Creates a device. For `hmac-sha256` the secret is returned once; it is stored only
    /// encrypted, in the same transaction as the device row.
    pub async fn create(
        &self,
        req: NewDevice,
    ) -> Result<(DeviceRecord, Option<DeviceSecret>), StoreError> {
        check_new(&req)?;
        let now = now_unix();
        let per_minute = to_i64(req.rate_limit.per_minute)?;
        let burst = to_i64(req.rate_limit.burst)?;
        let (sealed, shown) = match req.alg {
            DeviceAlg::HmacSha256 => {
                let vault = self.vault.ok_or_else(no_kek)?;
                let (raw, shown) = new_hmac_secret()?;
                let sname = secret_name(&req.name, 1);
                let (dek, ct) = vault.seal(&sname, &raw)?;
                (Some((sname, dek, ct)), Some(shown))
            }
            DeviceAlg::Ed25519 => (None, None),
        };
        let mut scopes = Vec::new();
        for s in req.scopes {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let mut roles = Vec::new();
        for s in req.roles {
            if !roles.contains(&s) {
                roles.push(s);
            }
        }
        let rec = DeviceRecord {
            name: req.name,
            tenant: req.tenant,
            scopes,
            roles,
            alg: req.alg,
            generation: 1,
            public_key: req.public_key.map(|k| STANDARD.encode(k)),
            previous_valid_until: None,
            created: now,
            rotated: None,
            revoked: None,
            rate_limit: req.rate_limit,
        };
        let (scopes, roles) = (rec.scopes.join(" "), rec.roles.join(" "));
        let inserted = with_pool!(&self.store.pool, |p| {
            async {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            let exists: Option<String> =
                sqlx::query_scalar("SELECT name FROM devices WHERE name = $1")
                    .bind(&rec.name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_some() {
                tx.rollback().await?;
                return Ok::<bool, sqlx::Error>(false);
            }
            sqlx::query(
                "INSERT INTO devices (name, tenant, scopes, roles, alg, generation, public_key, \
                 prev_generation, prev_public_key, prev_until, created_at, rotated_at, revoked_at, \
                 rate_per_minute, rate_burst, rate_tier, seq) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6, NULL, NULL, NULL, $7, NULL, NULL, $8, $9, $10, $11)",
            )
            .bind(&rec.name)
            .bind(&rec.tenant)
            .bind(&scopes)
            .bind(&roles)
            .bind(rec.alg.as_str())
            .bind(rec.public_key.as_deref())
            .bind(now)
            .bind(per_minute)
            .bind(burst)
            .bind(rec.rate_limit.tier.as_deref())
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            if let Some((sname, dek, ct)) = &sealed {
                insert_secret!(tx, sname, dek, ct, now, seq)?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await
        })?;
        if !inserted {
            return Err(StoreError::Invalid(format!(
                "a device named `{}` already exists (names are never reused, even after revoke)",
                rec.name
            )));
        }
        Ok((rec, shown))
    }

    /// Rotates a device's credential: a new HMAC secret (returned once) or the given
    /// Ed25519 public key. The previous credential stays valid for `overlap_s` seconds
    /// (0: not at all). `Ok(None)`: no such device.
    pub async fn rotate(
        &self,
        name: &str,
        public_key: Option<[u8; 32]>,
        overlap_s: i64,
    ) -> Result<Option<(DeviceRecord, Option<DeviceSecret>)>, StoreError> {
        if !(0..=MAX_OVERLAP_S).contains(&overlap_s) {
            return Err(StoreError::Invalid(format!(
                "the overlap must be between 0s and {}d",
                MAX_OVERLAP_S / 86_400
            )));
        }
        let Some(old) = self.get_row(name).await? else {
            return Ok(None);
        };
        if old.record.revoked.is_some() {
            return Err(StoreError::Invalid(format!(
                "device `{name}` is revoked; create a new device instead"
            )));
        }
        let now = now_unix();
        let generation = old.record.generation.saturating_add(1);
        let (sealed, shown, new_public) = match (old.record.alg, public_key) {
            (DeviceAlg::HmacSha256, None) => {
                let vault = self.vault.ok_or_else(no_kek)?;
                let (raw, shown) = new_hmac_secret()?;
                let sname = secret_name(name, generation);
                let (dek, ct) = vault.seal(&sname, &raw)?;
                (Some((sname, dek, ct)), Some(shown), None)
            }
            (DeviceAlg::Ed25519, Some(k)) => (None, None, Some(STANDARD.encode(k))),
            (DeviceAlg::HmacSha256, Some(_)) => {
                return Err(StoreError::Invalid(
                    "an hmac-sha256 device takes no public key: rampart generates its new secret"
                        .into(),
                ));
            }
            (DeviceAlg::Ed25519, None) => {
                return Err(StoreError::Invalid(
                    "rotating an ed25519 device needs the new public key (--public-key FILE)"
                        .into(),
                ));
            }
        };
        let prev_until = now.saturating_add(overlap_s);
        // The secret before the previous one is no longer needed by anybody.
        let stale = secret_name(name, old.record.generation.saturating_sub(1));
        let old_generation = old.record.generation;
        let updated = with_pool!(&self.store.pool, |p| {
            async {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            let n = sqlx::query(
                "UPDATE devices SET generation = $1, public_key = $2, prev_generation = generation, \
                 prev_public_key = public_key, prev_until = $3, rotated_at = $4, seq = $5 \
                 WHERE name = $6 AND generation = $7 AND revoked_at IS NULL",
            )
            .bind(generation)
            .bind(new_public.as_deref())
            .bind(prev_until)
            .bind(now)
            .bind(seq)
            .bind(name)
            .bind(old_generation)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                // Rotated or revoked concurrently: change nothing.
                tx.rollback().await?;
                return Ok::<bool, sqlx::Error>(false);
            }
            if let Some((sname, dek, ct)) = &sealed {
                insert_secret!(tx, sname, dek, ct, now, seq)?;
                sqlx::query("DELETE FROM secrets WHERE name = $1")
                    .bind(&stale)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await
        })?;
        if !updated {
            return Err(StoreError::Invalid(format!(
                "device `{name}` changed while rotating; try again"
            )));
        }
        Ok(self.get_row(name).await?.map(|r| (r.record, shown)))
    }

    /// Revokes a device: no credential of it verifies any more, and its stored secrets
    /// are deleted. `Ok(None)`: no such device. Revoking twice keeps the first time.
    pub async fn revoke(&self, name: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let Some(old) = self.get_row(name).await? else {
            return Ok(None);
        };
        let now = now_unix();
        let g = old.record.generation;
        let names = [secret_name(name, g), secret_name(name, g.saturating_sub(1))];
        with_pool!(&self.store.pool, |p| {
            async {
            let mut tx = p.begin().await?;
            let seq: i64 = sqlx::query_scalar(BUMP_SEQ).fetch_one(&mut *tx).await?;
            sqlx::query(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, $1), seq = $2 WHERE name = $3",
            )
            .bind(now)
            .bind(seq)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            for n in &names {
                sqlx::query("DELETE FROM secrets WHERE name = $1")
                    .bind(n)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        }
        .await
        })?;
        Ok(self.get_row(name).await?.map(|r| r.record))
    }

    /// One device's metadata.
    pub async fn get(&self, name: &str) -> Result<Option<DeviceRecord>, StoreError> {
        Ok(self.get_row(name).await?.map(|r| r.record))
    }

    async fn get_row(&self, name: &str) -> Result<Option<Row>, StoreError> {
        if !valid_device_name(name) {
            return Ok(None);
        }
        with_pool!(&self.store.pool, |p| {
            let row = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM devices WHERE name = $1"
            ))
            .bind(name)
            .fetch_optional(p)
            .await?;
            row.map(|r| row_to_device!(&r)).transpose()
        })
    }

    /// Every device's metadata (revoked ones included), oldest first.
    pub async fn list(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        Ok(self.rows().await?.into_iter().map(|r| r.record).collect())
    }

    async fn rows(&self) -> Result<Vec<Row>, StoreError> {
        with_pool!(&self.store.pool, |p| {
            let rows = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM devices ORDER BY created_at, name"
            ))
            .fetch_all(p)
            .await?;
            rows.iter().map(|r| row_to_device!(r)).collect()
        })
    }

    /// Every usable (not revoked) device with its key material, for a gateway's cache.
    /// HMAC devices whose secret cannot be decrypted (no vault, a data key created after
    /// the vault was opened, a corrupt row) are left out and named in the second list,
    /// so they are refused rather than half-loaded. At most [`MAX_DEVICES`].
    pub async fn load_credentials(
        &self,
        now: i64,
    ) -> Result<(Vec<DeviceCredentials>, Vec<String>), StoreError> {
        let rows = self.rows().await?;
        let secrets: Vec<(String, String)> = with_pool!(&self.store.pool, |p| async {
            let rows = sqlx::query(
                "SELECT name, ciphertext FROM secrets WHERE kind = 'device_hmac' ORDER BY name",
            )
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("ciphertext")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
        }
        .await)?;
        let find = |n: &str| {
            secrets
                .binary_search_by(|(k, _)| k.as_str().cmp(n))
                .ok()
                .and_then(|i| secrets.get(i))
                .map(|(_, ct)| ct.as_str())
        };
        let hmac = |device: &str, generation: i64| -> Option<DeviceMaterial> {
            let vault = self.vault?;
            let sname = secret_name(device, generation);
            let ct = find(&sname)?;
            let plain = vault.unseal(&sname, ct).ok()?;
            Some(DeviceMaterial::Hmac(Zeroizing::new(
                plain.as_slice().to_vec(),
            )))
        };
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for row in rows {
            let rec = row.record;
            if rec.revoked.is_some() {
                continue;
            }
            if out.len() >= MAX_DEVICES {
                skipped.push(rec.name);
                continue;
            }
            let live_prev = rec.previous_valid_until.is_some_and(|u| u > now);
            let (current, previous) = match rec.alg {
                DeviceAlg::Ed25519 => {
                    let cur = decode_public(&rec.name, rec.public_key.as_deref())?;
                    let prev = if live_prev {
                        row.prev_public_key
                            .as_deref()
                            .and_then(|k| decode_public(&rec.name, Some(k)).ok())
                            .zip(rec.previous_valid_until)
                            .map(|(k, u)| (DeviceMaterial::Ed25519(k), u))
                    } else {
                        None
                    };
                    (Some(DeviceMaterial::Ed25519(cur)), prev)
                }
                DeviceAlg::HmacSha256 => {
                    let prev = if live_prev {
                        row.prev_generation
                            .and_then(|g| hmac(&rec.name, g))
                            .zip(rec.previous_valid_until)
                    } else {
                        None
                    };
                    (hmac(&rec.name, rec.generation), prev)
                }
            };
            match current {
                Some(current) => out.push(DeviceCredentials {
                    record: rec,
                    current,
                    previous,
                }),
                None => skipped.push(rec.name),
            }
        }
        Ok((out, skipped))
    }
}

/// Inserts (or replaces) a device's encrypted HMAC secret inside the caller's transaction
/// (a macro: the transaction type differs per backend).
macro_rules! insert_secret {
    ($tx:expr, $name:expr, $dek:expr, $ct:expr, $now:expr, $seq:expr) => {
        sqlx::query(
            "INSERT INTO secrets (name, kind, dek_id, ciphertext, created_at, updated_at, seq) \
             VALUES ($1, 'device_hmac', $2, $3, $4, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, dek_id = excluded.dek_id, \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, seq = excluded.seq",
        )
        .bind($name)
        .bind($dek)
        .bind($ct)
        .bind($now)
        .bind($seq)
        .execute(&mut *$tx)
        .await
    };
}
use insert_secret;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn new(alg: DeviceAlg) -> NewDevice {
        NewDevice {
            name: "sensor-7".into(),
            tenant: "acme".into(),
            scopes: vec!["jobs".into()],
            roles: vec![],
            alg,
            public_key: (alg == DeviceAlg::Ed25519).then_some([1u8; 32]),
            rate_limit: RateLimitOverride::default(),
        }
    }

    #[test]
    fn new_device_checks() {
        assert!(check_new(&new(DeviceAlg::HmacSha256)).is_ok());
        assert!(check_new(&new(DeviceAlg::Ed25519)).is_ok());
        let mut d = new(DeviceAlg::Ed25519);
        d.public_key = None;
        assert!(check_new(&d).is_err());
        let mut d = new(DeviceAlg::HmacSha256);
        d.public_key = Some([0; 32]);
        assert!(check_new(&d).is_err());
        for bad in ["", "-x", "a b", "a:b", "a\"b", "é", &"x".repeat(129)] {
            let mut d = new(DeviceAlg::HmacSha256);
            d.name = bad.into();
            assert!(check_new(&d).is_err(), "{bad}");
        }
        assert_eq!(DeviceAlg::parse("ed25519"), Some(DeviceAlg::Ed25519));
        assert_eq!(DeviceAlg::parse("hs2019"), None);
    }

    proptest! {
        #[test]
        fn device_names_are_safe_secret_names(name in "\\PC{0,140}") {
            if valid_device_name(&name) {
                prop_assert!(name.len() <= MAX_FIELD_BYTES);
                prop_assert!(!name.contains(':'));
                prop_assert!(name.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
}
