//! RFC test vectors, kept as data files under tests/vectors/, drive these tests:
//! RFC 9421 Appendix B.2.5 (hmac-sha256) and B.2.6 (ed25519), RFC 9530 digests,
//! RFC 4231 HMAC-SHA-256.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Req;
use rampart_sig::*;
use serde::Deserialize;

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[derive(Deserialize)]
struct B2 {
    request: B2Request,
    body: String,
    keys: std::collections::HashMap<String, B2Key>,
    cases: Vec<B2Case>,
}
#[derive(Deserialize)]
struct B2Request {
    method: String,
    scheme: String,
    target: String,
    headers: Vec<(String, String)>,
}
#[derive(Deserialize)]
struct B2Key {
    alg: String,
    secret_b64: Option<String>,
    public_pem: Option<String>,
    private_pem: Option<String>,
}
#[derive(Deserialize)]
struct B2Case {
    name: String,
    keyid: String,
    label: String,
    components: Vec<String>,
    created: u64,
    signature_input: String,
    signature: String,
    signature_base: String,
}

fn b2_request(v: &B2) -> Req {
    let host = &v
        .request
        .headers
        .iter()
        .find(|(n, _)| n == "host")
        .unwrap()
        .1;
    let mut r = Req::new(
        &v.request.method,
        &format!("{}://{host}{}", v.request.scheme, v.request.target),
    );
    for (n, val) in &v.request.headers {
        if n != "host" {
            r = r.header(n, val);
        }
    }
    r
}

fn device_key(k: &B2Key) -> DeviceKey {
    match k.alg.as_str() {
        "hmac-sha256" => {
            DeviceKey::hmac(&STANDARD.decode(k.secret_b64.as_ref().unwrap()).unwrap()).unwrap()
        }
        "ed25519" => DeviceKey::ed25519_from_spki_pem(k.public_pem.as_ref().unwrap()).unwrap(),
        other => panic!("alg {other}"),
    }
}

fn signing_key(k: &B2Key) -> SigningKey {
    match k.alg.as_str() {
        "hmac-sha256" => {
            SigningKey::hmac(&STANDARD.decode(k.secret_b64.as_ref().unwrap()).unwrap())
        }
        "ed25519" => SigningKey::ed25519_pkcs8_pem(k.private_pem.as_ref().unwrap()).unwrap(),
        other => panic!("alg {other}"),
    }
}

fn sig_bytes(field: &str) -> Vec<u8> {
    let b64 = field.split_once("=:").unwrap().1.trim_end_matches(':');
    STANDARD.decode(b64).unwrap()
}

#[test]
fn rfc9421_b2_signature_bases_and_signatures() {
    let v: B2 = load("rfc9421-b2.json");
    assert_eq!(v.cases.len(), 2);
    for case in &v.cases {
        let req = b2_request(&v);
        // The base, from the received Signature-Input member as sent.
        let input = rampart_sig::sf::parse_dictionary(case.signature_input.as_bytes()).unwrap();
        let member = input.get(&case.label).unwrap();
        let components: Vec<Component> = case
            .components
            .iter()
            .map(|c| Component::from_name(c).unwrap())
            .collect();
        let base =
            rampart_sig::base::signature_base(&req.parts(), &components, &member.raw).unwrap();
        assert_eq!(
            String::from_utf8(base.clone()).unwrap(),
            case.signature_base,
            "{}",
            case.name
        );

        // The RFC's signature verifies under the RFC's key; a flipped bit does not.
        let key = device_key(&v.keys[&case.keyid]);
        let sig = sig_bytes(&case.signature);
        assert!(key.verify(&base, &sig), "{}", case.name);
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!key.verify(&base, &bad), "{}", case.name);

        // Our signer reproduces the RFC's fields exactly (both algorithms are deterministic).
        let fields = sign(
            &req.parts(),
            &SignParams {
                label: &case.label,
                components: &components,
                created: case.created,
                expires: None,
                nonce: None,
                keyid: &case.keyid,
                include_alg: false,
            },
            &signing_key(&v.keys[&case.keyid]),
        )
        .unwrap();
        assert_eq!(fields.input, case.signature_input, "{}", case.name);
        assert_eq!(fields.signature, case.signature, "{}", case.name);
    }
}

#[tokio::test]
async fn rfc9421_b2_vectors_are_refused_by_the_device_policy() {
    // The RFC examples carry no nonce and B.2.5 does not cover @method: valid signatures,
    // but not acceptable device requests.
    let v: B2 = load("rfc9421-b2.json");
    for case in &v.cases {
        let mut keys = StaticKeys::new();
        keys.insert(case.keyid.clone(), device_key(&v.keys[&case.keyid]));
        let verifier = common::verifier(keys, 300);
        let req = b2_request(&v)
            .header("signature-input", &case.signature_input)
            .header("signature", &case.signature);
        let err = verifier
            .verify(&req.parts(), true, case.created + 1)
            .await
            .unwrap_err();
        assert_eq!(err, Refusal::NotCovered, "{}", case.name);
    }
    // The test request's Content-Digest matches its body (RFC 9421 B.2 uses RFC 9530).
    let req = b2_request(&v);
    let mut checker =
        DigestChecker::from_header(req.headers.get("content-digest").unwrap().as_bytes()).unwrap();
    checker.update(v.body.as_bytes());
    assert_eq!(checker.finish(), Ok(()));
}

#[derive(Deserialize)]
struct Rfc9530 {
    cases: Vec<DigestCase>,
}
#[derive(Deserialize)]
struct DigestCase {
    body: String,
    alg: String,
    digest_b64: String,
}

#[test]
fn rfc9530_content_digest() {
    let v: Rfc9530 = load("rfc9530.json");
    assert!(v.cases.len() >= 4);
    for c in &v.cases {
        let alg = match c.alg.as_str() {
            "sha-256" => DigestAlg::Sha256,
            "sha-512" => DigestAlg::Sha512,
            other => panic!("{other}"),
        };
        let header = format!("{}=:{}:", c.alg, c.digest_b64);
        assert_eq!(content_digest(alg, c.body.as_bytes()), header);
        // Streamed one byte at a time.
        let mut checker = DigestChecker::from_header(header.as_bytes()).unwrap();
        for b in c.body.as_bytes() {
            checker.update(std::slice::from_ref(b));
        }
        assert_eq!(checker.finish(), Ok(()));
        let mut checker = DigestChecker::from_header(header.as_bytes()).unwrap();
        checker.update(c.body.as_bytes());
        checker.update(b" ");
        assert_eq!(checker.finish(), Err(DigestError::Mismatch));
    }
}

#[derive(Deserialize)]
struct Rfc4231 {
    cases: Vec<HmacCase>,
}
#[derive(Deserialize)]
struct HmacCase {
    case: u32,
    key_hex: String,
    data_hex: String,
    mac_hex: String,
    truncate_bytes: Option<usize>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rfc4231_hmac_sha256_through_device_keys() {
    let v: Rfc4231 = load("rfc4231.json");
    assert_eq!(v.cases.len(), 7);
    for c in &v.cases {
        let key = unhex(&c.key_hex);
        let data = unhex(&c.data_hex);
        let want = unhex(&c.mac_hex);
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key),
            &data,
        );
        assert!(tag.as_ref().starts_with(&want), "case {}", c.case);
        if c.truncate_bytes.is_none() {
            // The device-key path (constant-time compare) accepts the full tag and
            // refuses a changed one. Keys under 16 bytes (case 2) are refused as device keys.
            if key.len() >= 16 {
                let dk = DeviceKey::hmac(&key).unwrap();
                assert!(dk.verify(&data, &want), "case {}", c.case);
                let mut bad = want.clone();
                bad[31] ^= 0x80;
                assert!(!dk.verify(&data, &bad), "case {}", c.case);
                // A truncated tag is not accepted as a signature.
                assert!(!dk.verify(&data, &want[..16]), "case {}", c.case);
            } else {
                assert_eq!(DeviceKey::hmac(&key).unwrap_err(), KeyError::ShortSecret);
            }
        }
    }
}
