//! Where private keys live. Callers see only [`KeyProvider`]; an HSM or KMS provider
//! implements the same trait.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::keys::{PublicKey, SigningKey, valid_key_id};
use crate::{KeyError, KeyringFile};

/// A source of private signing keys.
pub trait KeyProvider: Send + Sync {
    /// `env`, `file`, … (for messages).
    fn name(&self) -> &'static str;
    /// The key that signs now. `keyring` names the active key id for providers that hold
    /// several keys.
    fn load_active(&self, keyring: &KeyringFile) -> Result<SigningKey, KeyError>;
    /// Makes and stores a new private key; the caller records its public key.
    fn create(&self, key_id: &str) -> Result<SigningKey, KeyError>;
    /// Destroys the private part of a retired key (its public key stays in the keyring).
    fn retire(&self, key_id: &str) -> Result<(), KeyError>;
}

/// Reads environment variables; tests pass a map instead of the process environment.
pub trait EnvSource: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for std::collections::BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// `provider = "env"`: `SIGNING_PRIVATE_KEY` (PKCS#8 PEM), optional `SIGNING_PUBLIC_KEY`
/// (SPKI PEM, must match), `KEY_ID` (else `signing.key_id`, else `default`). Keys are
/// made and rotated outside rampart (a secret manager); `create` is refused.
pub struct EnvProvider<E: EnvSource = ProcessEnv> {
    env: E,
    key_id: Option<String>,
}

impl<E: EnvSource> EnvProvider<E> {
    pub fn new(env: E, configured_key_id: Option<String>) -> Self {
        Self {
            env,
            key_id: configured_key_id,
        }
    }

    /// The key id this provider will use.
    pub fn key_id(&self) -> String {
        self.env
            .var("KEY_ID")
            .filter(|s| !s.is_empty())
            .or_else(|| self.key_id.clone())
            .unwrap_or_else(|| "default".to_owned())
    }
}

impl<E: EnvSource> KeyProvider for EnvProvider<E> {
    fn name(&self) -> &'static str {
        "env"
    }

    fn load_active(&self, _keyring: &KeyringFile) -> Result<SigningKey, KeyError> {
        let id = self.key_id();
        let pem = Zeroizing::new(self.env.var("SIGNING_PRIVATE_KEY").ok_or_else(|| {
            KeyError::Config(
                "signing.provider = \"env\" needs SIGNING_PRIVATE_KEY (PKCS#8 PEM)".into(),
            )
        })?);
        let key = SigningKey::from_pem(&id, pem.as_bytes())?;
        if let Some(p) = self.env.var("SIGNING_PUBLIC_KEY").filter(|s| !s.is_empty()) {
            let public = PublicKey::from_pem(&id, p.as_bytes())?;
            if &public != key.public() {
                return Err(KeyError::Config(
                    "SIGNING_PUBLIC_KEY does not belong to SIGNING_PRIVATE_KEY".into(),
                ));
            }
        }
        Ok(key)
    }

    fn create(&self, _key_id: &str) -> Result<SigningKey, KeyError> {
        Err(KeyError::Unsupported(
            "signing.provider = \"env\": keys live in the secret manager; rampart keys generate \
             --print writes a new key to stdout for it"
                .into(),
        ))
    }

    fn retire(&self, _key_id: &str) -> Result<(), KeyError> {
        Ok(())
    }
}

/// `provider = "file"`: one PKCS#8 PEM file per key, `<dir>/<key_id>.pem`, mode 0600,
/// in a directory under the data root.
#[derive(Debug, Clone)]
pub struct FileProvider {
    dir: PathBuf,
}

impl FileProvider {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn key_path(&self, key_id: &str) -> PathBuf {
        self.dir.join(format!("{key_id}.pem"))
    }
}

impl KeyProvider for FileProvider {
    fn name(&self) -> &'static str {
        "file"
    }

    fn load_active(&self, keyring: &KeyringFile) -> Result<SigningKey, KeyError> {
        let id = keyring.active_id().ok_or_else(|| {
            KeyError::Config(format!(
                "no active signing key in {}: run `rampart keys generate`",
                keyring.path().display()
            ))
        })?;
        let path = self.key_path(id);
        let meta = std::fs::metadata(&path).map_err(|e| KeyError::io(&path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyError::Config(format!(
                "{}: a private key file must not be readable by group or others (chmod 600)",
                path.display()
            )));
        }
        let text = Zeroizing::new(std::fs::read(&path).map_err(|e| KeyError::io(&path, e))?);
        SigningKey::from_pem(id, &text)
    }

    fn create(&self, key_id: &str) -> Result<SigningKey, KeyError> {
        if !valid_key_id(key_id) {
            return Err(KeyError::Config(format!(
                "`{key_id}`: a key id uses only letters, digits, `_`, `.` and `-`"
            )));
        }
        let key = SigningKey::generate(key_id)?;
        let path = self.key_path(key_id);
        write_private(&path, key.to_pem().as_bytes())?;
        Ok(key)
    }

    fn retire(&self, key_id: &str) -> Result<(), KeyError> {
        let path = self.key_path(key_id);
        if let Ok(meta) = std::fs::metadata(&path) {
            // Overwrite before unlinking: the bytes do not linger in a reused block.
            let len = usize::try_from(meta.len()).unwrap_or(0);
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) {
                let _ = f.write_all(&vec![0u8; len]);
                let _ = f.sync_all();
            }
            std::fs::remove_file(&path).map_err(|e| KeyError::io(&path, e))?;
        }
        Ok(())
    }
}

/// Creates `path` with mode 0600, failing if it exists.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KeyError::io(path, e))?;
    f.write_all(bytes).map_err(|e| KeyError::io(path, e))?;
    f.sync_all().map_err(|e| KeyError::io(path, e))
}
