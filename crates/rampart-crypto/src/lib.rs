//! rampart's signing keyring: Ed25519 keys (through aws-lc-rs) behind a provider trait,
//! the retained public keys that keep old signatures verifiable after a rotation, and the
//! `SHA256:` fingerprints of DESIGN.md §6; and [`envelope`] encryption of secrets at rest
//! (AES-256-GCM data keys wrapped by a key-encryption key behind the [`Kms`] trait).
//!
//! Guards against: private keys leaking through logs or core dumps of freed memory (secret
//! types have no `Debug` and are wiped on drop), a signature made by a key nobody can
//! later check (every key that ever signed stays in the keyring file), key-id confusion (a
//! key id bound to one public key forever), key files readable by others (private key
//! files are created 0600 and refused when group- or world-readable). Trusts: the data
//! root checks of `rampart-config`, the process environment for the `env` provider, and
//! aws-lc-rs for the primitives.
//!
//! Callers sign with [`Keyring::sign`] (the active key) and publish
//! [`Keyring::public_keys`]; verifiers that hold only public keys use [`TrustedKeys`].
//! A new provider (an HSM, a KMS) implements [`KeyProvider`]; no caller changes.
//!
//! ```
//! use rampart_crypto::SigningKey;
//! let key = SigningKey::generate("audit-2026").unwrap();
//! let sig = key.sign(b"hello");
//! assert!(key.public().verify(b"hello", &sig));
//! assert!(key.public().fingerprint().starts_with("SHA256:"));
//! ```

#![forbid(unsafe_code)]

pub mod bundle;
pub mod dsse;
pub mod envelope;
mod keyring;
mod keys;
mod provider;

pub use envelope::{DataKey, EnvelopeError, Kek, Keyset, Kms, LocalKms, Plaintext};
pub use keyring::{KeyEntry, KeyStatus, Keyring, KeyringFile, TrustedKeys};
pub use keys::{PublicKey, Signature, SigningKey, fingerprint, valid_key_id};
pub use provider::{EnvProvider, EnvSource, FileProvider, KeyProvider, ProcessEnv};

/// Why a key or keyring could not be used. Each variant says whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Configuration or operator error: a key is missing, malformed or in the wrong place.
    #[error("{0}")]
    Config(String),
    /// The key material is not a valid Ed25519 key (the text is never echoed).
    #[error("{what} is not a valid Ed25519 key in PEM form")]
    BadKey { what: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The keyring file is malformed or inconsistent.
    #[error("keyring {path}: {message}")]
    Keyring { path: String, message: String },
    /// The provider cannot do this (e.g. rotating keys held in the environment).
    #[error("{0}")]
    Unsupported(String),
    /// A failure inside the crypto library: a bug or a broken system RNG.
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

impl KeyError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
