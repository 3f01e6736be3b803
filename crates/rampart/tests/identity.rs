//! The signed identity assertion against the real binary: `x-rampart-identity` on a route
//! with `identity_assertion = true`, verified by PyJWT (PyPI) against the JWKS the admin
//! listener serves; a client-written `x-rampart-identity` never reaching the upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const ROUTES: &str = r#"
[[routes]]
id = "who"
path = "/api/who"
upstream = "app"
scopes = ["jobs"]
identity_assertion = true

[[routes]]
id = "plain"
path = "/api/plain"
upstream = "app"
scopes = ["jobs"]

[auth]
modes = ["mtls"]

[auth.mtls]
identity_header = "x-ssl-client-subject"
scopes_header = "x-ssl-client-scopes"
roles_header = "x-ssl-client-roles"
map = [{ id = "alice", tenant = "acme" }]
"#;

fn config(upstream: std::net::SocketAddr, data: &Path, signing: &str) -> String {
    base_config(upstream, &format!("{ROUTES}\n{signing}"))
        .replace(
            "drain_timeout_ms = 10000",
            "drain_timeout_ms = 10000\ntrusted_proxies = [\"127.0.0.1/32\"]",
        )
        .replacen(
            "[server]\n",
            &format!(
                "[server]\ndata_dir = \"{}\"\nallowed_data_roots = [\"{}\"]\n",
                data.display(),
                data.display()
            ),
            1,
        )
}

fn data_dir(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    data
}

fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(gw.addr, &req)
}

/// PyJWT fetches the JWKS from the admin listener, picks the key by `kid` and verifies
/// signature, `iss`, `aud`, `exp`/`iat`/`nbf`; prints the claims.
const VERIFY: &str = r#"
import json, sys, jwt
url, token, aud = sys.argv[1], sys.argv[2], sys.argv[3]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=aud, issuer="rampart",
                    options={"require": ["exp", "iat", "nbf", "sub", "jti", "aud", "iss"]})
print(json.dumps({"claims": claims, "header": jwt.get_unverified_header(token)}))
"#;

fn pyjwt(url: &str, token: &str, aud: &str) -> Result<serde_json::Value, String> {
    let out = Command::new("python3")
        .args(["-c", VERIFY, url, token, aud])
        .output()
        .expect("python3 (with PyJWT and cryptography: scripts/test installs them)");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn assertion_verified_by_pyjwt_against_served_jwks_and_forgeries_stripped() {
    let up = Upstream::start();
    let dir = private_dir("identity");
    let data = data_dir(&dir);
    let path = dir.join("rampart.toml");
    std::fs::write(
        &path,
        config(
            up.addr,
            &data,
            "[signing]\nprovider = \"file\"\nkey_id = \"ids-1\"\n",
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["keys", "generate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gw = Gateway::spawn(dir, path).unwrap();

    // The JWKS: public keys only, OKP/Ed25519, kid = fingerprint, no auth needed.
    let jwks = gw.admin_get("/.well-known/jwks.json");
    assert_eq!(jwks.status, 200);
    let doc = jwks.json();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert_eq!(
        (k["alg"].as_str(), k["use"].as_str()),
        (Some("EdDSA"), Some("sig"))
    );
    assert!(k["kid"].as_str().unwrap().starts_with("SHA256:"));
    assert!(k.get("d").is_none(), "private key material in the JWKS");

    // A caller with a forged assertion under two spellings.
    let caller = [
        ("x-ssl-client-subject", "alice"),
        ("x-ssl-client-scopes", "jobs"),
        ("x-ssl-client-roles", "reader"),
        (
            "x-rampart-identity",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.",
        ),
        ("X_Rampart_Identity", "forged"),
    ];
    let r = get(&gw, "/api/who", &caller);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let ids: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| {
            n.replace(['_', '.'], "-")
                .eq_ignore_ascii_case("x-rampart-identity")
        })
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(ids.len(), 1, "{:?}", seen.headers);
    let token = ids[0].to_owned();
    assert!(!token.contains("eyJhbGciOiJub25lIn0") && token != "forged");
    // Nothing of the assertion leaks back to the client.
    assert!(r.header("x-rampart-identity").is_none());

    let url = format!("http://{}/.well-known/jwks.json", gw.admin.unwrap());
    let v = pyjwt(&url, &token, "app").unwrap_or_else(|e| panic!("PyJWT refused: {e}"));
    let c = &v["claims"];
    assert_eq!(c["iss"], "rampart");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "app");
    assert_eq!(c["tenant"], "acme");
    assert_eq!(c["auth"], "mtls");
    assert_eq!(c["route"], "who");
    assert_eq!(c["roles"], serde_json::json!(["reader"]));
    assert_eq!(c["scopes"], serde_json::json!(["jobs", "metrics"]));
    let life = c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert!(life > 0 && life <= 60, "{life}");
    assert_eq!(v["header"]["alg"], "EdDSA");
    assert_eq!(v["header"]["kid"], k["kid"]);

    // PyJWT refuses it for another audience, and refuses a tampered copy.
    let e = pyjwt(&url, &token, "billing").unwrap_err();
    assert!(e.contains("InvalidAudience"), "{e}");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let claims = String::from_utf8(base64_url_decode(&parts[1]))
        .unwrap()
        .replace("\"alice\"", "\"admin\"");
    parts[1] = base64_url_encode(claims.as_bytes());
    let e = pyjwt(&url, &parts.join("."), "app").unwrap_err();
    assert!(e.contains("InvalidSignature"), "{e}");

    // A route without identity_assertion: the forged header is gone and none is added.
    up.clear();
    let r = get(&gw, "/api/plain", &caller);
    assert_eq!(r.status, 200);
    assert!(
        !up.last().has_header_like("rampart-identity"),
        "{:?}",
        up.last().headers
    );
}

#[test]
fn identity_assertion_without_signing_key_refuses_to_start() {
    let up = Upstream::start();
    let dir = private_dir("identity-nokey");
    let data = data_dir(&dir);
    let path = dir.join("rampart.toml");
    // Provider "file" and no `rampart keys generate`: there is no key to sign with.
    std::fs::write(
        &path,
        config(
            up.addr,
            &data,
            "[signing]\nprovider = \"file\"\nkey_id = \"ids-1\"\n",
        ),
    )
    .unwrap();
    let check = |path: &Path| {
        let o = Command::new(bin())
            .args(["check", "--format", "json", "--config"])
            .arg(path)
            .env_remove("SIGNING_PRIVATE_KEY")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let finding = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "identity-assertion-key")
            .cloned()
            .unwrap_or_else(|| panic!("no identity-assertion-key finding: {v:#}"));
        (o.status.code().unwrap(), finding)
    };
    // `check` says so before `serve` refuses: exit 1, naming the route.
    let (code, f) = check(&path);
    assert_eq!(code, 1, "{f:#}");
    assert_eq!(f["severity"], "error");
    assert!(f["message"].as_str().unwrap().contains("who"), "{f:#}");
    // Read-only: the check made no keys directory.
    assert!(!data.join("keys").exists());
    let err = Gateway::spawn(dir.clone(), path.clone())
        .err()
        .expect("started without a signing key");
    assert!(err.contains("signing key cannot be opened"), "{err}");
    // With a key: the check passes and names it.
    let o = Command::new(bin())
        .args(["keys", "generate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, f) = check(&path);
    assert_eq!(code, 0, "{f:#}");
    assert_eq!(f["severity"], "info");
    assert!(f["message"].as_str().unwrap().contains("SHA256:"), "{f:#}");
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import base64,sys; s=sys.argv[1]; sys.stdout.buffer.write(base64.urlsafe_b64decode(s + '=' * (-len(s) % 4)))",
            s,
        ])
        .output()
        .unwrap();
    out.stdout
}

fn base64_url_encode(b: &[u8]) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import base64,sys; print(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip('='))",
            std::str::from_utf8(b).unwrap(),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
