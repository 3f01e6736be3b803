//! JWK Set parsing (RFC 7517) into keys ready to verify.
//!
//! Each usable key is parsed once into aws-lc-rs `ParsedPublicKey`s, one per algorithm
//! it may verify, so verification never re-parses key material. What is refused or
//! skipped:
//! - the whole set, when it is not strict JSON, has no `keys` array, is larger than
//!   [`MAX_KEYS`] keys, or has no usable key at all (garbage never replaces good keys);
//! - a key (skipped, the rest of the set still loads) that is symmetric (`oct`: an HMAC
//!   secret never comes from a key set), carries private members (`d`, `p`, …), is for
//!   encryption (`use` other than `sig`, `key_ops` without `verify`), names an `alg`
//!   that is unknown or not allowed, is an RSA key under 2048 bits, or is an EC/OKP key
//!   on a curve that does not match.
//!
//! A JWK that names its `alg` is bound to it (RFC 7517 §4.4): it verifies that
//! algorithm only. Without `alg`, an RSA key verifies the allowed RS*/PS* algorithms, an
//! EC key the one algorithm of its curve, an Ed25519 key EdDSA.

use std::collections::HashMap;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use crate::alg::{Alg, Curve, Family};
use crate::b64;
use crate::json;

/// Most keys accepted in one set (identity providers publish a handful).
pub const MAX_KEYS: usize = 64;
/// Largest RSA modulus (bytes) accepted: 8192 bits, as aws-lc-rs verifies.
const MAX_RSA_BYTES: usize = 1024;
/// Private members of RSA, EC and OKP keys (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a key set was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is not valid JSON")]
    Json,
    #[error("the key set names a member twice")]
    Duplicate,
    #[error("the key set has no `keys` array")]
    NoKeysArray,
    #[error("the key set has more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("the key set has no usable signing key ({skipped} skipped)")]
    NoUsableKeys { skipped: usize },
}

/// One verification key from the set.
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's own `alg`, which binds it.
    pub bound_alg: Option<Alg>,
    pub family: Family,
    /// SHA-256 over the public material: identifies the key across refreshes, so a
    /// cached token is honoured only while the key that verified it is still published.
    pub id: [u8; 32],
    verifiers: Vec<(Alg, ParsedPublicKey)>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("bound_alg", &self.bound_alg)
            .field("family", &self.family)
            .field(
                "algs",
                &self.verifiers.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Key {
    /// The parsed key for `alg`, if this key may verify it.
    pub fn verifier(&self, alg: Alg) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, k)| k)
    }

    pub fn algs(&self) -> impl Iterator<Item = Alg> + '_ {
        self.verifiers.iter().map(|(a, _)| *a)
    }
}

/// A parsed, non-empty key set.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<String, Vec<usize>>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Keys published under `kid`.
    pub fn by_kid(&self, kid: &str) -> impl Iterator<Item = &Key> {
        self.by_kid
            .get(kid)
            .into_iter()
            .flatten()
            .filter_map(|i| self.keys.get(*i))
    }

    /// Whether the key with this material id is still in the set.
    pub fn contains_id(&self, id: &[u8; 32]) -> bool {
        self.keys.iter().any(|k| &k.id == id)
    }
}

/// Parses a JWK Set, keeping the keys usable for `allowed` algorithms.
/// Returns the set and how many keys were skipped.
pub fn parse_jwks(bytes: &[u8], allowed: &[Alg]) -> Result<(KeySet, usize), JwksError> {
    let obj = json::parse_object(bytes).map_err(|e| match e {
        json::JsonError::Duplicate => JwksError::Duplicate,
        _ => JwksError::Json,
    })?;
    let Some(Value::Array(list)) = obj.get("keys") else {
        return Err(JwksError::NoKeysArray);
    };
    if list.len() > MAX_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let mut set = KeySet::default();
    let mut skipped = 0;
    for v in list {
        match v.as_object().and_then(|m| parse_key(m, allowed)) {
            Some(k) => {
                if let Some(kid) = &k.kid {
                    set.by_kid
                        .entry(kid.clone())
                        .or_default()
                        .push(set.keys.len());
                }
                set.keys.push(k);
            }
            None => skipped += 1,
        }
    }
    if set.keys.is_empty() {
        return Err(JwksError::NoUsableKeys { skipped });
    }
    Ok((set, skipped))
}

fn str_member<'a>(m: &'a Map<String, Value>, name: &str) -> Option<Option<&'a str>> {
    match m.get(name) {
        None => Some(None),
        Some(Value::String(s)) => Some(Some(s.as_str())),
        Some(_) => None,
    }
}

fn b64_member(m: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    match m.get(name) {
        Some(Value::String(s)) => b64::decode(s.as_bytes()),
        _ => None,
    }
}

/// One JWK → a key, or `None` when it is unusable (see the module doc).
pub fn parse_key(m: &Map<String, Value>, allowed: &[Alg]) -> Option<Key> {
    if PRIVATE_MEMBERS.iter().any(|p| m.contains_key(*p)) {
        return None;
    }
    if !matches!(str_member(m, "use")?, None | Some("sig")) {
        return None;
    }
    match m.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|o| o.as_str() == Some("verify")) => {}
        Some(_) => return None,
    }
    let kid = match m.get("kid") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= crate::jws::MAX_KID_BYTES => {
            Some(s.clone())
        }
        Some(_) => return None,
    };
    let bound_alg = match str_member(m, "alg")? {
        None => None,
        Some(name) => Some(Alg::from_name(name)?),
    };
    let kty = str_member(m, "kty")??;
    let candidates: Vec<Alg> = allowed
        .iter()
        .copied()
        .filter(|a| bound_alg.is_none_or(|b| b == *a))
        .collect();
    let mut id_ctx = digest::Context::new(&digest::SHA256);
    id_ctx.update(kty.as_bytes());
    let (family, verifiers) = match kty {
        "RSA" => {
            let n = b64_member(m, "n")?;
            let e = b64_member(m, "e")?;
            let n = strip_zeros(&n);
            let e = strip_zeros(&e);
            if n.len() < 256 || n.len() > MAX_RSA_BYTES || e.is_empty() || e.len() > 8 {
                return None;
            }
            id_ctx.update(n);
            id_ctx.update(b".");
            id_ctx.update(e);
            let comps = RsaPublicKeyComponents { n, e };
            let mut vs = Vec::new();
            for a in candidates.iter().filter(|a| a.family() == Family::Rsa) {
                let params = a.rsa_params()?;
                vs.push((*a, comps.to_parsed_public_key(params).ok()?));
            }
            (Family::Rsa, vs)
        }
        "EC" => {
            let curve = match str_member(m, "crv")?? {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                _ => return None,
            };
            let x = b64_member(m, "x")?;
            let y = b64_member(m, "y")?;
            if x.len() != curve.scalar_len() || y.len() != curve.scalar_len() {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * x.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            id_ctx.update(&point);
            let family = Family::Ec(curve);
            let mut vs = Vec::new();
            for a in candidates.iter().filter(|a| a.family() == family) {
                vs.push((*a, ParsedPublicKey::new(a.verification()?, &point).ok()?));
            }
            (family, vs)
        }
        "OKP" => {
            if str_member(m, "crv")?? != "Ed25519" {
                return None;
            }
            let x = b64_member(m, "x")?;
            if x.len() != 32 {
                return None;
            }
            id_ctx.update(&x);
            let mut vs = Vec::new();
            for a in candidates.iter().filter(|a| a.family() == Family::Ed25519) {
                vs.push((*a, ParsedPublicKey::new(a.verification()?, &x).ok()?));
            }
            (Family::Ed25519, vs)
        }
        // `oct` and anything else: never a verification key here.
        _ => return None,
    };
    if verifiers.is_empty() {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(id_ctx.finish().as_ref());
    Some(Key {
        kid,
        bound_alg,
        family,
        id,
        verifiers,
    })
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    const RFC7515_A3: &str = r#"{"kty":"EC","crv":"P-256",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    fn set(keys: &[&str]) -> String {
        format!(r#"{{"keys":[{}]}}"#, keys.join(","))
    }

    #[test]
    fn ec_key_loads_for_its_curve_only() {
        let (s, skipped) = parse_jwks(set(&[RFC7515_A3]).as_bytes(), &Alg::ASYMMETRIC).unwrap();
        assert_eq!((s.len(), skipped), (1, 0));
        let k = &s.keys()[0];
        assert_eq!(k.algs().collect::<Vec<_>>(), vec![Alg::ES256]);
        assert!(k.verifier(Alg::ES384).is_none());
    }

    #[test]
    fn garbage_sets_refused() {
        assert_eq!(
            parse_jwks(b"nope", &Alg::ASYMMETRIC).err(),
            Some(JwksError::Json)
        );
        assert_eq!(
            parse_jwks(b"{}", &Alg::ASYMMETRIC).err(),
            Some(JwksError::NoKeysArray)
        );
        assert_eq!(
            parse_jwks(br#"{"keys":[],"keys":[]}"#, &Alg::ASYMMETRIC).err(),
            Some(JwksError::Duplicate)
        );
        assert_eq!(
            parse_jwks(br#"{"keys":[]}"#, &Alg::ASYMMETRIC).err(),
            Some(JwksError::NoUsableKeys { skipped: 0 })
        );
        let many = set(&vec![RFC7515_A3; MAX_KEYS + 1]);
        assert_eq!(
            parse_jwks(many.as_bytes(), &Alg::ASYMMETRIC).err(),
            Some(JwksError::TooManyKeys)
        );
    }

    #[test]
    fn unusable_keys_skipped() {
        let bad = [
            r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#,
            // private key material published
            r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#,
            // encryption key
            r#"{"kty":"EC","use":"enc","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
            // curve does not match the bound alg
            r#"{"kty":"EC","alg":"ES384","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
            // point not on the curve
            r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1"}"#,
            // wrong coordinate length
            r#"{"kty":"EC","crv":"P-384","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
            // RSA under 2048 bits
            r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#,
            // unknown alg
            r#"{"kty":"RSA","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}"#,
            r#"{"kty":"OKP","crv":"X25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
            r#"{"kty":"EC","key_ops":["encrypt"],"crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
            "7",
        ];
        let mut all: Vec<&str> = bad.to_vec();
        all.push(RFC7515_A3);
        let (s, skipped) = parse_jwks(set(&all).as_bytes(), &Alg::ASYMMETRIC).unwrap();
        assert_eq!((s.len(), skipped), (1, bad.len()));
        // Only unusable keys: the set is garbage.
        assert_eq!(
            parse_jwks(set(&bad).as_bytes(), &Alg::ASYMMETRIC).err(),
            Some(JwksError::NoUsableKeys { skipped: bad.len() })
        );
    }

    #[test]
    fn allowlist_limits_the_verifiers() {
        assert!(matches!(
            parse_jwks(set(&[RFC7515_A3]).as_bytes(), &[Alg::RS256]),
            Err(JwksError::NoUsableKeys { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_jwks(&bytes, &Alg::ASYMMETRIC);
        }

        #[test]
        fn never_panics_on_jwk_shaped_input(
            kty in "(RSA|EC|OKP|oct|x)", crv in "(P-256|P-384|Ed25519|x)",
            x in "[A-Za-z0-9_-]{0,90}", y in "[A-Za-z0-9_-]{0,90}", alg in "(RS256|ES256|EdDSA|ES384|x)"
        ) {
            let j = format!(r#"{{"keys":[{{"kty":"{kty}","crv":"{crv}","x":"{x}","y":"{y}","n":"{x}{y}","e":"{y}","alg":"{alg}"}}]}}"#);
            let _ = parse_jwks(j.as_bytes(), &Alg::ASYMMETRIC);
        }
    }
}
