//! Fingerprints and key encodings checked against OpenSSH and OpenSSL, which compute them
//! independently (scripts/test installs both).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use base64::Engine as _;
use rampart_crypto::{PublicKey, SigningKey, fingerprint};

fn ssh_keygen_fingerprint(pub_file: &std::path::Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(pub_file)
        .output()
        .expect("ssh-keygen (openssh-client) must be installed: scripts/test installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "256 SHA256:xxxx comment (ED25519)"
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[test]
fn our_fingerprint_equals_ssh_keygen_for_our_key() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        let k = SigningKey::generate(&format!("k{i}")).unwrap();
        let f = dir.path().join(format!("k{i}.pub"));
        std::fs::write(&f, format!("{}\n", k.public().to_openssh())).unwrap();
        assert_eq!(ssh_keygen_fingerprint(&f), k.public().fingerprint());
    }
}

#[test]
fn our_fingerprint_equals_ssh_keygen_for_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let pub_file = key.with_extension("pub");
    let line = std::fs::read_to_string(&pub_file).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).unwrap())
        .unwrap();
    let raw: [u8; 32] = blob[blob.len() - 32..].try_into().unwrap();
    assert_eq!(fingerprint(&raw), ssh_keygen_fingerprint(&pub_file));
}

#[test]
fn openssl_reads_our_pem_and_we_read_its() {
    let dir = tempfile::tempdir().unwrap();
    // Ours -> openssl: the public key openssl derives equals ours.
    let k = SigningKey::generate("k").unwrap();
    let priv_file = dir.path().join("ours.pem");
    std::fs::write(&priv_file, k.to_pem().as_bytes()).unwrap();
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&priv_file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), k.public().to_pem());
    // openssl -> ours.
    let theirs = dir.path().join("theirs.pem");
    assert!(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&theirs)
            .status()
            .unwrap()
            .success()
    );
    let pubout = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&theirs)
        .output()
        .unwrap();
    let k2 = SigningKey::from_pem("t", &std::fs::read(&theirs).unwrap()).unwrap();
    let p2 = PublicKey::from_pem("t", &pubout.stdout).unwrap();
    assert_eq!(k2.public(), &p2);
}
