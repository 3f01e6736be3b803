//! The classic JWT attacks, each refused, with the reason the logs and metrics get.
//! Tokens are signed for real (aws-lc-rs keys from rampart-test-support), so each test
//! fails for the reason it names and not for an incidental one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, OnceLock};

use aws_lc_rs::hmac;
use rampart_config::Profile;
use rampart_jwt::{Alg, Hs256Key, JwtFailure, JwtSettings, JwtVerifier, ManualClock, b64};
use rampart_test_support::{TestKey, jws};
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://id.example.com/";

struct Keys {
    rsa: TestKey,
    ec: TestKey,
    ec384: TestKey,
    ed: TestKey,
    /// Bound to RS256 by its JWK `alg`.
    rsa_bound: TestKey,
    /// Not in the key set.
    stranger: TestKey,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        rsa: TestKey::rsa("rsa1"),
        ec: TestKey::es256("ec1"),
        ec384: TestKey::es384("ec384"),
        ed: TestKey::ed25519("ed1"),
        rsa_bound: TestKey::rsa("rsa-bound"),
        stranger: TestKey::es256("ec1"),
    })
}

fn jwks() -> String {
    let k = keys();
    json!({"keys": [k.rsa.jwk(), k.ec.jwk(), k.ec384.jwk(), k.ed.jwk(), k.rsa_bound.jwk_with_alg("RS256")]})
        .to_string()
}

fn settings(profile: Profile) -> JwtSettings {
    let mut s = JwtSettings::new(profile, None);
    s.claims.issuer = Some(ISS.into());
    s.claims.audience = vec!["rampart".into()];
    s
}

fn verifier_with(s: JwtSettings) -> (JwtVerifier, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    (
        JwtVerifier::with_key_set(s, jwks().as_bytes(), clock.clone()).unwrap(),
        clock,
    )
}

fn verifier() -> JwtVerifier {
    verifier_with(settings(Profile::Prod)).0
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "rampart", "sub": "alice", "exp": NOW + 600, "iat": NOW - 10})
}

fn with(extra: Value) -> Value {
    let mut c = claims();
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn refused(v: &JwtVerifier, token: &str, reason: &str) {
    match v.verify(token) {
        Err(JwtFailure::Invalid(r)) => assert_eq!(r, reason, "token {token}"),
        other => panic!("expected {reason}, got {other:?} for {token}"),
    }
}

fn hs256(secret: &[u8], header: &str, payload: &str) -> String {
    jws(header, payload, |i| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), i)
            .as_ref()
            .to_vec()
    })
}

#[test]
fn genuine_tokens_of_every_algorithm_verify() {
    let k = keys();
    let v = verifier();
    for (key, alg) in [
        (&k.rsa, "RS256"),
        (&k.rsa, "RS384"),
        (&k.rsa, "RS512"),
        (&k.rsa, "PS256"),
        (&k.rsa, "PS384"),
        (&k.rsa, "PS512"),
        (&k.ec, "ES256"),
        (&k.ec384, "ES384"),
        (&k.ed, "EdDSA"),
    ] {
        let t = key.token(
            alg,
            &with(json!({"tenant":"t1","scope":"a b","roles":["r"],"jti":"j"})),
        );
        let got = v.verify(&t).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(got.subject, "alice");
        assert_eq!(got.alg, alg);
        assert_eq!(got.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(got.scopes, vec!["a", "b"]);
        assert_eq!(got.tenant.as_deref(), Some("t1"));
        assert_eq!(got.jti.as_deref(), Some("j"));
    }
}

#[test]
fn alg_none_in_any_spelling() {
    let v = verifier();
    let payload = claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE", "none\u{0000}"] {
        let h = json!({"alg": alg, "typ": "JWT"}).to_string();
        let unsigned = format!(
            "{}.{}.",
            b64::encode(h.as_bytes()),
            b64::encode(payload.as_bytes())
        );
        let expected = if alg.starts_with("none\u{0}") {
            "alg_not_allowed"
        } else {
            "alg_none"
        };
        refused(&v, &unsigned, expected);
        // With a signature segment anyway.
        refused(&v, &jws(&h, &payload, |_| b"sig".to_vec()), expected);
        // Without the kid-less shortcut: with a kid of a real key.
        let h = json!({"alg": alg, "kid": "rsa1"}).to_string();
        refused(
            &v,
            &jws(&h, &payload, |_| Vec::new()),
            if expected == "alg_none" {
                "alg_none"
            } else {
                expected
            },
        );
    }
}

#[test]
fn hs_rs_confusion_with_pem_and_der_public_key() {
    let k = keys();
    let payload = claims().to_string();
    let h = json!({"alg":"HS256","kid":"rsa1","typ":"JWT"}).to_string();
    let pem_forgery = hs256(k.rsa.public_pem().as_bytes(), &h, &payload);
    let der_forgery = hs256(&k.rsa.public_spki_der(), &h, &payload);
    let kidless = hs256(
        k.rsa.public_pem().as_bytes(),
        r#"{"alg":"HS256"}"#,
        &payload,
    );
    // Prod: HS256 is not even allowed.
    let v = verifier();
    for t in [&pem_forgery, &der_forgery, &kidless] {
        refused(&v, t, "alg_not_allowed");
    }
    // Dev with an HS256 secret and HS256 allowed: the RSA key is still never an HMAC
    // secret; only the configured secret verifies.
    let mut s = settings(Profile::Dev);
    s.hs256_secret = Some(Hs256Key::new(
        b"a-dev-secret-of-at-least-32-bytes!".to_vec(),
    ));
    s.allowed_algs.push(Alg::HS256);
    let (v, _) = verifier_with(s);
    for t in [&pem_forgery, &der_forgery, &kidless] {
        refused(&v, t, "bad_signature");
    }
    // The configured secret does verify (the path is live, not merely closed).
    let good = hs256(
        b"a-dev-secret-of-at-least-32-bytes!",
        r#"{"alg":"HS256"}"#,
        &payload,
    );
    assert_eq!(v.verify(&good).unwrap().alg, "HS256");
}

#[test]
fn stripped_signature_and_structure() {
    let t = keys().rsa.token("RS256", &claims());
    let v = verifier();
    let (head, _) = t.rsplit_once('.').unwrap();
    refused(&v, &format!("{head}."), "missing_signature");
    refused(&v, head, "malformed");
    refused(&v, &format!("{t}.extra"), "malformed");
    refused(&v, &format!("{t}="), "bad_base64");
    refused(&v, &t.replacen('.', ".+", 1), "bad_base64");
    refused(&v, &format!(" {t}"), "bad_base64");
    refused(&v, "", "malformed");
    refused(&v, "...", "malformed");
}

#[test]
fn swapped_payload() {
    let k = keys();
    let v = verifier();
    let mine = k.ec.token("ES256", &claims());
    let admin = k
        .stranger
        .token("ES256", &with(json!({"sub": "admin", "roles": ["admin"]})));
    let (h, rest) = mine.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let admin_payload = admin.split('.').nth(1).unwrap();
    refused(&v, &format!("{h}.{admin_payload}.{sig}"), "bad_signature");
    // The stranger's own token: same kid, other key.
    refused(&v, &admin, "bad_signature");
}

#[test]
fn time_claims() {
    let k = keys();
    let v = verifier();
    let t = |c: Value| k.ec.token("ES256", &c);
    refused(&v, &t(with(json!({"exp": NOW - 61}))), "expired");
    refused(&v, &t(with(json!({"nbf": NOW + 3600}))), "not_yet_valid");
    refused(&v, &t(with(json!({"iat": NOW + 3600}))), "iat_in_future");
    refused(
        &v,
        &t(with(json!({"exp": (NOW + 600).to_string()}))),
        "bad_exp",
    );
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(&v, &t(no_exp), "missing_exp");
}

#[test]
fn issuer_and_audience() {
    let k = keys();
    let v = verifier();
    let t = |c: Value| k.ed.token("EdDSA", &c);
    refused(
        &v,
        &t(with(json!({"iss": "https://evil.example/"}))),
        "bad_issuer",
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iss");
    refused(&v, &t(c), "missing_issuer");
    refused(&v, &t(with(json!({"aud": "someone-else"}))), "bad_audience");
    refused(&v, &t(with(json!({"aud": ["a", "b"]}))), "bad_audience");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    refused(&v, &t(c), "missing_audience");
    assert!(v.verify(&t(with(json!({"aud": ["a", "rampart"]})))).is_ok());
}

#[test]
fn algorithm_outside_the_allowlist() {
    let k = keys();
    let mut s = settings(Profile::Prod);
    s.allowed_algs = vec![Alg::ES256];
    let clock = Arc::new(ManualClock::new(NOW));
    let v = JwtVerifier::with_key_set(s, jwks().as_bytes(), clock).unwrap();
    refused(&v, &k.rsa.token("RS256", &claims()), "alg_not_allowed");
    refused(&v, &k.ed.token("EdDSA", &claims()), "alg_not_allowed");
    assert!(v.verify(&k.ec.token("ES256", &claims())).is_ok());
    // Unknown and unsupported names too.
    for alg in ["ES512", "HS512", "RS1", "rs256"] {
        let h = json!({"alg": alg, "kid": "rsa1"}).to_string();
        refused(
            &v,
            &jws(&h, &claims().to_string(), |_| vec![1; 256]),
            "alg_not_allowed",
        );
    }
}

#[test]
fn jwk_alg_binds_the_key() {
    let k = keys();
    let v = verifier();
    assert!(v.verify(&k.rsa_bound.token("RS256", &claims())).is_ok());
    // A valid PS256 signature by the same key: refused, the JWK says RS256.
    refused(
        &v,
        &k.rsa_bound.token("PS256", &claims()),
        "jwk_alg_mismatch",
    );
    refused(
        &v,
        &k.rsa_bound.token("RS512", &claims()),
        "jwk_alg_mismatch",
    );
}

#[test]
fn kid_of_another_key_type() {
    let k = keys();
    let v = verifier();
    let c = claims().to_string();
    // ES256 token naming the RSA key's kid, signed with an EC key.
    let h = json!({"alg":"ES256","kid":"rsa1"}).to_string();
    refused(
        &v,
        &jws(&h, &c, |i| k.ec.sign("ES256", i)),
        "key_type_mismatch",
    );
    // RS256 naming the Ed25519 key.
    let h = json!({"alg":"RS256","kid":"ed1"}).to_string();
    refused(
        &v,
        &jws(&h, &c, |i| k.rsa.sign("RS256", i)),
        "key_type_mismatch",
    );
    // ES384 naming the P-256 key: same type, other curve.
    let h = json!({"alg":"ES384","kid":"ec1"}).to_string();
    refused(
        &v,
        &jws(&h, &c, |i| k.ec384.sign("ES384", i)),
        "key_type_mismatch",
    );
}

#[test]
fn psychic_ecdsa_signatures() {
    let v = verifier();
    let c = claims().to_string();
    const N256: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    let n: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&N256[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut one = vec![0u8; 32];
    one[31] = 1;
    let h = json!({"alg":"ES256","kid":"ec1"}).to_string();
    for (r, s) in [
        (vec![0u8; 32], vec![0u8; 32]),
        (vec![0u8; 32], one.clone()),
        (one.clone(), vec![0u8; 32]),
        (n.clone(), n.clone()),
        (one.clone(), n.clone()),
        (vec![0xff; 32], one.clone()),
    ] {
        let sig = [r, s].concat();
        refused(
            &v,
            &jws(&h, &c, |_| sig.clone()),
            "ecdsa_scalar_out_of_range",
        );
    }
    // n - 1 is in range (and then simply a bad signature).
    let mut n1 = n.clone();
    n1[31] -= 1;
    refused(
        &v,
        &jws(&h, &c, |_| [one.clone(), n1.clone()].concat()),
        "bad_signature",
    );
    // Wrong length (DER-encoded or truncated).
    refused(&v, &jws(&h, &c, |_| vec![1u8; 63]), "bad_signature");
    refused(&v, &jws(&h, &c, |_| vec![1u8; 72]), "bad_signature");
}

#[test]
fn oversized_token() {
    let k = keys();
    let v = verifier();
    let big = k.ec.token("ES256", &with(json!({"pad": "x".repeat(9000)})));
    refused(&v, &big, "too_large");
    // The cap is configurable; the same token passes a larger one.
    let mut s = settings(Profile::Prod);
    s.max_token_bytes = 16_384;
    assert!(verifier_with(s).0.verify(&big).is_ok());
    // Far over the cap: refused before anything is decoded.
    refused(&v, &"a".repeat(1 << 20), "too_large");
}

#[test]
fn unknown_crit_and_b64() {
    let k = keys();
    let v = verifier();
    for extra in [
        json!({"crit": ["exp"], "exp": NOW + 600}),
        json!({"crit": ["urn:example:ext"], "urn:example:ext": true}),
        json!({"crit": []}),
        json!({"b64": false, "crit": ["b64"]}),
    ] {
        refused(
            &v,
            &k.ec.token_with_header("ES256", &extra, &claims()),
            "unknown_crit",
        );
    }
}

#[test]
fn duplicate_members_in_header_and_claims() {
    let k = keys();
    let v = verifier();
    let body = format!(
        r#"{{"iss":"{ISS}","aud":"rampart","sub":"alice","sub":"admin","exp":{}}}"#,
        NOW + 600
    );
    refused(
        &v,
        &jws(r#"{"alg":"ES256","kid":"ec1"}"#, &body, |i| {
            k.ec.sign("ES256", i)
        }),
        "duplicate_member",
    );
    refused(
        &v,
        &jws(
            r#"{"alg":"ES256","kid":"ec1","kid":"rsa1"}"#,
            &claims().to_string(),
            |i| k.ec.sign("ES256", i),
        ),
        "duplicate_member",
    );
    // Malformed JSON in a signed payload.
    refused(
        &v,
        &jws(r#"{"alg":"ES256","kid":"ec1"}"#, "{\"sub\":", |i| {
            k.ec.sign("ES256", i)
        }),
        "bad_json",
    );
}

#[test]
fn unknown_and_missing_kid() {
    let k = keys();
    let v = verifier();
    let other = TestKey::es256("nope");
    refused(&v, &other.token("ES256", &claims()), "unknown_kid");
    // No kid: several keys could verify RS256, so the token must name one.
    let h = r#"{"alg":"RS256"}"#;
    refused(
        &v,
        &jws(h, &claims().to_string(), |i| k.rsa.sign("RS256", i)),
        "kid_required",
    );
    // No kid, exactly one EdDSA key: fine.
    let h = r#"{"alg":"EdDSA"}"#;
    assert!(
        v.verify(&jws(h, &claims().to_string(), |i| k.ed.sign("EdDSA", i)))
            .is_ok()
    );
}

#[test]
fn cache_hit_still_checks_time() {
    let k = keys();
    let (v, clock) = verifier_with(settings(Profile::Prod));
    let t = k.ec.token("ES256", &with(json!({"exp": NOW + 100})));
    assert!(v.verify(&t).is_ok());
    assert_eq!(v.cached_tokens(), 1);
    assert!(v.verify(&t).is_ok());
    clock.set(NOW + 100 + 60);
    refused(&v, &t, "expired");
    assert_eq!(v.cached_tokens(), 0, "expired entry dropped");
    // Failures are never cached.
    let forged = jws(
        r#"{"alg":"ES256","kid":"ec1"}"#,
        &claims().to_string(),
        |_| vec![7; 64],
    );
    refused(&v, &forged, "bad_signature");
    assert_eq!(v.cached_tokens(), 0);
}

#[test]
fn cache_is_bounded() {
    let k = keys();
    let mut s = settings(Profile::Prod);
    s.cache_entries = 32;
    let (v, _) = verifier_with(s);
    for i in 0..200 {
        let t = k.ed.token("EdDSA", &with(json!({"jti": format!("j{i}")})));
        assert!(v.verify(&t).is_ok());
    }
    assert!(v.cached_tokens() <= 32, "{}", v.cached_tokens());
}
