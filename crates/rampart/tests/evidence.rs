//! `rampart evidence pack|verify` as the real binary: the bundle layout, mode and data-root
//! rule; verification against the keyring only, across a key rotation; tampered files,
//! signatures and extra files detected; and the DSSE envelope checked by an independent
//! implementation, PyPI `securesystemslib` (scripts/test installs it), which also
//! detects a tampered signature and payload.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

struct Env {
    dir: PathBuf,
    config: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = private_dir(name);
        for d in ["data", "out"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
            std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let config = dir.join("rampart.toml");
        std::fs::write(
            &config,
            format!(
                "profile = \"dev\"\n[server]\ndata_dir = \"{d}/data\"\nallowed_data_roots = [\"{d}\"]\n\
                 [upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[signing]\nprovider = \"file\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        // Evidence to pack: nested directories, an empty file, binary content.
        let ev = dir.join("evidence");
        std::fs::create_dir_all(ev.join("scans/2026")).unwrap();
        std::fs::write(ev.join("policy.md"), "# Access policy\nMFA everywhere.\n").unwrap();
        std::fs::write(ev.join("scans/2026/q4.json"), "{\"findings\":0}").unwrap();
        std::fs::write(ev.join("scans/empty.log"), "").unwrap();
        std::fs::write(ev.join("blob.bin"), [0u8, 1, 2, 255, 254]).unwrap();
        Env { dir, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(bin()).args(args).output().unwrap()
    }

    fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    fn keyring(&self) -> PathBuf {
        self.dir.join("data/keys/keyring.json")
    }

    fn pack(&self, out: &Path) -> Output {
        self.run(&[
            "evidence",
            "pack",
            "--config",
            self.cfg(),
            self.dir.join("evidence").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    }

    fn verify(&self, bundle: &Path) -> Output {
        self.run(&[
            "evidence",
            "verify",
            "--keyring",
            self.keyring().to_str().unwrap(),
            bundle.to_str().unwrap(),
        ])
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Independent checks in Python: tarfile reads the bundle, hashlib recomputes every
/// subject digest, securesystemslib verifies the DSSE envelope with the public key from
/// the keyring (keyid = the SHA256: fingerprint), then must refuse a changed signature
/// and a changed payload. Writes tampered bundles for rampart to refuse.
const PY: &str = r#"
import base64, copy, hashlib, io, json, sys, tarfile
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from securesystemslib.exceptions import VerificationError

bundle, keyring, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
ring = json.load(open(keyring))
keys = [SSlibKey(k["fingerprint"], "ed25519", "ed25519",
                 {"public": base64.b64decode(k["public_key"]).hex()}) for k in ring["keys"]]
members = {}
with tarfile.open(bundle, "r:gz") as t:
    for m in t.getmembers():
        members[m.name] = t.extractfile(m).read()
env_dict = json.loads(members["envelope.dsse.json"])
assert env_dict["payloadType"] == "application/vnd.in-toto+json", env_dict["payloadType"]
# from_dict consumes its argument: give it copies.
env = Envelope.from_dict(copy.deepcopy(env_dict))
accepted = env.verify(keys, 1)
assert len(accepted) == 1
stmt = json.loads(env.payload)
assert stmt["_type"] == "https://in-toto.io/Statement/v1"
assert members["statement.json"] == env.payload
names = set()
for s in stmt["subject"]:
    data = members["files/" + s["name"]]
    assert hashlib.sha256(data).hexdigest() == s["digest"]["sha256"], s["name"]
    names.add(s["name"])
assert names == {n[len("files/"):] for n in members if n.startswith("files/")}
print("securesystemslib: verified", len(names), "subjects")

# A flipped signature bit and a changed payload must both fail.
bad = copy.deepcopy(env_dict)
sig = bytearray(base64.b64decode(env_dict["signatures"][0]["sig"]))
sig[10] ^= 1
bad["signatures"] = [{"keyid": env_dict["signatures"][0]["keyid"], "sig": base64.b64encode(bytes(sig)).decode()}]
try:
    Envelope.from_dict(copy.deepcopy(bad)).verify(keys, 1); sys.exit("tampered signature accepted")
except VerificationError:
    print("securesystemslib: tampered signature detected")
bad2 = copy.deepcopy(env_dict)
payload = json.loads(base64.b64decode(env_dict["payload"]))
payload["subject"][0]["digest"]["sha256"] = "0" * 64
bad2["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
try:
    Envelope.from_dict(copy.deepcopy(bad2)).verify(keys, 1); sys.exit("tampered payload accepted")
except VerificationError:
    print("securesystemslib: tampered payload detected")

def write(name, files):
    with tarfile.open(outdir + "/" + name, "w:gz") as t:
        for n, data in files.items():
            ti = tarfile.TarInfo(n); ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))

f = dict(members); f["files/policy.md"] = f["files/policy.md"] + b"edited\n"
write("tampered-file.tar.gz", f)
f = dict(members); f["envelope.dsse.json"] = json.dumps(bad).encode()
f["statement.json"] = base64.b64decode(bad["payload"])
write("tampered-sig.tar.gz", f)
f = dict(members); f["files/extra.txt"] = b"smuggled"
write("extra-file.tar.gz", f)
f = dict(members); del f["files/blob.bin"]
write("missing-file.tar.gz", f)
write("repacked.tar.gz", dict(members))
"#;

#[test]
fn pack_verify_rotate_and_tamper() {
    let env = Env::new("evidence");
    let o = env.run(&[
        "keys",
        "generate",
        "--config",
        env.cfg(),
        "--key-id",
        "ev-1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));

    let b1 = env.dir.join("out/b1.tar.gz");
    let o = env.pack(&b1);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("packed 4 files"), "{}", out(&o));
    assert_eq!(
        std::fs::metadata(&b1).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // Exactly 0640 under a narrower umask too (the mode is set, not left to the umask).
    let b0 = env.dir.join("out/b0.tar.gz");
    let o = Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .arg(bin())
        .args(["evidence", "pack", "--config", env.cfg()])
        .arg(env.dir.join("evidence"))
        .arg("--out")
        .arg(&b0)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        std::fs::metadata(&b0).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let o = env.verify(&b1);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("OK: 4 files, signed by ev-1 SHA256:"),
        "{}",
        out(&o)
    );

    // The layout, read with GNU tar.
    let o = Command::new("tar").arg("-tzf").arg(&b1).output().unwrap();
    let mut names: Vec<String> = out(&o).lines().map(str::to_owned).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "envelope.dsse.json",
            "files/blob.bin",
            "files/policy.md",
            "files/scans/2026/q4.json",
            "files/scans/empty.log",
            "statement.json"
        ]
    );

    // Independent verification, and tampered bundles made by Python.
    let py = Command::new("python3")
        .args(["-c", PY])
        .arg(&b1)
        .arg(env.keyring())
        .arg(env.dir.join("out"))
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "securesystemslib check failed (scripts/test installs it):\n{}\n{}",
        out(&py),
        err(&py)
    );
    for line in [
        "securesystemslib: verified 4 subjects",
        "tampered signature detected",
        "tampered payload detected",
    ] {
        assert!(out(&py).contains(line), "{}", out(&py));
    }
    let o = env.verify(&env.dir.join("out/repacked.tar.gz"));
    assert_eq!(o.status.code(), Some(0), "another tar writer: {}", err(&o));
    for (name, why) in [
        ("tampered-file", "files/policy.md: sha256 does not match"),
        ("tampered-sig", "does not verify"),
        (
            "extra-file",
            "files/extra.txt: in the bundle but not in the signed statement",
        ),
        (
            "missing-file",
            "files/blob.bin: listed in the statement but missing",
        ),
    ] {
        let o = env.verify(&env.dir.join(format!("out/{name}.tar.gz")));
        assert_eq!(o.status.code(), Some(1), "{name}: {}", err(&o));
        assert!(err(&o).contains(why), "{name}: {}", err(&o));
        assert!(!out(&o).contains("OK"));
    }

    // Rotation: new bundles are signed by the new key; the old bundle still verifies.
    let o = env.run(&["keys", "rotate", "--config", env.cfg(), "--key-id", "ev-2"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let b2 = env.dir.join("out/b2.tar.gz");
    assert_eq!(env.pack(&b2).status.code(), Some(0));
    let o = env.verify(&b2);
    assert!(out(&o).contains("signed by ev-2"), "{}", out(&o));
    let o = env.verify(&b1);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("signed by ev-1"), "{}", out(&o));
    // --config finds the same keyring.
    let o = env.run(&[
        "evidence",
        "verify",
        "--config",
        env.cfg(),
        b1.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));

    // A keyring without the signer: exit 1 (the bundle carries no key we would trust).
    let other = Env::new("evidence-other");
    let o = other.run(&[
        "keys",
        "generate",
        "--config",
        other.cfg(),
        "--key-id",
        "x-1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = other.verify(&b1);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("no signature by a key in the keyring"),
        "{}",
        err(&o)
    );

    // --out outside every allowed_data_roots entry: refused (exit 2), nothing written.
    let outside = other.dir.join("out/b.tar.gz");
    let o = env.pack(&outside);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("allowed_data_roots"), "{}", err(&o));
    assert!(!outside.exists());
    // A symlink inside the root that leads out of it: refused.
    let link = env.dir.join("out/escape");
    std::os::unix::fs::symlink(other.dir.join("out"), &link).unwrap();
    let o = env.pack(&link.join("b.tar.gz"));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(!other.dir.join("out/b.tar.gz").exists());
    // A group-writable directory under the root: refused by the data-root checks.
    let loose = env.dir.join("loose");
    std::fs::create_dir_all(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o770)).unwrap();
    let o = env.pack(&loose.join("b.tar.gz"));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(!loose.join("b.tar.gz").exists());
}
