//! `rampart demo`: a built-in echo upstream and the gateway on free loopback ports, with
//! a private data root under the user's state directory, and curl commands to paste.
//!
//! The demo goes through the same path as `serve`: it writes its configuration to
//! `<root>/demo.toml` (mode 0600) and serves that file, so the data-root rules and the
//! config loader are exercised exactly as in production (with `profile = "dev"`).

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use tokio::net::TcpListener;

/// `$XDG_STATE_HOME/rampart/demo`, else `~/.local/state/rampart/demo`.
fn demo_root() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(s) => PathBuf::from(s),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".local/state"),
    };
    base.is_absolute()
        .then(|| base.join("rampart").join("demo"))
}

/// Creates the root (and missing parents) owner-only, and tightens an existing root.
fn prepare(root: &PathBuf) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)?;
    if let Some(parent) = root.parent() {
        // `rampart/` under the state dir: keep it private too.
        let mode = fs::metadata(parent)?.permissions().mode();
        if mode & 0o022 != 0 {
            fs::set_permissions(parent, fs::Permissions::from_mode(0o700))?;
        }
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o700))
}

fn config_text(
    root: &std::path::Path,
    upstream: SocketAddr,
    listen: SocketAddr,
    admin: SocketAddr,
) -> String {
    let root = root.display();
    format!(
        r#"# Written by `rampart demo`; served with `rampart serve --config` semantics.
profile = "dev"

[server]
listen = "{listen}"
admin_listen = "{admin}"
trusted_hosts = ["127.0.0.1", "localhost"]
data_dir = "{root}"
allowed_data_roots = ["{root}"]
request_timeout_ms = 10000

[upstreams.echo]
url = "http://{upstream}"

[[routes]]
id = "status"
path = "/status"
methods = ["GET"]
upstream = "echo"
public = true

[[routes]]
id = "echo"
path = "/echo"
upstream = "echo"
public = true
max_body_bytes = 1024

[[routes]]
id = "tenant-items"
path = "/tenants/{{tenant}}/items"
methods = ["GET", "POST"]
upstream = "echo"
public = true

[[routes]]
id = "private"
path = "/private"
upstream = "echo"
scopes = ["demo"]

# Dev key material made by the demo in its data root (0600): an HS256 secret for
# `rampart token mint`, and the pepper API keys are hashed under.
[auth]
modes = ["jwt", "api_key"]

[auth.jwt]
issuer = "rampart-demo"
audience = ["rampart"]
allowed_algs = ["HS256"]
hs256_secret = "file:{root}/jwt-hs256.secret"

[auth.api_key]
pepper = "file:{root}/api-key.pepper"
"#
    )
}

/// Writes `len` random bytes (base64url) to `path` at 0600 unless the file exists.
fn ensure_secret(path: &std::path::Path) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 48];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| std::io::Error::other("random generator"))?;
    let text = rampart_jwt::b64::encode(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// What the banner shows: a ready token and a fresh API key.
struct Credentials {
    token: String,
    api_key: String,
}

async fn credentials(cfg_path: &std::path::Path) -> Result<Credentials, String> {
    let cfg = rampart_config::load(&[cfg_path.to_path_buf()])
        .map_err(|e| format!("demo config: {}", e.errors.len()))?;
    let settings = rampart_jwt::JwtSettings::from_config(&cfg)
        .ok_or("no [auth.jwt]")?
        .map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = rampart_jwt::mint_hs256(
        &settings,
        &rampart_jwt::MintRequest {
            subject: "demo-user".into(),
            tenant: Some("acme".into()),
            scopes: vec!["demo".into()],
            roles: Vec::new(),
            ttl_s: 12 * 3600,
        },
        now,
    )
    .map_err(|e| e.to_string())?;
    let store = rampart_store::Store::open(&cfg)
        .await
        .map_err(|e| e.to_string())?;
    let keys = rampart_store::ApiKeys::from_config(store, &cfg).map_err(|e| e.to_string())?;
    let (_, secret) = keys
        .create(rampart_store::NewApiKey {
            name: "demo-key".into(),
            tenant: "acme".into(),
            scopes: vec!["demo".into()],
            roles: Vec::new(),
            expires: i64::try_from(now + 24 * 3600).ok(),
            rate_limit: rampart_store::RateLimitOverride::default(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Credentials {
        token,
        api_key: secret.expose().to_owned(),
    })
}

pub fn run(listen: SocketAddr, admin_listen: SocketAddr) -> u8 {
    crate::logging::init();
    let Some(root) = demo_root() else {
        eprintln!("rampart demo: neither XDG_STATE_HOME nor HOME is set to an absolute path");
        return 2;
    };
    if let Err(e) = prepare(&root) {
        eprintln!("rampart demo: cannot prepare {}: {e}", root.display());
        return 2;
    }
    if let Err(e) = rampart_config::check_data_root(&root) {
        eprintln!(
            "rampart demo: the demo data root {} fails a data-root check: {e}\n\
             (set XDG_STATE_HOME to a directory whose ancestors are not group- or world-writable)",
            root.display()
        );
        return 2;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return 2,
    };
    rt.block_on(async move {
        let up = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rampart demo: cannot bind the echo upstream: {e}");
                return 2;
            }
        };
        let up_addr = match up.local_addr() {
            Ok(a) => a,
            Err(_) => return 2,
        };
        tokio::spawn(crate::echo::serve(up, false));
        let cfg_path = root.join("demo.toml");
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&cfg_path)
            .and_then(|mut f| {
                f.write_all(config_text(&root, up_addr, listen, admin_listen).as_bytes())
            });
        if let Err(e) = written {
            eprintln!("rampart demo: cannot write {}: {e}", cfg_path.display());
            return 2;
        }
        for f in ["jwt-hs256.secret", "api-key.pepper"] {
            if let Err(e) = ensure_secret(&root.join(f)) {
                eprintln!("rampart demo: cannot write {}: {e}", root.join(f).display());
                return 2;
            }
        }
        let creds = match credentials(&cfg_path).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("rampart demo: cannot prepare dev credentials: {e}");
                return 2;
            }
        };
        let root2 = root.clone();
        crate::serve::serve(vec![cfg_path.clone()], move |public, admin| {
            print_banner(&root2, &cfg_path, up_addr, public, admin, &creds);
        })
        .await
    })
}

fn print_banner(
    root: &std::path::Path,
    cfg: &std::path::Path,
    upstream: SocketAddr,
    public: SocketAddr,
    admin: Option<SocketAddr>,
    creds: &Credentials,
) {
    let g = format!("http://{public}");
    let token = &creds.token;
    let key = &creds.api_key;
    // The same token with its last signature character changed.
    let forged = {
        let mut t = token.clone();
        let last = t.pop().map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
        t.push(last);
        t
    };
    let a = admin.map(|a| format!("http://{a}")).unwrap_or_default();
    println!(
        r#"
rampart demo is running (profile "dev"). Ctrl-C stops it.

  gateway   {g}
  admin     {a}
  upstream  http://{upstream}   (built-in echo; shows what the upstream receives)
  data root {root}
  config    {cfg}

Try:
  # forwarded: the echo shows x-request-id, X-Forwarded-For and x-rampart-auth added by rampart
  curl -si {g}/status
  # spoofed identity headers from an untrusted client are stripped before the upstream
  curl -s {g}/echo -H 'x-rampart-subject: admin' -H 'X-Forwarded-For: 1.2.3.4'
  # refusals, as RFC 9457 problem+json with security headers:
  curl -si --path-as-is '{g}/status/../../etc/passwd'     # 400 path climbs above root
  curl -si '{g}/status%2Fadmin'                            # 400 encoded slash
  curl -si {g}/nowhere                                     # 404 no route
  curl -si -X DELETE {g}/status                            # 405 with Allow
  curl -si {g}/private                                     # 401 authentication required
  # authentication (dev HS256 key set in the data root; `rampart token mint` makes more):
  curl -s {g}/private -H 'Authorization: Bearer {token}'    # accepted: echo shows x-rampart-subject: demo-user
  curl -si {g}/private -H 'Authorization: Bearer {forged}'  # 401 Bearer error="invalid_token"
  curl -s {g}/private -H 'x-api-key: {key}'    # API key (stored as a keyed hash only)
  rampart token mint --config {cfg} --sub you --scopes demo --ttl 1h
  curl -si -H 'Host: evil.example' {g}/status              # 400 host not allowed
  curl -si {g}/echo --data-binary @/etc/services           # 413 body over 1 KiB
  # operations
  curl -s {a}/healthz
  curl -s {a}/metrics | grep rampart_requests_total
  curl -s {a}/version
"#,
        root = root.display(),
        cfg = cfg.display(),
    );
}
