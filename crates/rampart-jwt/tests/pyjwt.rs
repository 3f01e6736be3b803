//! Interop: tokens minted by PyJWT (PyPI `pyjwt` + `cryptography`, installed by
//! `scripts/test`) in RS256, ES256 and EdDSA, with JWKs exported by PyJWT, verify here;
//! altered ones do not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::sync::Arc;

use rampart_config::Profile;
use rampart_jwt::{JwtFailure, JwtSettings, JwtVerifier, ManualClock};
use serde_json::Value;

const NOW: u64 = 1_800_000_000;

#[test]
fn pyjwt_tokens_verify() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyjwt/mint.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(NOW.to_string())
        .output()
        .expect("python3 is needed (scripts/test installs pyjwt and cryptography)");
    assert!(
        out.status.success(),
        "PyJWT minting failed (run scripts/test, which installs pyjwt and cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut s = JwtSettings::new(Profile::Prod, None);
    s.claims.issuer = Some("https://id.example.com/".into());
    s.claims.audience = vec!["rampart".into()];
    let clock = Arc::new(ManualClock::new(NOW + 1));
    let v = JwtVerifier::with_key_set(s, d["jwks"].to_string().as_bytes(), clock.clone()).unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let t = d["tokens"][alg].as_str().unwrap();
        let got = v.verify(t).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(got.subject, "py-user");
        assert_eq!(got.tenant.as_deref(), Some("t-py"));
        assert_eq!(got.scopes, vec!["jobs", "metrics"]);
        assert_eq!(got.roles, vec!["reader"]);
        assert_eq!(got.jti.as_deref(), Some("py-1"));
        assert_eq!(got.exp, NOW + 600);
        assert_eq!(got.alg, alg);
        assert_eq!(got.kid, Some(format!("py-{}", alg.to_lowercase())));
        // One altered payload byte: refused.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let p = rampart_jwt::b64::decode(parts[1].as_bytes()).unwrap();
        let altered = String::from_utf8(p).unwrap().replace("py-user", "py-admn");
        parts[1] = rampart_jwt::b64::encode(altered.as_bytes());
        assert_eq!(
            v.verify(&parts.join(".")),
            Err(JwtFailure::Invalid("bad_signature")),
            "{alg}"
        );
    }
    clock.set(NOW + 600 + 60);
    assert_eq!(
        v.verify(d["tokens"]["ES256"].as_str().unwrap()),
        Err(JwtFailure::Invalid("expired"))
    );
}
