//! Interop with an independent implementation, PyPI `http-message-signatures` 3
//! (`scripts/test` installs it): requests it signs are verified here, and requests our
//! signer produces are verified by it, for hmac-sha256 and ed25519, with and without a body.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Req;
use rampart_sig::*;
use serde_json::{Value, json};

const URL: &str = "https://api.example.com:8443/devices/d1/readings?batch=3&x=%20y";
const BODY: &[u8] = b"{\"temp\": 21.5, \"unit\": \"C\"}";

struct Py {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn python(spec: &Value) -> Py {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyhms/interop.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed (scripts/test installs http-message-signatures)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "PyPI http-message-signatures missing (scripts/test installs it): {stderr}"
    );
    Py {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The RFC 9421 test keys (from the vector file): spec fields for Python, and ours.
fn rfc_keys() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/rfc9421-b2.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["keys"].clone()
}

struct Device {
    alg: &'static str,
    keyid: &'static str,
    /// What Python gets to sign with.
    sign_spec: Value,
    /// What Python gets to verify with.
    verify_spec: Value,
    device_key: fn(&Value) -> DeviceKey,
    signing_key: fn(&Value) -> SigningKey,
}

fn devices() -> Vec<Device> {
    let keys = rfc_keys();
    let secret = keys["test-shared-secret"]["secret_b64"].clone();
    let ed = &keys["test-key-ed25519"];
    vec![
        Device {
            alg: "hmac-sha256",
            keyid: "sensor-hmac",
            sign_spec: json!({ "secret_b64": secret }),
            verify_spec: json!({ "secret_b64": secret }),
            device_key: |k| {
                DeviceKey::hmac(
                    &STANDARD
                        .decode(k["test-shared-secret"]["secret_b64"].as_str().unwrap())
                        .unwrap(),
                )
                .unwrap()
            },
            signing_key: |k| {
                SigningKey::hmac(
                    &STANDARD
                        .decode(k["test-shared-secret"]["secret_b64"].as_str().unwrap())
                        .unwrap(),
                )
            },
        },
        Device {
            alg: "ed25519",
            keyid: "sensor-ed",
            sign_spec: json!({ "private_pem": ed["private_pem"] }),
            verify_spec: json!({ "public_pem": ed["public_pem"] }),
            device_key: |k| {
                DeviceKey::ed25519_from_spki_pem(
                    k["test-key-ed25519"]["public_pem"].as_str().unwrap(),
                )
                .unwrap()
            },
            signing_key: |k| {
                SigningKey::ed25519_pkcs8_pem(
                    k["test-key-ed25519"]["private_pem"].as_str().unwrap(),
                )
                .unwrap()
            },
        },
    ]
}

fn spec(base: &Value, extra: Value) -> Value {
    let mut s = base.clone();
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

#[tokio::test]
async fn requests_signed_by_python_are_verified() {
    let keys = rfc_keys();
    for d in devices() {
        for body in [None, Some(BODY)] {
            let created = now();
            let nonce = format!("py-{}-{}", d.alg, body.is_some());
            let s = spec(
                &d.sign_spec,
                json!({
                    "mode": "sign", "alg": d.alg, "keyid": d.keyid, "method": "POST", "url": URL,
                    "headers": [["Content-Type", "application/json"], ["X-Trace", " a "], ["X-Trace", "b"]],
                    "body_b64": body.map(|b| STANDARD.encode(b)),
                    "nonce": nonce, "created": created,
                }),
            );
            let out = python(&s);
            assert!(out.ok, "python sign failed: {}", out.stderr);
            let signed: Value = serde_json::from_str(&out.stdout).unwrap();
            let mut req = Req::new("POST", URL);
            for h in signed["headers"].as_array().unwrap() {
                req = req.header(h[0].as_str().unwrap(), h[1].as_str().unwrap());
            }
            assert_eq!(req.headers.contains_key("content-digest"), body.is_some());

            let mut ks = StaticKeys::new();
            ks.insert(d.keyid, (d.device_key)(&keys));
            let v = common::verifier(ks, 300);
            let ok = v
                .verify(&req.parts(), body.is_some(), now())
                .await
                .unwrap_or_else(|e| panic!("{} body={}: {e}", d.alg, body.is_some()));
            assert_eq!(ok.keyid, d.keyid);
            assert_eq!(ok.label, "pyhms");
            match body {
                Some(b) => {
                    let mut good = ok.body.unwrap();
                    good.update(b);
                    assert_eq!(good.finish(), Ok(()));
                }
                None => assert!(ok.body.is_none()),
            }
            // The same request again: a replay.
            assert_eq!(
                v.verify(&req.parts(), body.is_some(), now())
                    .await
                    .unwrap_err(),
                Refusal::Replay
            );
            // Altered body: caught by the digest at the end of the stream.
            if body.is_some() {
                let mut ks = StaticKeys::new();
                ks.insert(d.keyid, (d.device_key)(&keys));
                let fresh = common::verifier(ks, 300);
                let mut checker = fresh
                    .verify(&req.parts(), true, now())
                    .await
                    .unwrap()
                    .body
                    .unwrap();
                checker.update(b"{\"temp\": 99.9, \"unit\": \"C\"}");
                assert_eq!(checker.finish(), Err(DigestError::Mismatch));
            }
        }
    }
}

#[test]
fn requests_signed_by_rampart_are_verified_by_python() {
    let keys = rfc_keys();
    for d in devices() {
        for body in [None, Some(BODY)] {
            let mut req = Req::new("POST", URL).header("content-type", "application/json");
            let components = if body.is_some() {
                req = req.header("content-digest", &content_digest(DigestAlg::Sha512, BODY));
                common::body_components()
            } else {
                common::basic_components()
            };
            let nonce = format!("rs-{}-{}", d.alg, body.is_some());
            let p = SignParams {
                label: "rampart",
                components: &components,
                created: now(),
                expires: None,
                nonce: Some(&nonce),
                keyid: d.keyid,
                include_alg: true,
            };
            let req = req.signed(&p, &(d.signing_key)(&keys));
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .filter(|(n, _)| n.as_str() != "host")
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect();
            let verify = |url: &str, body: Option<&[u8]>| {
                python(&spec(
                    &d.verify_spec,
                    json!({
                        "mode": "verify", "alg": d.alg, "keyid": d.keyid, "method": "POST",
                        "url": url, "headers": headers,
                        "body_b64": body.map(|b| STANDARD.encode(b)),
                    }),
                ))
            };
            let out = verify(URL, body);
            assert!(
                out.ok,
                "{} body={}: python refused: {}",
                d.alg,
                body.is_some(),
                out.stderr
            );
            let got: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(got["keyid"], d.keyid);
            assert_eq!(got["nonce"], nonce.as_str());

            // Negative controls: the oracle does refuse a changed target or body.
            let out = verify(
                "https://api.example.com:8443/devices/d2/readings?batch=3&x=%20y",
                body,
            );
            assert!(!out.ok, "python accepted a changed target");
            if body.is_some() {
                let out = verify(URL, Some(b"{\"temp\": 99.9, \"unit\": \"C\"}"));
                assert!(!out.ok, "python accepted a changed body");
            }
        }
    }
}
