//! Signing keys for tests and raw JWS construction.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url.
pub fn b64url(input: &[u8]) -> String {
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        let chars = c.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// `b64(header).b64(payload).b64(signer(signing input))`, with the header and payload
/// taken verbatim (so tests can forge any header).
pub fn jws(header: &str, payload: &str, signer: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let sig = signer(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

enum Kind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

/// A private key with a `kid`, able to sign and to publish its public JWK.
pub struct TestKey {
    pub kid: String,
    kind: Kind,
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        TestKey {
            kid: kid.into(),
            kind: Kind::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()),
        }
    }
    pub fn es256(kid: &str) -> Self {
        TestKey {
            kid: kid.into(),
            kind: Kind::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
                "P-256",
            ),
        }
    }
    pub fn es384(kid: &str) -> Self {
        TestKey {
            kid: kid.into(),
            kind: Kind::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
                "P-384",
            ),
        }
    }
    pub fn ed25519(kid: &str) -> Self {
        TestKey {
            kid: kid.into(),
            kind: Kind::Ed(Ed25519KeyPair::generate().unwrap()),
        }
    }

    /// The public JWK (no `alg` member).
    pub fn jwk(&self) -> Value {
        match &self.kind {
            Kind::Rsa(k) => {
                let (n, e) = rsa_components(k.public_key().as_ref());
                json!({"kty":"RSA","kid":self.kid,"use":"sig", "n": b64url(&n), "e": b64url(&e)})
            }
            Kind::Ec(k, crv) => {
                let pt = k.public_key().as_ref();
                let n = (pt.len() - 1) / 2;
                json!({"kty":"EC","kid":self.kid,"crv":crv,
                    "x": b64url(&pt[1..1 + n]), "y": b64url(&pt[1 + n..])})
            }
            Kind::Ed(k) => {
                json!({"kty":"OKP","kid":self.kid,"crv":"Ed25519","x": b64url(k.public_key().as_ref())})
            }
        }
    }

    /// The public JWK bound to `alg`.
    pub fn jwk_with_alg(&self, alg: &str) -> Value {
        let mut j = self.jwk();
        j["alg"] = Value::String(alg.into());
        j
    }

    /// RSA public key as SubjectPublicKeyInfo DER (for key-confusion attacks).
    pub fn public_spki_der(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Rsa(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
            Kind::Ec(k, _) => k.public_key().as_der().unwrap().as_ref().to_vec(),
            Kind::Ed(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
        }
    }

    /// The SPKI as PEM text, as an attacker would paste it as an HMAC secret.
    pub fn public_pem(&self) -> String {
        let b64 = std_b64(&self.public_spki_der());
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// Signs with the algorithm `alg` names (RS*/PS* need an RSA key, ES256/ES384 the
    /// matching curve, EdDSA Ed25519).
    pub fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.kind {
            Kind::Rsa(k) => {
                let enc: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("RSA key cannot sign {other}"),
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(enc, &rng, input, &mut sig).unwrap();
                sig
            }
            Kind::Ec(k, _) => k.sign(&rng, input).unwrap().as_ref().to_vec(),
            Kind::Ed(k) => k.sign(input).as_ref().to_vec(),
        }
    }

    /// A signed JWT: header `{"alg","kid","typ":"JWT"}` plus `extra_header` members.
    pub fn token(&self, alg: &str, claims: &Value) -> String {
        self.token_with_header(alg, &json!({}), claims)
    }

    pub fn token_with_header(&self, alg: &str, extra_header: &Value, claims: &Value) -> String {
        let mut h = json!({"alg": alg, "kid": self.kid, "typ": "JWT"});
        if let (Some(h), Some(extra)) = (h.as_object_mut(), extra_header.as_object()) {
            for (k, v) in extra {
                h.insert(k.clone(), v.clone());
            }
        }
        jws(&h.to_string(), &claims.to_string(), |i| self.sign(alg, i))
    }
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (DER).
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = b[0];
        let (len, hdr) = if b[1] < 0x80 {
            (b[1] as usize, 2)
        } else {
            let nb = (b[1] & 0x7f) as usize;
            let mut l = 0usize;
            for x in &b[2..2 + nb] {
                l = (l << 8) | *x as usize;
            }
            (l, 2 + nb)
        };
        (tag, &b[hdr..hdr + len], &b[hdr + len..])
    }
    let (t, seq, _) = tlv(der);
    assert_eq!(t, 0x30);
    let (t1, n, rest) = tlv(seq);
    let (t2, e, _) = tlv(rest);
    assert_eq!((t1, t2), (2, 2));
    let strip = |x: &[u8]| {
        x.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (strip(n), strip(e))
}

fn std_b64(input: &[u8]) -> String {
    let mut s: String = b64url(input).replace('-', "+").replace('_', "/");
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64url_vectors() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foob"), "Zm9vYg");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }
}
