//! The device policy end to end through `Verifier`: what is accepted, and each refusal
//! (replay, expired, future, body altered, component stripped, wrong key, alg confusion).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rampart_sig::*;

const URL: &str = "https://api.example.com/tenants/t1/jobs?id=7";
const BODY: &[u8] = b"{\"job\": 7}";

fn hmac_keys() -> StaticKeys {
    let mut k = StaticKeys::new();
    k.insert("dev-h", DeviceKey::hmac(&HMAC_SECRET).unwrap());
    k
}

fn ed_keys() -> StaticKeys {
    let mut k = StaticKeys::new();
    k.insert("dev-e", DeviceKey::ed25519(ed_public(&ED_SEED)));
    k
}

fn ed_signer() -> SigningKey {
    SigningKey::ed25519_seed(&ED_SEED).unwrap()
}

fn body_req() -> Req {
    Req::new("POST", URL).header("content-digest", &content_digest(DigestAlg::Sha256, BODY))
}

#[tokio::test]
async fn accepted_hmac_and_ed25519_with_and_without_body() {
    let cases: [(&str, SigningKey, StaticKeys); 2] = [
        ("dev-h", SigningKey::hmac(&HMAC_SECRET), hmac_keys()),
        ("dev-e", ed_signer(), ed_keys()),
    ];
    for (keyid, key, keys) in cases {
        let v = verifier(keys, 300);
        let req = Req::new("GET", URL).signed(&params(&basic_components(), keyid, "n1"), &key);
        let ok = v.verify(&req.parts(), false, NOW + 5).await.unwrap();
        assert_eq!(ok.keyid, keyid);
        assert_eq!(ok.alg, key.alg());
        assert!(ok.body.is_none());

        let req = body_req().signed(&params(&body_components(), keyid, "n2"), &key);
        let ok = v.verify(&req.parts(), true, NOW + 5).await.unwrap();
        let mut checker = ok.body.expect("digest covered");
        checker.update(&BODY[..3]);
        checker.update(&BODY[3..]);
        assert_eq!(checker.finish(), Ok(()));
    }
}

#[tokio::test]
async fn authority_path_query_instead_of_target_uri() {
    let v = verifier(hmac_keys(), 300);
    let comps = [
        Component::Method,
        Component::Authority,
        Component::Path,
        Component::Query,
    ];
    let req = Req::new("GET", URL).signed(
        &params(&comps, "dev-h", "n"),
        &SigningKey::hmac(&HMAC_SECRET),
    );
    v.verify(&req.parts(), false, NOW).await.unwrap();
    // Without @query the target is not bound.
    let comps = [Component::Method, Component::Authority, Component::Path];
    let req = Req::new("GET", URL).signed(
        &params(&comps, "dev-h", "n2"),
        &SigningKey::hmac(&HMAC_SECRET),
    );
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::NotCovered
    );
}

#[tokio::test]
async fn replay_is_refused() {
    let v = verifier(hmac_keys(), 300);
    let req = Req::new("GET", URL).signed(
        &params(&basic_components(), "dev-h", "once"),
        &SigningKey::hmac(&HMAC_SECRET),
    );
    v.verify(&req.parts(), false, NOW).await.unwrap();
    assert_eq!(
        v.verify(&req.parts(), false, NOW + 1).await.unwrap_err(),
        Refusal::Replay
    );
    // After max_age the created check refuses it (the nonce is no longer needed).
    assert_eq!(
        v.verify(&req.parts(), false, NOW + 301).await.unwrap_err(),
        Refusal::Expired
    );
}

#[tokio::test]
async fn replay_is_refused_across_gateways_sharing_redis() {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("rampart:test:sig-policy:{run}:");
    let gw = |_: u8| {
        Verifier::new(
            Arc::new(hmac_keys()),
            Arc::new(RedisNonceStore::new(
                client.clone(),
                prefix.clone(),
                Duration::from_secs(2),
            )),
            Policy { max_age_s: 300 },
        )
    };
    let (a, b) = (gw(1), gw(2));
    let req = Req::new("GET", URL).signed(
        &params(&basic_components(), "dev-h", "shared"),
        &SigningKey::hmac(&HMAC_SECRET),
    );
    a.verify(&req.parts(), false, NOW).await.unwrap();
    assert_eq!(
        b.verify(&req.parts(), false, NOW + 1).await.unwrap_err(),
        Refusal::Replay
    );
}

#[tokio::test]
async fn expired_and_future_are_refused() {
    let v = verifier(hmac_keys(), 300);
    let key = SigningKey::hmac(&HMAC_SECRET);
    let comps = basic_components();
    let at = |created: u64, nonce: &'static str| {
        let mut p = params(&comps, "dev-h", nonce);
        p.created = created;
        Req::new("GET", URL).signed(&p, &key)
    };
    assert_eq!(
        v.verify(&at(NOW - 301, "a").parts(), false, NOW)
            .await
            .unwrap_err(),
        Refusal::Expired
    );
    v.verify(&at(NOW - 300, "b").parts(), false, NOW)
        .await
        .unwrap();
    assert_eq!(
        v.verify(&at(NOW + 61, "c").parts(), false, NOW)
            .await
            .unwrap_err(),
        Refusal::Future
    );
    v.verify(&at(NOW + 60, "d").parts(), false, NOW)
        .await
        .unwrap();
    // An `expires` in the past is refused too.
    let mut p = params(&comps, "dev-h", "e");
    p.expires = Some(NOW - 1);
    let req = Req::new("GET", URL).signed(&p, &key);
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::Expired
    );
}

#[tokio::test]
async fn body_altered_is_refused_at_the_end_of_the_stream() {
    let v = verifier(ed_keys(), 300);
    let req = body_req().signed(&params(&body_components(), "dev-e", "n"), &ed_signer());
    let ok = v.verify(&req.parts(), true, NOW).await.unwrap();
    let mut checker = ok.body.unwrap();
    checker.update(b"{\"job\": 8}");
    assert_eq!(checker.finish(), Err(DigestError::Mismatch));

    // Swapping the Content-Digest for one of the altered body breaks the signature.
    let mut req = body_req().signed(&params(&body_components(), "dev-e", "n2"), &ed_signer());
    req.headers.insert(
        "content-digest",
        content_digest(DigestAlg::Sha256, b"{\"job\": 8}")
            .parse()
            .unwrap(),
    );
    assert_eq!(
        v.verify(&req.parts(), true, NOW).await.unwrap_err(),
        Refusal::BadSignature
    );

    // Only unsupported digest algorithms: refused.
    let mut req = Req::new("POST", URL).header("content-digest", "md5=:AAAAAAAAAAAAAAAAAAAAAA==:");
    req = req.signed(&params(&body_components(), "dev-e", "n3"), &ed_signer());
    assert_eq!(
        v.verify(&req.parts(), true, NOW).await.unwrap_err(),
        Refusal::Digest(DigestError::Unsupported)
    );
}

#[tokio::test]
async fn component_stripped_is_refused() {
    let v = verifier(hmac_keys(), 300);
    let key = SigningKey::hmac(&HMAC_SECRET);
    // Signed without @method.
    let comps = [Component::TargetUri];
    let req = Req::new("GET", URL).signed(&params(&comps, "dev-h", "a"), &key);
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::NotCovered
    );
    // A body whose digest is not covered.
    let req = body_req().signed(&params(&basic_components(), "dev-h", "b"), &key);
    assert_eq!(
        v.verify(&req.parts(), true, NOW).await.unwrap_err(),
        Refusal::NotCovered
    );
    // A component removed from Signature-Input after signing.
    let mut req = body_req().signed(&params(&body_components(), "dev-h", "c"), &key);
    let input = req.headers["signature-input"]
        .to_str()
        .unwrap()
        .replace(" \"content-digest\"", "");
    req.headers
        .insert("signature-input", input.parse().unwrap());
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::BadSignature
    );
    // The request target changed after signing.
    let mut req = Req::new("GET", URL).signed(&params(&basic_components(), "dev-h", "d"), &key);
    req.target = "/tenants/t2/jobs?id=7".into();
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::BadSignature
    );
    // Component identifiers with parameters are not accepted.
    let mut req = Req::new("GET", URL).signed(&params(&basic_components(), "dev-h", "e"), &key);
    let input = req.headers["signature-input"]
        .to_str()
        .unwrap()
        .replace("\"@method\"", "\"@method\";req");
    req.headers
        .insert("signature-input", input.parse().unwrap());
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::Component(BaseError::UnsupportedComponent)
    );
}

#[tokio::test]
async fn wrong_key_is_refused() {
    let v = verifier(hmac_keys(), 300);
    let req = Req::new("GET", URL).signed(
        &params(&basic_components(), "dev-h", "a"),
        &SigningKey::hmac(&[0x43; 32]),
    );
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::BadSignature
    );
    let v = verifier(ed_keys(), 300);
    let other = SigningKey::ed25519_seed(&[0x08; 32]).unwrap();
    let comps = basic_components();
    let req = Req::new("GET", URL).signed(&params(&comps, "dev-e", "a"), &other);
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::BadSignature
    );
    let comps = basic_components();
    let req = Req::new("GET", URL).signed(&params(&comps, "nobody", "a"), &other);
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::UnknownKey
    );
}

#[tokio::test]
async fn alg_confusion_is_refused() {
    // The classic: an Ed25519 device's public key used as an HMAC secret.
    let v = verifier(ed_keys(), 300);
    let forged = SigningKey::hmac(&ed_public(&ED_SEED));
    let req = Req::new("GET", URL).signed(&params(&basic_components(), "dev-e", "a"), &forged);
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::AlgMismatch
    );
    // Without an alg parameter the device's algorithm (ed25519) is used: still refused.
    let comps = basic_components();
    let mut p = params(&comps, "dev-e", "b");
    p.include_alg = false;
    let req = Req::new("GET", URL).signed(&p, &forged);
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::BadSignature
    );
    // A correct Ed25519 signature that claims another algorithm.
    let mut req =
        Req::new("GET", URL).signed(&params(&basic_components(), "dev-e", "c"), &ed_signer());
    let input = req.headers["signature-input"]
        .to_str()
        .unwrap()
        .replace("\"ed25519\"", "\"hmac-sha256\"");
    req.headers
        .insert("signature-input", input.parse().unwrap());
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::AlgMismatch
    );
    // An HMAC device and alg="ed25519".
    let v = verifier(hmac_keys(), 300);
    let mut req = Req::new("GET", URL).signed(
        &params(&basic_components(), "dev-h", "d"),
        &SigningKey::hmac(&HMAC_SECRET),
    );
    let input = req.headers["signature-input"]
        .to_str()
        .unwrap()
        .replace("\"hmac-sha256\"", "\"ed25519\"");
    req.headers
        .insert("signature-input", input.parse().unwrap());
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::AlgMismatch
    );
}

#[tokio::test]
async fn required_parameters_and_malformed_fields() {
    let v = verifier(hmac_keys(), 300);
    let key = SigningKey::hmac(&HMAC_SECRET);
    let comps = basic_components();
    let mut p = params(&comps, "dev-h", "x");
    p.nonce = None;
    let req = Req::new("GET", URL).signed(&p, &key);
    assert_eq!(
        v.verify(&req.parts(), false, NOW).await.unwrap_err(),
        Refusal::MissingParam
    );
    assert_eq!(
        v.verify(&Req::new("GET", URL).parts(), false, NOW)
            .await
            .unwrap_err(),
        Refusal::Missing
    );

    let base = Req::new("GET", URL).signed(&params(&basic_components(), "dev-h", "y"), &key);
    for (input, sig, want) in [
        (None, Some("sig1=:AAAA:, sig2=:AAAA:"), Refusal::Malformed),
        (None, Some("other=:AAAA:"), Refusal::Malformed),
        (None, Some("sig1=\"AAAA\""), Refusal::Malformed),
        (Some("sig1=\"x\""), None, Refusal::Malformed),
        (
            Some("sig1=(\"@method\" \"@target-uri\");created=1;nonce=\"n\";keyid=\"dev-h\";evil=1"),
            None,
            Refusal::Malformed,
        ),
        (
            Some("sig1=(\"@method\" \"@target-uri\");created=\"1\";nonce=\"n\";keyid=\"dev-h\""),
            None,
            Refusal::Malformed,
        ),
        (
            Some(
                "sig1=(\"@method\" \"@target-uri\");created=1;created=2;nonce=\"n\";keyid=\"dev-h\"",
            ),
            None,
            Refusal::Malformed,
        ),
    ] {
        let mut req = Req::new("GET", URL);
        req.headers = base.headers.clone();
        if let Some(i) = input {
            req.headers.insert("signature-input", i.parse().unwrap());
        }
        if let Some(s) = sig {
            req.headers.insert("signature", s.parse().unwrap());
        }
        assert_eq!(
            v.verify(&req.parts(), false, NOW).await.unwrap_err(),
            want,
            "{input:?} {sig:?}"
        );
    }
}

#[tokio::test]
async fn signature_params_are_used_exactly_as_received() {
    // A signer that orders its parameters differently (nonce first, alg before keyid) and
    // splits Signature-Input over two field lines, next to another (valid) signature:
    // verified because the base uses the member as sent, not a re-serialization.
    use aws_lc_rs::hmac;
    let v = verifier(hmac_keys(), 300);
    let raw = format!(
        "(\"@target-uri\" \"@method\");nonce=\"zz\";alg=\"hmac-sha256\";keyid=\"dev-h\";created={NOW}"
    );
    let req = Req::new("DELETE", URL);
    let base = format!("\"@target-uri\": {URL}\n\"@method\": DELETE\n\"@signature-params\": {raw}");
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &HMAC_SECRET),
        base.as_bytes(),
    );
    let mut sig = String::new();
    rampart_sig::sf::serialize_bare(
        &rampart_sig::sf::BareItem::ByteSeq(tag.as_ref().to_vec()),
        &mut sig,
    )
    .unwrap();
    let other = sign(
        &req.parts(),
        &SignParams {
            label: "proxy",
            ..params(&basic_components(), "dev-h", "p")
        },
        &SigningKey::hmac(&HMAC_SECRET),
    )
    .unwrap();
    let req = req
        .header("signature-input", &format!("mine={raw}"))
        .header("signature-input", &other.input)
        .header("signature", &format!("mine={sig}, {}", other.signature));
    let ok = v.verify(&req.parts(), false, NOW).await.unwrap();
    assert_eq!(ok.label, "mine");
}

/// Several signatures on one request: every one must verify (a bad one is never excused
/// by a good one beside it, in either order), and every one's nonce is spent, so the
/// request replayed with only its second signature is refused too.
#[tokio::test]
async fn every_signature_must_verify_and_every_nonce_is_spent() {
    let key = SigningKey::hmac(&HMAC_SECRET);
    let wrong = SigningKey::hmac(&[0x43; 32]);
    let two = |first: (&str, &SigningKey), second: (&str, &SigningKey)| {
        let req = Req::new("GET", URL);
        let comps = basic_components();
        let a = sign(
            &req.parts(),
            &SignParams {
                label: "a",
                ..params(&comps, "dev-h", first.0)
            },
            first.1,
        )
        .unwrap();
        let b = sign(
            &req.parts(),
            &SignParams {
                label: "b",
                ..params(&comps, "dev-h", second.0)
            },
            second.1,
        )
        .unwrap();
        (
            Req::new("GET", URL)
                .header("signature-input", &format!("{}, {}", a.input, b.input))
                .header("signature", &format!("{}, {}", a.signature, b.signature)),
            req.header("signature-input", &b.input)
                .header("signature", &b.signature),
        )
    };
    let v = verifier(hmac_keys(), 300);
    for (first, second) in [(&key, &wrong), (&wrong, &key)] {
        let (both, _) = two(("x1", first), ("x2", second));
        assert_eq!(
            v.verify(&both.parts(), false, NOW).await.unwrap_err(),
            Refusal::BadSignature
        );
    }
    let (both, second_alone) = two(("y1", &key), ("y2", &key));
    let ok = v.verify(&both.parts(), false, NOW).await.unwrap();
    assert_eq!(ok.label, "a");
    assert_eq!(
        v.verify(&second_alone.parts(), false, NOW + 1)
            .await
            .unwrap_err(),
        Refusal::Replay
    );
}

#[tokio::test]
async fn rotation_overlap_accepts_old_and_new() {
    let mut keys = StaticKeys::new();
    keys.insert("dev-h", DeviceKey::hmac(&HMAC_SECRET).unwrap());
    keys.insert("dev-h", DeviceKey::hmac(&[0x99; 32]).unwrap());
    let v = verifier(keys, 300);
    for (i, secret) in [HMAC_SECRET, [0x99; 32]].iter().enumerate() {
        let nonce = format!("r{i}");
        let req = Req::new("GET", URL).signed(
            &params(&basic_components(), "dev-h", &nonce),
            &SigningKey::hmac(secret),
        );
        v.verify(&req.parts(), false, NOW).await.unwrap();
    }
}

#[test]
fn accept_signature_for_refusals() {
    let v = accept_signature("sig", &body_components(), None).unwrap();
    assert_eq!(
        v,
        "sig=(\"@method\" \"@target-uri\" \"content-digest\");created;nonce"
    );
    let v = accept_signature("sig", &basic_components(), Some(Algorithm::Ed25519)).unwrap();
    assert_eq!(
        v,
        "sig=(\"@method\" \"@target-uri\");created;nonce;alg=\"ed25519\""
    );
}

#[test]
fn request_parts_from_http_request() {
    let req = http::Request::post("/a/b?c=d")
        .header("host", "API.example.com:443")
        .body(())
        .unwrap();
    let p = RequestParts::from_request(&req, "https").unwrap();
    assert_eq!(p.target, "/a/b?c=d");
    assert_eq!(Component::Authority.value(&p).unwrap(), b"api.example.com");
    assert_eq!(
        Component::TargetUri.value(&p).unwrap(),
        b"https://API.example.com:443/a/b?c=d"
    );
    let h2 = http::Request::get("https://api.example.com/x")
        .body(())
        .unwrap();
    let p = RequestParts::from_request(&h2, "https").unwrap();
    assert_eq!(p.authority, "api.example.com");
    let none = http::Request::get("/x").body(()).unwrap();
    assert!(RequestParts::from_request(&none, "https").is_none());
}
