//! Ed25519 key types, PEM codecs and fingerprints.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use zeroize::Zeroizing;

use crate::KeyError;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Key ids use letters, digits, `_`, `.` and `-` (they appear in file names, signed-note
/// key names and JWKS `kid`s), at most 64 characters.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// `SHA256:` + unpadded base64 of SHA-256 over the OpenSSH wire encoding of the key
/// (string `ssh-ed25519`, string key): what `ssh-keygen -l` prints.
pub fn fingerprint(raw: &[u8; 32]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &openssh_wire(raw));
    format!("SHA256:{}", STANDARD_NO_PAD.encode(d.as_ref()))
}

fn openssh_wire(raw: &[u8; 32]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(51);
    wire.extend_from_slice(&11u32.to_be_bytes());
    wire.extend_from_slice(b"ssh-ed25519");
    wire.extend_from_slice(&32u32.to_be_bytes());
    wire.extend_from_slice(raw);
    wire
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 64]>::try_from(b).ok().map(Self)
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", STANDARD_NO_PAD.encode(self.0))
    }
}

/// A public key with its id and fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key_id: String,
    raw: [u8; 32],
    fingerprint: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({} {})", self.key_id, self.fingerprint)
    }
}

impl PublicKey {
    pub fn new(key_id: impl Into<String>, raw: [u8; 32]) -> Self {
        Self {
            key_id: key_id.into(),
            fingerprint: fingerprint(&raw),
            raw,
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// The raw 32-byte Ed25519 public key (JWK `x`, signed-note key material).
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(msg, &sig.0)
            .is_ok()
    }

    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        pem("PUBLIC KEY", &der)
    }

    /// One line of an OpenSSH `authorized_keys`/`.pub` file.
    pub fn to_openssh(&self) -> String {
        format!(
            "ssh-ed25519 {} {}",
            STANDARD.encode(openssh_wire(&self.raw)),
            self.key_id
        )
    }

    /// Parses a SubjectPublicKeyInfo PEM holding an Ed25519 key.
    pub fn from_pem(key_id: impl Into<String>, text: &[u8]) -> Result<Self, KeyError> {
        let bad = || KeyError::BadKey {
            what: "the public key".into(),
        };
        let der = SubjectPublicKeyInfoDer::from_pem_slice(text).map_err(|_| bad())?;
        let raw = der
            .as_ref()
            .strip_prefix(&SPKI_PREFIX[..])
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or_else(bad)?;
        Ok(Self::new(key_id, raw))
    }
}

/// An Ed25519 private key with its id. No `Debug`, no `Clone`; the PKCS#8 bytes are
/// wiped on drop (aws-lc cleanses its own copy when the key pair is freed).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl SigningKey {
    /// A fresh key from the system RNG.
    pub fn generate(key_id: &str) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::Crypto("key generation"))?;
        let doc = pair
            .to_pkcs8v1()
            .map_err(|_| KeyError::Crypto("PKCS#8 encoding"))?;
        Self::from_pkcs8_der(key_id, doc.as_ref())
    }

    /// Parses PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8_der(key_id: &str, der: &[u8]) -> Result<Self, KeyError> {
        if !valid_key_id(key_id) {
            return Err(KeyError::Config(format!(
                "`{key_id}`: a key id uses only letters, digits, `_`, `.` and `-` (at most 64)"
            )));
        }
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(der))
            .map_err(|_| KeyError::BadKey {
                what: format!("private key `{key_id}`"),
            })?;
        let raw = <[u8; 32]>::try_from(pair.public_key().as_ref())
            .map_err(|_| KeyError::Crypto("public key length"))?;
        // Keep a v1 encoding: every tool (openssl, ssh-keygen -i) reads it.
        let v1 = pair
            .to_pkcs8v1()
            .map_err(|_| KeyError::Crypto("PKCS#8 encoding"))?;
        Ok(Self {
            pkcs8: Zeroizing::new(v1.as_ref().to_vec()),
            public: PublicKey::new(key_id, raw),
            pair,
        })
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(key_id: &str, text: &[u8]) -> Result<Self, KeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(text).map_err(|_| KeyError::BadKey {
            what: format!("private key `{key_id}`"),
        })?;
        Self::from_pkcs8_der(key_id, der.secret_pkcs8_der())
    }

    /// PKCS#8 v1 PEM, for writing to a 0600 file or a secret manager. The caller must
    /// keep it out of logs.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem("PRIVATE KEY", &self.pkcs8))
    }

    pub fn key_id(&self) -> &str {
        self.public.key_id()
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, msg: &[u8]) -> Signature {
        let sig = self.pair.sign(msg);
        let mut out = [0u8; 64];
        for (o, b) in out.iter_mut().zip(sig.as_ref()) {
            *o = *b;
        }
        Signature(out)
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = String::with_capacity(b64.len() + 80);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_sign() {
        let k = SigningKey::generate("k1").unwrap();
        let pem = k.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let k2 = SigningKey::from_pem("k1", pem.as_bytes()).unwrap();
        assert_eq!(k.public(), k2.public());
        let sig = k2.sign(b"msg");
        assert!(k.public().verify(b"msg", &sig));
        assert!(!k.public().verify(b"msh", &sig));
        let p = PublicKey::from_pem("k1", k.public().to_pem().as_bytes()).unwrap();
        assert_eq!(&p, k.public());
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1 TEST 1: empty message.
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let k = SigningKey::from_pkcs8_der("t", &der).unwrap();
        assert_eq!(
            k.public().raw().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        assert_eq!(
            k.sign(b"").0.to_vec(),
            hex(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
    }

    #[test]
    fn bad_inputs_are_refused_without_echo() {
        let e = SigningKey::from_pem(
            "k",
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .err()
        .unwrap();
        assert!(!e.to_string().contains("c2VjcmV0"));
        assert!(SigningKey::generate("bad id").is_err());
        assert!(PublicKey::from_pem("k", b"nope").is_err());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
