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
scopes = ["admin"]
"#
    )
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
        let root2 = root.clone();
        crate::serve::serve(vec![cfg_path.clone()], move |public, admin| {
            print_banner(&root2, &cfg_path, up_addr, public, admin);
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
) {
    let g = format!("http://{public}");
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
