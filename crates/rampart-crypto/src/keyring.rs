//! The keyring file (every public key that ever signed, with its status) and the
//! [`Keyring`] that signs with the active key.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keys::{PublicKey, Signature, SigningKey, valid_key_id};
use crate::{KeyError, KeyProvider};

/// Whether a key signs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Retired,
}

/// One key of the keyring file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub key_id: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// Raw 32-byte public key, standard base64.
    pub public_key: String,
    pub fingerprint: String,
    /// Unix seconds.
    pub created: u64,
    pub status: KeyStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    version: u32,
    keys: Vec<KeyEntry>,
}

/// The keyring file (`keyring.json`): public keys only, so it may be copied to auditors.
#[derive(Debug, Clone)]
pub struct KeyringFile {
    path: PathBuf,
    keys: Vec<KeyEntry>,
}

impl KeyringFile {
    /// Reads `path`; a missing file is an empty keyring.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let keys = match std::fs::read(path) {
            Ok(b) => {
                let body: FileBody = serde_json::from_slice(&b).map_err(|e| KeyError::Keyring {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                if body.version != 1 {
                    return Err(KeyError::Keyring {
                        path: path.display().to_string(),
                        message: format!("unknown version {}", body.version),
                    });
                }
                body.keys
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(KeyError::io(path, e)),
        };
        let f = Self {
            path: path.to_owned(),
            keys,
        };
        f.check()?;
        Ok(f)
    }

    fn check(&self) -> Result<(), KeyError> {
        let err = |message: String| KeyError::Keyring {
            path: self.path.display().to_string(),
            message,
        };
        let mut seen = std::collections::BTreeSet::new();
        for k in &self.keys {
            if !valid_key_id(&k.key_id) || !seen.insert(k.key_id.as_str()) {
                return Err(err(format!("key id `{}` is invalid or repeated", k.key_id)));
            }
            let p =
                entry_public(k).ok_or_else(|| err(format!("key `{}` is malformed", k.key_id)))?;
            if p.fingerprint() != k.fingerprint {
                return Err(err(format!(
                    "key `{}`: fingerprint does not match the key",
                    k.key_id
                )));
            }
        }
        if self
            .keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .count()
            > 1
        {
            return Err(err("more than one active key".into()));
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &[KeyEntry] {
        &self.keys
    }

    pub fn active_id(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.status == KeyStatus::Active)
            .map(|k| k.key_id.as_str())
    }

    /// Every public key, oldest first.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys.iter().filter_map(entry_public).collect()
    }

    /// Adds `key` as the active key (earlier keys become retired). A key id already
    /// bound to another public key is refused.
    pub fn add_active(&mut self, key: &PublicKey) -> Result<(), KeyError> {
        if let Some(e) = self.keys.iter().find(|k| k.key_id == key.key_id())
            && entry_public(e).as_ref() != Some(key)
        {
            return Err(KeyError::Keyring {
                path: self.path.display().to_string(),
                message: format!(
                    "key id `{}` already names a different key; pick a new key id",
                    key.key_id()
                ),
            });
        }
        for k in &mut self.keys {
            k.status = if k.key_id == key.key_id() {
                KeyStatus::Active
            } else {
                KeyStatus::Retired
            };
        }
        if !self.keys.iter().any(|k| k.key_id == key.key_id()) {
            self.keys.push(KeyEntry {
                key_id: key.key_id().to_owned(),
                algorithm: "ed25519".into(),
                public_key: STANDARD.encode(key.raw()),
                fingerprint: key.fingerprint().to_owned(),
                created: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                status: KeyStatus::Active,
            });
        }
        Ok(())
    }

    /// Writes the file atomically (temporary file, fsync, rename), mode 0640.
    pub fn save(&self) -> Result<(), KeyError> {
        let body = FileBody {
            version: 1,
            keys: self.keys.clone(),
        };
        let mut text = serde_json::to_vec_pretty(&body).map_err(|e| KeyError::Keyring {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        text.push(b'\n');
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(|e| KeyError::io(&tmp, e))?;
        f.write_all(&text).map_err(|e| KeyError::io(&tmp, e))?;
        f.sync_all().map_err(|e| KeyError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| KeyError::io(&self.path, e))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn entry_public(k: &KeyEntry) -> Option<PublicKey> {
    if k.algorithm != "ed25519" {
        return None;
    }
    let raw = STANDARD.decode(&k.public_key).ok()?;
    let raw = <[u8; 32]>::try_from(raw.as_slice()).ok()?;
    Some(PublicKey::new(k.key_id.clone(), raw))
}

/// Public keys only: what a verifier needs.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let f = KeyringFile::load(path)?;
        if f.entries().is_empty() {
            return Err(KeyError::Config(format!(
                "{}: no keyring here (or it is empty)",
                path.display()
            )));
        }
        Ok(Self::new(f.public_keys()))
    }
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }
    pub fn find(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.key_id() == key_id)
    }
}

/// The active signing key plus every retained public key.
pub struct Keyring {
    active: SigningKey,
    file: KeyringFile,
}

impl Keyring {
    /// Opens the keyring for signing: the provider's active key, recorded in the keyring
    /// file if it is not there yet (an `env` key after a rotation in the secret manager).
    pub fn open(provider: &dyn KeyProvider, keyring_path: &Path) -> Result<Self, KeyError> {
        let mut file = KeyringFile::load(keyring_path)?;
        let active = provider.load_active(&file)?;
        if file.active_id() != Some(active.key_id())
            || !file.public_keys().contains(active.public())
        {
            file.add_active(active.public())?;
            file.save()?;
        }
        Ok(Self { active, file })
    }

    /// Makes the first key (refused when the keyring already has an active key).
    pub fn generate(
        provider: &dyn KeyProvider,
        keyring_path: &Path,
        key_id: &str,
    ) -> Result<Self, KeyError> {
        let file = KeyringFile::load(keyring_path)?;
        if let Some(id) = file.active_id() {
            return Err(KeyError::Config(format!(
                "{} already has an active key (`{id}`): use `rampart keys rotate`",
                keyring_path.display()
            )));
        }
        Self::install(provider, file, key_id)
    }

    /// Makes a new active key; the old one is retired (its private part destroyed, its
    /// public key kept so earlier signatures still verify).
    pub fn rotate(
        provider: &dyn KeyProvider,
        keyring_path: &Path,
        new_key_id: &str,
    ) -> Result<Self, KeyError> {
        let file = KeyringFile::load(keyring_path)?;
        let old = file.active_id().map(str::to_owned);
        let ring = Self::install(provider, file, new_key_id)?;
        if let Some(old) = old {
            provider.retire(&old)?;
        }
        Ok(ring)
    }

    fn install(
        provider: &dyn KeyProvider,
        mut file: KeyringFile,
        key_id: &str,
    ) -> Result<Self, KeyError> {
        if file.entries().iter().any(|k| k.key_id == key_id) {
            return Err(KeyError::Config(format!(
                "key id `{key_id}` is already in the keyring; pick a new one"
            )));
        }
        let active = provider.create(key_id)?;
        file.add_active(active.public())?;
        file.save()?;
        Ok(Self { active, file })
    }

    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// Signs with the active key.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.active.sign(msg)
    }

    /// Every public key (active and retired), oldest first.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.file.public_keys()
    }

    pub fn trusted(&self) -> TrustedKeys {
        TrustedKeys::new(self.public_keys())
    }

    pub fn file(&self) -> &KeyringFile {
        &self.file
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::{EnvProvider, FileProvider};

    #[test]
    fn file_provider_generate_rotate_keeps_old_public_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ring_path = dir.path().join("keyring.json");
        let p = FileProvider::new(dir.path());
        let r1 = Keyring::generate(&p, &ring_path, "k1").unwrap();
        let sig1 = r1.sign(b"old record");
        let mode = std::fs::metadata(p.key_path("k1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Keyring::generate(&p, &ring_path, "k9").is_err());
        let r2 = Keyring::rotate(&p, &ring_path, "k2").unwrap();
        assert_eq!(r2.active().key_id(), "k2");
        assert!(!p.key_path("k1").exists(), "retired private key destroyed");
        let trusted = TrustedKeys::from_file(&ring_path).unwrap();
        assert!(trusted.find("k1").unwrap().verify(b"old record", &sig1));
        assert_eq!(trusted.keys().len(), 2);
        let again = Keyring::open(&p, &ring_path).unwrap();
        assert_eq!(again.active().key_id(), "k2");
        assert!(
            Keyring::rotate(&p, &ring_path, "k1").is_err(),
            "key id reuse"
        );
    }

    #[test]
    fn file_provider_refuses_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring_path = dir.path().join("keyring.json");
        let p = FileProvider::new(dir.path());
        Keyring::generate(&p, &ring_path, "k1").unwrap();
        std::fs::set_permissions(p.key_path("k1"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keyring::open(&p, &ring_path).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn env_provider_records_its_key_and_checks_public() {
        let dir = tempfile::tempdir().unwrap();
        let ring_path = dir.path().join("keyring.json");
        let k = SigningKey::generate("x").unwrap();
        let other = SigningKey::generate("x").unwrap();
        let mut env = BTreeMap::new();
        env.insert("SIGNING_PRIVATE_KEY".to_owned(), k.to_pem().to_string());
        env.insert("KEY_ID".to_owned(), "env-1".to_owned());
        let r = Keyring::open(&EnvProvider::new(env.clone(), None), &ring_path).unwrap();
        assert_eq!(r.active().key_id(), "env-1");
        assert_eq!(r.public_keys().len(), 1);
        env.insert("SIGNING_PUBLIC_KEY".to_owned(), other.public().to_pem());
        assert!(Keyring::open(&EnvProvider::new(env.clone(), None), &ring_path).is_err());
        // A different key under the same id is refused (key ids are bound forever).
        let mut env2 = BTreeMap::new();
        env2.insert("SIGNING_PRIVATE_KEY".to_owned(), other.to_pem().to_string());
        env2.insert("KEY_ID".to_owned(), "env-1".to_owned());
        assert!(Keyring::open(&EnvProvider::new(env2.clone(), None), &ring_path).is_err());
        // Rotation in the secret manager: a new id is recorded, the old one retired.
        env2.insert("KEY_ID".to_owned(), "env-2".to_owned());
        let r = Keyring::open(&EnvProvider::new(env2, None), &ring_path).unwrap();
        assert_eq!(r.public_keys().len(), 2);
        assert_eq!(r.file().active_id(), Some("env-2"));
        let missing = BTreeMap::<String, String>::new();
        assert!(Keyring::open(&EnvProvider::new(missing, None), &ring_path).is_err());
    }
}
