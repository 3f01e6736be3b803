//! `rampart token mint` against the real binary: a dev config with `hs256_secret`
//! prints a token the same config's verifier accepts; anything else exits 2.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{bin, private_dir};

const SECRET: &str = "a-dev-secret-that-is-32-bytes-long!!";

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn mint(config: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["token", "mint", "--config"])
        .arg(config)
        .args(extra)
        .env("RAMPART_TEST_JWT_SECRET", SECRET)
        .output()
        .unwrap()
}

const UPSTREAM: &str = "[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n";

#[test]
fn mints_a_token_the_gateway_config_accepts() {
    let dir = private_dir("token-mint");
    let cfg_text = format!(
        "profile = \"dev\"\n{UPSTREAM}[auth.jwt]\nissuer = \"rampart-dev\"\naudience = [\"rampart\"]\nhs256_secret = \"env:RAMPART_TEST_JWT_SECRET\"\n"
    );
    let cfg = write(&dir, "dev.toml", &cfg_text);
    let out = mint(
        &cfg,
        &[
            "--sub",
            "alice",
            "--tenant",
            "acme",
            "--scopes",
            "jobs metrics",
            "--roles",
            "reader,admin",
            "--ttl",
            "15m",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let loaded = rampart_config::load_from_strs(
        &[("dev.toml", &cfg_text)],
        &[("RAMPART_TEST_JWT_SECRET".into(), SECRET.into())],
    )
    .unwrap();
    let settings = rampart_jwt::JwtSettings::from_config(&loaded)
        .unwrap()
        .unwrap();
    let v = rampart_jwt::JwtVerifier::start(settings, Arc::new(rampart_jwt::SystemClock));
    let t = v.verify(&token).unwrap();
    assert_eq!(t.subject, "alice");
    assert_eq!(t.tenant.as_deref(), Some("acme"));
    assert_eq!(t.scopes, vec!["jobs", "metrics"]);
    assert_eq!(t.roles, vec!["reader", "admin"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(t.exp > now + 800 && t.exp <= now + 900, "{}", t.exp);
}

#[test]
fn refused_outside_dev_with_hs256_secret() {
    let dir = private_dir("token-mint-refused");
    // prod: a JWKS-only configuration.
    let prod = write(
        &dir,
        "prod.toml",
        &format!(
            "[server]\ntrusted_hosts = [\"a.example\"]\n{UPSTREAM}[auth.jwt]\nissuer = \"https://id.example.com/\"\naudience = \"rampart\"\njwks_url = \"https://id.example.com/jwks\"\n"
        ),
    );
    let out = mint(&prod, &["--sub", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("profile = \"dev\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    // prod with a secret: the config itself is refused.
    let prod_secret = write(
        &dir,
        "prod-secret.toml",
        &format!(
            "[server]\ntrusted_hosts = [\"a.example\"]\n{UPSTREAM}[auth.jwt]\nissuer = \"x\"\naudience = \"r\"\nhs256_secret = \"env:RAMPART_TEST_JWT_SECRET\"\n"
        ),
    );
    let out = mint(&prod_secret, &["--sub", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());

    // dev without a secret.
    let dev_jwks = write(
        &dir,
        "dev-jwks.toml",
        &format!(
            "profile = \"dev\"\n{UPSTREAM}[auth.jwt]\njwks_url = \"http://127.0.0.1:9/jwks\"\n"
        ),
    );
    let out = mint(&dev_jwks, &["--sub", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hs256_secret"));

    // No [auth.jwt] at all.
    let none = write(&dir, "none.toml", &format!("profile = \"dev\"\n{UPSTREAM}"));
    let out = mint(&none, &["--sub", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[auth.jwt]"));

    // Usage errors.
    let dev = write(
        &dir,
        "dev.toml",
        &format!(
            "profile = \"dev\"\n{UPSTREAM}[auth.jwt]\nhs256_secret = \"env:RAMPART_TEST_JWT_SECRET\"\n"
        ),
    );
    assert_eq!(
        mint(&dev, &["--sub", "alice", "--ttl", "soon"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(mint(&dev, &[]).status.code(), Some(2));
    assert_eq!(mint(&dev, &["--sub", ""]).status.code(), Some(2));
    assert!(mint(&dev, &["--sub", "alice"]).status.success());
}
