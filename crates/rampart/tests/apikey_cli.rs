//! `rampart apikey` and `rampart revoke` run as the real binary against an SQLite store
//! in a private data root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rampart_store::{ApiKeyCache, ApiKeyError, RevocationKind, RevocationSet, Store};

const PEPPER: &str = "cli-test-pepper-0123456789abcdef-0123456789";

struct Env {
    dir: PathBuf,
    config: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = common::private_dir(name);
        let config = dir.join("rampart.toml");
        std::fs::write(
            &config,
            format!(
                "profile = \"dev\"\n[server]\ndata_dir = \"{d}/data\"\nallowed_data_roots = [\"{d}\"]\n\
                 [upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[auth]\nmodes = [\"api_key\"]\n\
                 [auth.api_key]\npepper = \"env:RAMPART_TEST_PEPPER\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        Env { dir, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(&self.config, args)
    }

    fn run_with(&self, config: &Path, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        full.extend_from_slice(&["--config", config.to_str().unwrap()]);
        Command::new(common::bin())
            .args(&full)
            .env("RAMPART_TEST_PEPPER", PEPPER)
            .output()
            .unwrap()
    }

    fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(self.dir.join("data")).unwrap() {
            all.extend(std::fs::read(e.unwrap().path()).unwrap());
        }
        all
    }

    async fn store(&self) -> Store {
        Store::open_url("sqlite://rampart.db", Some(&self.dir.join("data")))
            .await
            .unwrap()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn create_list_revoke_never_show_the_secret() {
    let env = Env::new("apikey-cli");

    // Text: the key alone on stdout.
    let o = env.run(&[
        "apikey",
        "create",
        "--name",
        "ci deploy",
        "--tenant",
        "acme",
        "--scopes",
        "jobs metrics",
        "--roles",
        "reader",
        "--expires",
        "90d",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let key = out(&o).trim().to_owned();
    assert_eq!(out(&o).lines().count(), 1);
    assert_eq!(key.len(), rampart_store::key::KEY_LEN);
    let id = rampart_store::key::parse(&key).unwrap().id.to_owned();
    assert!(err(&o).contains(&id) && err(&o).contains("shown once"));
    // The documented scanner regex finds exactly the key in the output (GNU grep -E).
    let mut grep = Command::new("grep")
        .args(["-Eo", rampart_store::key::SCANNER_REGEX])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = grep.stdin.take().unwrap();
        write!(stdin, "leaked: X-Api-Key: {key}\nnot a key: rpk_short_x\n").unwrap();
    }
    let found = grep.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), key);
    assert!(!err(&o).contains(&key));

    // JSON: the key under "key", with the metadata.
    let o = env.run(&[
        "apikey", "create", "--name", "batch", "--tenant", "globex", "--scopes", "jobs",
        "--format", "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let key2 = v["key"].as_str().unwrap().to_owned();
    let id2 = v["id"].as_str().unwrap().to_owned();
    assert_eq!(rampart_store::key::parse(&key2).unwrap().id, id2);
    assert_eq!(v["tenant"], "globex");
    assert_eq!(v["scopes"], serde_json::json!(["jobs"]));
    assert_eq!(v["expires"], serde_json::Value::Null);
    assert_eq!(v["status"], "active");

    // The keys the CLI printed verify against what it stored.
    let store = env.store().await;
    let cache = ApiKeyCache::new(&rampart_config::secret::Secret::new(
        PEPPER.as_bytes().to_vec(),
    ))
    .unwrap();
    let revs = RevocationSet::new();
    rampart_store::load_once(&store, &cache, &revs)
        .await
        .unwrap();
    let rec = cache.verify(&key).unwrap();
    assert_eq!(rec.name, "ci deploy");
    assert_eq!(rec.scopes, ["jobs", "metrics"]);
    assert_eq!(rec.roles, ["reader"]);
    let days = (rec.expires.unwrap() - rec.created) / 86_400;
    assert_eq!(days, 90);
    assert!(cache.verify(&key2).is_ok());

    // list: metadata, never a key, a secret part or a hash.
    let secrets = [&key[17..60], &key2[17..60]];
    for fmt in ["text", "json"] {
        let o = env.run(&["apikey", "list", "--format", fmt]);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        let text = out(&o);
        assert!(text.contains(&id) && text.contains(&id2), "{text}");
        for s in secrets {
            assert!(!text.contains(s), "{fmt} list shows a secret");
        }
        assert!(!text.contains("hash"), "{text}");
    }
    let o = env.run(&["apikey", "list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    for row in v.as_array().unwrap() {
        assert!(row.get("key").is_none());
    }

    // revoke: exit 0, listed as revoked, refused by a cache that reloads.
    let o = env.run(&["apikey", "revoke", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = env.run(&["apikey", "list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let row = |id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(row(&id)["status"], "revoked");
    assert_eq!(row(&id)["name"], "ci deploy");
    assert!(row(&id)["revoked"].is_string());
    assert_eq!(row(&id2)["status"], "active");
    rampart_store::load_once(&store, &cache, &revs)
        .await
        .unwrap();
    assert_eq!(cache.verify(&key).map(|_| ()), Err(ApiKeyError::Revoked));
    assert!(revs.is_revoked_apikey(&id));
    assert!(cache.verify(&key2).is_ok());
    // An unknown id: exit 1.
    let o = env.run(&["apikey", "revoke", "AAAAAAAAAAAA"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));

    // The database files never hold a key or its secret part.
    store.close().await;
    let bytes = env.db_bytes();
    assert!(!bytes.is_empty());
    for s in [key.as_str(), key2.as_str(), secrets[0], secrets[1]] {
        assert!(!contains(&bytes, s), "secret found in the database files");
    }
    assert!(
        contains(&bytes, &id),
        "the id is stored (sanity check of the scan)"
    );
    let _ = std::fs::remove_dir_all(&env.dir);
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let env = Env::new("apikey-cli-usage");
    for args in [
        vec![
            "apikey",
            "create",
            "--name",
            "x",
            "--tenant",
            "acme",
            "--expires",
            "soon",
        ],
        vec!["apikey", "create", "--name", "x", "--tenant", "a b"],
        vec![
            "apikey",
            "create",
            "--name",
            "x",
            "--tenant",
            "acme",
            "--expires",
            "2001-01-01T00:00:00Z",
        ],
        vec!["apikey", "create", "--tenant", "acme"],
        vec!["revoke", "--jti", "t", "--until", "2001-01-01T00:00:00Z"],
        vec!["revoke", "--cert-fp", "abc"],
        vec!["revoke", "--jti", "t", "--subject", "s"],
        vec!["revoke"],
    ] {
        let o = env.run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
    }
    // A config without a pepper: create is refused, naming the key; nothing is created.
    let nopepper = env.dir.join("nopepper.toml");
    std::fs::write(
        &nopepper,
        format!(
            "profile = \"dev\"\n[server]\ndata_dir = \"{d}/data2\"\nallowed_data_roots = [\"{d}\"]\n\
             [upstreams.app]\nurl = \"http://127.0.0.1:1\"\n",
            d = env.dir.display()
        ),
    )
    .unwrap();
    let o = env.run_with(
        &nopepper,
        &["apikey", "create", "--name", "x", "--tenant", "acme"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("auth.api_key.pepper"), "{}", err(&o));
    assert!(!env.dir.join("data2").exists());
    // list and revoke need no pepper.
    let o = env.run_with(&nopepper, &["apikey", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // An invalid configuration.
    let bad = env.dir.join("bad.toml");
    std::fs::write(&bad, "profile = \"dev\"\n[store]\nurl = \"mysql://x\"\n").unwrap();
    let o = env.run_with(&bad, &["apikey", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("store.url"));
    let _ = std::fs::remove_dir_all(&env.dir);
}

#[tokio::test]
async fn revoke_every_kind() {
    let env = Env::new("revoke-cli");
    let o = env.run(&[
        "apikey",
        "create",
        "--name",
        "k",
        "--tenant",
        "acme",
        "--expires",
        "30d",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let fp = "SHA256:".to_owned() + &["0A"; 32].join(":");
    for args in [
        vec!["revoke", "--jti", "tok-9", "--until", "1h"],
        vec![
            "revoke",
            "--subject",
            "mallory",
            "--reason",
            "left the company",
        ],
        vec![
            "revoke",
            "--cert-fp",
            fp.as_str(),
            "--until",
            "2099-01-01T00:00:00Z",
        ],
        vec!["revoke", "--apikey", id.as_str()],
    ] {
        let o = env.run(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", err(&o));
    }
    let o = env.run(&["revoke", "--apikey", "AAAAAAAAAAAA"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));

    let store = env.store().await;
    let list = rampart_store::Revocations::new(store.clone())
        .list()
        .await
        .unwrap();
    let find = |k: RevocationKind| list.iter().find(|r| r.kind == k).unwrap();
    let now = rampart_store::when::now_unix();
    let jti = find(RevocationKind::Jti);
    assert_eq!(jti.value, "tok-9");
    assert!((now + 3590..=now + 3600).contains(&jti.until.unwrap()));
    let sub = find(RevocationKind::Subject);
    assert_eq!(sub.until, None);
    assert_eq!(sub.reason.as_deref(), Some("left the company"));
    let cert = find(RevocationKind::Cert);
    assert_eq!(cert.value, "0a".repeat(32));
    assert_eq!(cert.until, Some(4_070_908_800));
    let ak = find(RevocationKind::ApiKey);
    assert_eq!(ak.value, id);
    let key_expires = rampart_store::list_api_keys(&store).await.unwrap()[0].expires;
    assert_eq!(ak.until, key_expires, "lapses with the key");
    assert_eq!(list.len(), 4);
    store.close().await;
    let _ = std::fs::remove_dir_all(&env.dir);
}
