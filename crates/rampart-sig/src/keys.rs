//! Device keys: the algorithm is the device's, fixed when the device was created, and never
//! taken from the request.

use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// A signature algorithm a device may use (RFC 9421 §3.3 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `hmac-sha256`: a shared secret.
    HmacSha256,
    /// `ed25519`: rampart holds only the public key.
    Ed25519,
}

impl Algorithm {
    /// The RFC 9421 registry name, as in an `alg` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// The algorithm for a registry name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "ed25519" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }
}

/// Why a key could not be read. The operator's fault (a bad key file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an `ssh-ed25519` OpenSSH public key line.
    #[error("not an OpenSSH ssh-ed25519 public key")]
    OpenSsh,
    /// Not a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding an Ed25519 key.
    #[error("not a PEM Ed25519 SubjectPublicKeyInfo")]
    Spki,
    /// An HMAC secret shorter than 16 bytes.
    #[error("HMAC secret too short")]
    ShortSecret,
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE, AlgorithmIdentifier
/// { id-Ed25519 }, BIT STRING of 33 bytes (0 unused bits + 32-byte key).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

enum Material {
    Hmac(Box<hmac::Key>),
    Ed25519([u8; 32]),
}

/// A key a device signs with, as the verifier holds it. No `Debug` of the material: HMAC
/// keys are secrets (aws-lc-rs keeps and wipes the key schedule; the bytes given to
/// [`DeviceKey::hmac`] are wiped by the caller's `Zeroizing`).
pub struct DeviceKey {
    material: Material,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey")
            .field("alg", &self.alg().name())
            .finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// An HMAC-SHA256 key from the decoded secret bytes (at least 16).
    pub fn hmac(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 16 {
            return Err(KeyError::ShortSecret);
        }
        Ok(DeviceKey {
            material: Material::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
        })
    }

    /// An Ed25519 public key from its 32 raw bytes.
    pub fn ed25519(public: [u8; 32]) -> Self {
        DeviceKey {
            material: Material::Ed25519(public),
        }
    }

    /// An Ed25519 public key from an OpenSSH line: `ssh-ed25519 AAAA... [comment]`.
    pub fn ed25519_from_openssh(line: &str) -> Result<Self, KeyError> {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("ssh-ed25519") {
            return Err(KeyError::OpenSsh);
        }
        let blob = STANDARD
            .decode(words.next().ok_or(KeyError::OpenSsh)?)
            .map_err(|_| KeyError::OpenSsh)?;
        // string "ssh-ed25519", string key(32)
        let mut want = Vec::with_capacity(51);
        want.extend_from_slice(&11u32.to_be_bytes());
        want.extend_from_slice(b"ssh-ed25519");
        want.extend_from_slice(&32u32.to_be_bytes());
        let key = blob
            .strip_prefix(want.as_slice())
            .ok_or(KeyError::OpenSsh)?;
        let key: [u8; 32] = key.try_into().map_err(|_| KeyError::OpenSsh)?;
        Ok(Self::ed25519(key))
    }

    /// An Ed25519 public key from a PEM `-----BEGIN PUBLIC KEY-----` block.
    pub fn ed25519_from_spki_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_body(pem, "PUBLIC KEY").ok_or(KeyError::Spki)?;
        let key = der
            .strip_prefix(ED25519_SPKI_PREFIX.as_slice())
            .ok_or(KeyError::Spki)?;
        let key: [u8; 32] = key.try_into().map_err(|_| KeyError::Spki)?;
        Ok(Self::ed25519(key))
    }

    /// An Ed25519 public key from either text form: an OpenSSH `ssh-ed25519` line or a
    /// PEM SubjectPublicKeyInfo block.
    pub fn ed25519_from_text(text: &str) -> Result<Self, KeyError> {
        if text.contains("-----BEGIN") {
            Self::ed25519_from_spki_pem(text)
        } else {
            Self::ed25519_from_openssh(text.trim())
        }
    }

    /// The raw 32-byte public key of an Ed25519 device key (`None` for HMAC: a secret is
    /// never handed out).
    pub fn ed25519_public(&self) -> Option<[u8; 32]> {
        match self.material {
            Material::Ed25519(k) => Some(k),
            Material::Hmac(_) => None,
        }
    }

    /// The device's algorithm.
    pub fn alg(&self) -> Algorithm {
        match self.material {
            Material::Hmac(_) => Algorithm::HmacSha256,
            Material::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// Does `sig` sign `base` under this key? HMAC tags are compared in constant time.
    pub fn verify(&self, base: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(key) => hmac::verify(key, base, sig).is_ok(),
            Material::Ed25519(public) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, public)
                    .verify(base, sig)
                    .is_ok()
            }
        }
    }
}

/// The DER inside a PEM block of `label`. Wiped on drop, since the same helper reads
/// private keys for the test signer.
pub(crate) fn pem_body(pem: &str, label: &str) -> Option<Zeroizing<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem.get(start..)?.find(&end)?;
    let b64: Zeroizing<String> = Zeroizing::new(
        pem.get(start..stop)?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    STANDARD.decode(b64.as_bytes()).ok().map(Zeroizing::new)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    const RFC_PUB: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn openssh_and_spki_forms_give_the_same_key() {
        let spki = DeviceKey::ed25519_from_spki_pem(RFC_PUB).unwrap();
        let Material::Ed25519(raw) = spki.material else {
            unreachable!()
        };
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&raw);
        let line = format!("ssh-ed25519 {} device@example", STANDARD.encode(&blob));
        let ssh = DeviceKey::ed25519_from_openssh(&line).unwrap();
        let Material::Ed25519(raw2) = ssh.material else {
            unreachable!()
        };
        assert_eq!(raw, raw2);
        assert_eq!(ssh.alg(), Algorithm::Ed25519);
        assert!(DeviceKey::ed25519_from_openssh("ssh-rsa AAAA").is_err());
        assert!(
            DeviceKey::ed25519_from_spki_pem(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
            )
            .is_err()
        );
    }

    #[test]
    fn debug_shows_no_material() {
        let k = DeviceKey::hmac(b"0123456789abcdef0123").unwrap();
        let d = format!("{k:?}");
        assert!(d.contains("hmac-sha256") && !d.contains("0123"), "{d}");
        assert_eq!(
            DeviceKey::hmac(b"short").unwrap_err(),
            KeyError::ShortSecret
        );
    }
}
