//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1) with Ed25519 keys of
//! the signing keyring, and in-toto Statement v1 payloads.
//!
//! The signature covers `PAE(payloadType, payload)`, never the JSON around it, so the
//! envelope's encoding cannot be used to smuggle a different payload type. A signature's
//! `keyid` is the key's `SHA256:` fingerprint; verification looks it up in a keyring the
//! verifier trusts and never uses key material carried by the envelope.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keyring::TrustedKeys;
use crate::keys::{PublicKey, Signature, SigningKey};

/// The payload type of an in-toto Statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// Pre-Authentication Encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsseSignature {
    pub keyid: String,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// A DSSE envelope (JSON field names as the specification spells them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Standard base64 of the payload.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<DsseSignature>,
}

/// Why an envelope does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("the envelope is malformed: {0}")]
    Malformed(&'static str),
    #[error("payload type `{0}` is not the expected one")]
    PayloadType(String),
    #[error("no signature by a key in the keyring (key ids seen: {0})")]
    UnknownKey(String),
    #[error("signature by {0} does not verify")]
    BadSignature(String),
}

impl Envelope {
    /// Signs `payload` with `key`; the signature's key id is the key's fingerprint.
    pub fn sign(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Envelope {
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![DsseSignature {
                keyid: key.public().fingerprint().to_owned(),
                sig: STANDARD.encode(sig.as_bytes()),
            }],
        }
    }

    /// Checks the payload type and that at least one signature is by a trusted key (by
    /// fingerprint) and verifies; any signature by a trusted key that fails is an error.
    /// Returns the payload and the key that signed it.
    pub fn verify(
        &self,
        expected_type: &str,
        trusted: &TrustedKeys,
    ) -> Result<(Vec<u8>, PublicKey), DsseError> {
        if self.payload_type != expected_type {
            return Err(DsseError::PayloadType(self.payload_type.clone()));
        }
        let payload = STANDARD
            .decode(&self.payload)
            .map_err(|_| DsseError::Malformed("payload is not base64"))?;
        let msg = pae(&self.payload_type, &payload);
        let mut good: Option<PublicKey> = None;
        for s in &self.signatures {
            let Some(k) = trusted.keys().iter().find(|k| k.fingerprint() == s.keyid) else {
                continue;
            };
            let sig = STANDARD
                .decode(&s.sig)
                .ok()
                .and_then(|b| Signature::from_slice(&b))
                .ok_or(DsseError::Malformed("signature is not 64 bytes of base64"))?;
            if !k.verify(&msg, &sig) {
                return Err(DsseError::BadSignature(s.keyid.clone()));
            }
            good.get_or_insert_with(|| k.clone());
        }
        match good {
            Some(k) => Ok((payload, k)),
            None => Err(DsseError::UnknownKey(
                self.signatures
                    .iter()
                    .map(|s| s.keyid.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_specification_example() {
        // secure-systems-lab/dsse protocol.md test vector.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn sign_verify_and_refusals() {
        let k1 = SigningKey::generate("k1").unwrap();
        let k2 = SigningKey::generate("k2").unwrap();
        let env = Envelope::sign(&k1, IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}");
        let both = TrustedKeys::new(vec![k1.public().clone(), k2.public().clone()]);
        let (p, by) = env.verify(IN_TOTO_PAYLOAD_TYPE, &both).unwrap();
        assert_eq!(p, b"{\"a\":1}");
        assert_eq!(&by, k1.public());
        let only2 = TrustedKeys::new(vec![k2.public().clone()]);
        assert!(matches!(
            env.verify(IN_TOTO_PAYLOAD_TYPE, &only2),
            Err(DsseError::UnknownKey(_))
        ));
        assert!(matches!(
            env.verify("text/plain", &both),
            Err(DsseError::PayloadType(_))
        ));
        let mut t = env.clone();
        t.payload = STANDARD.encode(b"{\"a\":2}");
        assert!(matches!(
            t.verify(IN_TOTO_PAYLOAD_TYPE, &both),
            Err(DsseError::BadSignature(_))
        ));
        // The payload type is signed too.
        let mut t = env.clone();
        t.payload_type = "application/json".into();
        assert!(t.verify("application/json", &both).is_err());
        let json = serde_json::to_string(&env).unwrap();
        assert!(json.contains("\"payloadType\""));
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, env);
    }
}
