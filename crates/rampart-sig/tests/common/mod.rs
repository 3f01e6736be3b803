//! Shared by the integration tests: an owned request to take `RequestParts` from, and
//! a few signing helpers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use http::HeaderMap;
use rampart_sig::*;

pub struct Req {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub target: String,
    pub headers: HeaderMap,
}

impl Req {
    pub fn new(method: &str, url: &str) -> Req {
        let (scheme, rest) = url.split_once("://").unwrap();
        let slash = rest.find('/').unwrap_or(rest.len());
        let (authority, target) = rest.split_at(slash);
        let mut headers = HeaderMap::new();
        headers.insert("host", authority.parse().unwrap());
        Req {
            method: method.into(),
            scheme: scheme.into(),
            authority: authority.into(),
            target: if target.is_empty() {
                "/".into()
            } else {
                target.into()
            },
            headers,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        self
    }

    pub fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            scheme: &self.scheme,
            authority: &self.authority,
            target: &self.target,
            headers: &self.headers,
        }
    }

    /// Sign and attach Signature-Input / Signature.
    pub fn signed(mut self, p: &SignParams<'_>, key: &SigningKey) -> Req {
        let f = sign(&self.parts(), p, key).unwrap();
        self.headers
            .insert("signature-input", f.input.parse().unwrap());
        self.headers
            .insert("signature", f.signature.parse().unwrap());
        self
    }
}

pub const NOW: u64 = 1_764_000_000;
pub const HMAC_SECRET: [u8; 32] = [0x42; 32];
pub const ED_SEED: [u8; 32] = [0x07; 32];

pub fn ed_public(seed: &[u8; 32]) -> [u8; 32] {
    use aws_lc_rs::signature::KeyPair;
    let kp = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
    kp.public_key().as_ref().try_into().unwrap()
}

pub fn verifier(keys: StaticKeys, max_age_s: u64) -> Verifier {
    Verifier::new(
        Arc::new(keys),
        Arc::new(MemoryNonceStore::new(1000)),
        Policy { max_age_s },
    )
}

pub fn basic_components() -> Vec<Component> {
    vec![Component::Method, Component::TargetUri]
}

pub fn body_components() -> Vec<Component> {
    vec![
        Component::Method,
        Component::TargetUri,
        Component::Field("content-digest".into()),
    ]
}

pub fn params<'a>(components: &'a [Component], keyid: &'a str, nonce: &'a str) -> SignParams<'a> {
    SignParams {
        label: "sig1",
        components,
        created: NOW,
        expires: None,
        nonce: Some(nonce),
        keyid,
        include_alg: true,
    }
}
