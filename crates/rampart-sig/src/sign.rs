//! The signing side: rampart's own test signer (for tests, benchmarks and the `demo`
//! client), and the `Accept-Signature` field a refusal carries (RFC 9421 §5.1).

use aws_lc_rs::{hmac, signature};
use zeroize::Zeroizing;

use crate::base::{self, BaseError, Component, RequestParts};
use crate::keys::{Algorithm, pem_body};
use crate::sf::{self, BareItem, InnerList, Item, Params};

/// A key to sign with. No `Debug`: it holds secrets.
pub enum SigningKey {
    /// HMAC-SHA256 with a shared secret.
    Hmac(Box<hmac::Key>),
    /// Ed25519 with a private key.
    Ed25519(signature::Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg().name())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HMAC-SHA256 key from the secret bytes.
    pub fn hmac(secret: &[u8]) -> Self {
        SigningKey::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// An Ed25519 key from a 32-byte seed.
    pub fn ed25519_seed(seed: &[u8]) -> Option<Self> {
        signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .ok()
            .map(SigningKey::Ed25519)
    }

    /// An Ed25519 key from a PEM `PRIVATE KEY` (PKCS#8 v1 or v2).
    pub fn ed25519_pkcs8_pem(pem: &str) -> Option<Self> {
        let der: Zeroizing<Vec<u8>> = pem_body(pem, "PRIVATE KEY")?;
        signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .ok()
            .map(SigningKey::Ed25519)
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Algorithm {
        match self {
            SigningKey::Hmac(_) => Algorithm::HmacSha256,
            SigningKey::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    fn sign(&self, base: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Hmac(k) => hmac::sign(k, base).as_ref().to_vec(),
            SigningKey::Ed25519(k) => k.sign(base).as_ref().to_vec(),
        }
    }
}

/// What to sign.
#[derive(Debug, Clone)]
pub struct SignParams<'a> {
    /// The dictionary label, e.g. `sig1`.
    pub label: &'a str,
    /// Covered components, in order.
    pub components: &'a [Component],
    /// `created`, Unix seconds.
    pub created: u64,
    /// `expires`, when set.
    pub expires: Option<u64>,
    /// `nonce`, when set.
    pub nonce: Option<&'a str>,
    /// `keyid`.
    pub keyid: &'a str,
    /// Whether to write the `alg` parameter.
    pub include_alg: bool,
}

/// `Signature-Input` and `Signature` field values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFields {
    /// `Signature-Input` value.
    pub input: String,
    /// `Signature` value.
    pub signature: String,
}

fn int(v: u64) -> Result<BareItem, BaseError> {
    i64::try_from(v)
        .map(BareItem::Integer)
        .map_err(|_| BaseError::BadValue)
}

/// Sign `req`: build the inner list, the signature base over it, and both fields.
pub fn sign(
    req: &RequestParts<'_>,
    p: &SignParams<'_>,
    key: &SigningKey,
) -> Result<SignatureFields, BaseError> {
    let mut params: Params = vec![("created".into(), int(p.created)?)];
    if let Some(e) = p.expires {
        params.push(("expires".into(), int(e)?));
    }
    if let Some(n) = p.nonce {
        params.push(("nonce".into(), BareItem::String(n.into())));
    }
    params.push(("keyid".into(), BareItem::String(p.keyid.into())));
    if p.include_alg {
        params.push(("alg".into(), BareItem::String(key.alg().name().into())));
    }
    let list = InnerList {
        items: p
            .components
            .iter()
            .map(|c| Item {
                bare: BareItem::String(c.name().into()),
                params: Vec::new(),
            })
            .collect(),
        params,
    };
    let mut raw = String::new();
    sf::serialize_inner_list(&list, &mut raw).ok_or(BaseError::BadValue)?;
    let base = base::signature_base(req, p.components, &raw)?;
    let sig = key.sign(&base);
    let mut signature = String::new();
    sf::serialize_bare(&BareItem::ByteSeq(sig), &mut signature).ok_or(BaseError::BadValue)?;
    Ok(SignatureFields {
        input: format!("{}={raw}", p.label),
        signature: format!("{}={signature}", p.label),
    })
}

/// The `Accept-Signature` value a 401 carries: the components a signature must cover,
/// and `created` and `nonce` as required parameters (RFC 9421 §5.1), e.g.
/// `sig=("@method" "@target-uri" "content-digest");created;nonce`. With `alg`, the
/// device's algorithm is named too (only when the device is already known, which a
/// generic refusal should not reveal).
pub fn accept_signature(
    label: &str,
    components: &[Component],
    alg: Option<Algorithm>,
) -> Option<String> {
    let mut params: Params = vec![
        ("created".into(), BareItem::Boolean(true)),
        ("nonce".into(), BareItem::Boolean(true)),
    ];
    if let Some(a) = alg {
        params.push(("alg".into(), BareItem::String(a.name().into())));
    }
    let list = InnerList {
        items: components
            .iter()
            .map(|c| Item {
                bare: BareItem::String(c.name().into()),
                params: Vec::new(),
            })
            .collect(),
        params,
    };
    let mut out = String::new();
    sf::serialize_inner_list(&list, &mut out)?;
    let dict = sf::parse_dictionary(format!("{label}={out}").as_bytes()).ok()?;
    sf::serialize_dictionary(&dict)
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

    #[test]
    fn accept_signature_names_required_components() {
        let v = accept_signature(
            "sig",
            &[
                Component::Method,
                Component::TargetUri,
                Component::Field("content-digest".into()),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            v,
            "sig=(\"@method\" \"@target-uri\" \"content-digest\");created;nonce"
        );
        assert!(accept_signature("Bad Label", &[], None).is_none());
    }
}
