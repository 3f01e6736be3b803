//! RFC test vectors, kept as JSON data files, drive these tests: RFC 7515 Appendix A
//! (JWS examples, through the whole JWT verifier), RFC 7520 §4 (the JOSE cookbook
//! signatures with the §3 keys), RFC 8037 A.4 (Ed25519), RFC 7517 A.1 (a JWK Set).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use rampart_config::Profile;
use rampart_jwt::{
    Alg, Hs256Key, JwtFailure, JwtSettings, JwtVerifier, ManualClock, b64, parse_jwks,
    verify_jws_signature,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Flips one bit in the signature's first character (a tampered token).
fn tamper_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut raw = b64::decode(sig.as_bytes()).unwrap();
    raw[0] ^= 1;
    format!("{head}.{}", b64::encode(&raw))
}

fn jwt_verifier(v: &Value, now: u64) -> JwtVerifier {
    let clock = Arc::new(ManualClock::new(now));
    let mut s = JwtSettings::new(Profile::Dev, None);
    // The Appendix A claims set has no `sub`: use `iss` as the subject claim.
    s.claims.subject_claim = "iss".into();
    if let Some(k) = v.get("hs256_key") {
        s.hs256_secret = Some(Hs256Key::new(
            b64::decode(k.as_str().unwrap().as_bytes()).unwrap(),
        ));
        s.allowed_algs = vec![Alg::HS256];
        JwtVerifier::start(s, clock)
    } else {
        JwtVerifier::with_key_set(s, v["jwks"].to_string().as_bytes(), clock).unwrap()
    }
}

#[test]
fn rfc7515_appendix_a() {
    let d = load("rfc7515.json");
    let now = d["now"].as_u64().unwrap();
    let mut ran = 0;
    for v in d["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let token = v["token"].as_str().unwrap();
        let verifier = jwt_verifier(v, now);
        match v["expect"].as_str().unwrap() {
            "ok" => {
                let t = verifier
                    .verify(token)
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(t.subject, "joe", "{name}");
                assert_eq!(t.exp, 1_300_819_380, "{name}");
                // Tampered signature, and the same token after exp + skew.
                assert_eq!(
                    verifier.verify(&tamper_signature(token)),
                    Err(JwtFailure::Invalid("bad_signature")),
                    "{name}"
                );
                let late = jwt_verifier(v, 1_300_819_380 + 60);
                assert_eq!(
                    late.verify(token),
                    Err(JwtFailure::Invalid("expired")),
                    "{name}"
                );
            }
            reason => {
                assert_eq!(
                    verifier.verify(token),
                    Err(JwtFailure::Invalid(reason_static(reason))),
                    "{name}"
                );
            }
        }
        ran += 1;
    }
    assert_eq!(ran, 5);
}

fn reason_static(r: &str) -> &'static str {
    // Reasons are &'static str: map the data file's text onto the crate's constants.
    use rampart_jwt::reason::*;
    for c in [
        ALG_NONE,
        ALG_NOT_ALLOWED,
        JWK_ALG_MISMATCH,
        BAD_SIGNATURE,
        BAD_JSON,
    ] {
        if c == r {
            return c;
        }
    }
    panic!("unknown reason {r}");
}

fn signature_vectors(file: &str, want: usize) {
    let d = load(file);
    let payload = d["payload"].as_str().unwrap().as_bytes();
    let mut ran = 0;
    for v in d["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let token = v["token"].as_str().unwrap();
        let expect = v["expect"].as_str().unwrap();
        if v.get("hs256_key").is_some() {
            // HMAC runs only through the verifier with the configured secret: the
            // signature holds, then the claims check finds a text, not a claims set.
            let verifier = jwt_verifier(v, 0);
            assert_eq!(
                verifier.verify(token),
                Err(JwtFailure::Invalid("bad_json")),
                "{name}"
            );
            assert_eq!(
                verifier.verify(&tamper_signature(token)),
                Err(JwtFailure::Invalid("bad_signature")),
                "{name}"
            );
            // As a JWK (`oct`), the same key is never used.
            let oct = format!(
                r#"{{"keys":[{{"kty":"oct","k":"{}"}}]}}"#,
                v["hs256_key"].as_str().unwrap()
            );
            assert!(parse_jwks(oct.as_bytes(), &Alg::ALL).is_err(), "{name}");
        } else {
            let (set, _) = parse_jwks(v["jwks"].to_string().as_bytes(), &Alg::ASYMMETRIC).unwrap();
            let got = verify_jws_signature(&set, &Alg::ASYMMETRIC, token, 8192);
            if expect == "ok" {
                assert_eq!(got.as_deref(), Ok(payload), "{name}");
                assert_eq!(
                    verify_jws_signature(&set, &Alg::ASYMMETRIC, &tamper_signature(token), 8192),
                    Err("bad_signature"),
                    "{name}"
                );
            } else {
                assert_eq!(got, Err(reason_static(expect)), "{name}");
            }
        }
        ran += 1;
    }
    assert_eq!(ran, want, "{file}");
}

#[test]
fn rfc7520_section4_signatures() {
    signature_vectors("rfc7520.json", 4);
}

#[test]
fn rfc8037_ed25519() {
    signature_vectors("rfc8037.json", 1);
}

#[test]
fn rfc7517_example_key_set() {
    let d = load("rfc7517.json");
    let (set, skipped) = parse_jwks(d["jwks"].to_string().as_bytes(), &Alg::ASYMMETRIC).unwrap();
    assert_eq!(skipped, d["expect"]["skipped"].as_u64().unwrap() as usize);
    let want = d["expect"]["usable"].as_array().unwrap();
    assert_eq!(set.len(), want.len());
    for (k, w) in set.keys().iter().zip(want) {
        assert_eq!(k.kid.as_deref(), w["kid"].as_str());
        let algs: Vec<&str> = k.algs().map(Alg::name).collect();
        let wa: Vec<&str> = w["algs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(algs, wa);
    }
    // The EC key itself is sound: without `use: enc` it loads too.
    let mut jwks = d["jwks"].clone();
    jwks["keys"][0].as_object_mut().unwrap().remove("use");
    let (set, _) = parse_jwks(jwks.to_string().as_bytes(), &Alg::ASYMMETRIC).unwrap();
    let kids: Vec<&str> = set.keys().iter().filter_map(|k| k.kid.as_deref()).collect();
    let want: Vec<&str> = d["without_use_enc"]["usable_kids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(kids, want);
}
