//! Test harness: a recording upstream, the real `rampart` binary started on free ports,
//! and a raw HTTP/1.1 client that can send what well-behaved clients cannot.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_bytes: u64,
    pub body_complete: bool,
    /// Unique per request, so a late update after `clear()` never lands on another entry.
    pub id: u64,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn update(seen: &Mutex<Vec<Seen>>, id: u64, f: impl FnOnce(&mut Seen)) {
    if let Some(e) = seen.lock().unwrap().iter_mut().find(|e| e.id == id) {
        f(e);
    }
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn has_header_like(&self, needle: &str) -> bool {
        self.headers.iter().any(|(n, _)| {
            n.to_ascii_lowercase()
                .replace(['_', '.'], "-")
                .contains(needle)
        })
    }
}

/// A recording upstream on 127.0.0.1 running on its own runtime thread.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl Upstream {
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let s2 = Arc::clone(&seen);
        let connections: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let c2 = Arc::clone(&connections);
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let seen = Arc::clone(&s2);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, Arc::clone(&seen)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            connections,
            _rt: rt,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

async fn handle(
    req: http::Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_bytes: 0,
        body_complete: false,
        id,
    });
    let mut complete = true;
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    let n = d.len() as u64;
                    update(&seen, id, |e| e.body_bytes += n);
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    update(&seen, id, |e| e.body_complete = complete);
    let path = parts.uri.path();
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut r = http::Response::new(Full::new(Bytes::from_static(b"{\"upstream\":true}")));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("server", "upstream/1.0".parse().unwrap());
    r.headers_mut()
        .insert("x-powered-by", "php/5".parse().unwrap());
    // An upstream with its own (too wide) CORS answer, on request.
    if let Some(v) = parts.headers.get("x-test-upstream-acao") {
        r.headers_mut()
            .insert("access-control-allow-origin", v.clone());
    }
    Ok(r)
}

/// A private directory for test files (mode 0700) that itself passes the data-root
/// rules wherever the repository was cloned.
pub fn private_dir(name: &str) -> PathBuf {
    rampart_test_support::private_dir(env!("CARGO_TARGET_TMPDIR"), name)
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rampart")
}

/// The real binary, serving a config written to a private directory.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
}

/// A minimal valid dev config routing to `upstream`; `extra` is appended.
pub fn base_config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"profile = "dev"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
trusted_hosts = ["127.0.0.1", "localhost", "api.example.com"]
max_header_bytes = 16384
header_read_timeout_ms = 1000
request_timeout_ms = 3000
drain_timeout_ms = 10000

[upstreams.app]
url = "http://{upstream}"

[upstreams.dead]
url = "http://127.0.0.1:9"

[[routes]]
id = "status"
path = "/status"
methods = ["GET"]
upstream = "app"
public = true

[[routes]]
id = "echo"
path = "/echo"
upstream = "app"
public = true
max_body_bytes = 1024

[[routes]]
id = "slow"
path = "/slow"
upstream = "app"
public = true

[[routes]]
id = "items"
path = "/tenants/{{tenant}}/items"
upstream = "app"
public = true

[[routes]]
id = "params"
path = "/matrix"
upstream = "app"
public = true
allow_path_params = true

[[routes]]
id = "down"
path = "/down"
upstream = "dead"
public = true

[[routes]]
id = "private"
path = "/private"
upstream = "app"
{extra}"#
    )
}

impl Gateway {
    pub fn start(config: &str) -> Self {
        Self::try_start(config).unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    pub fn try_start(config: &str) -> Result<Self, String> {
        let dir = private_dir("gw");
        let path = dir.join("rampart.toml");
        std::fs::write(&path, config).unwrap();
        Self::spawn(dir, path)
    }

    pub fn spawn(dir: PathBuf, path: PathBuf) -> Result<Self, String> {
        Self::spawn_env(dir, path, &[])
    }

    /// As [`Gateway::spawn`], with extra environment variables for the child.
    pub fn spawn_env(dir: PathBuf, path: PathBuf, env: &[(&str, &str)]) -> Result<Self, String> {
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .env("RAMPART_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let stdout: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<(SocketAddr, Option<SocketAddr>)>();
        {
            let lines = Arc::clone(&stderr);
            let err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v["fields"]["message"] == "listening"
                    {
                        let p = v["fields"]["public"].as_str().unwrap().parse().unwrap();
                        let a = v["fields"]["admin"].as_str().and_then(|s| s.parse().ok());
                        let _ = tx.send((p, a));
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        {
            let lines = Arc::clone(&stdout);
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            });
        }
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((addr, admin)) => Ok(Self {
                child,
                addr,
                admin,
                dir,
                config: path,
                stderr,
                stdout,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                Err(stderr.lock().unwrap().join("\n"))
            }
        }
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        Self::wait_in(&self.stderr, needle, timeout)
    }

    /// Waits for an access-log line (stdout) containing `needle`.
    pub fn wait_access(&self, needle: &str, timeout: Duration) -> bool {
        Self::wait_in(&self.stdout, needle, timeout)
    }

    fn wait_in(lines: &Mutex<Vec<String>>, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if lines.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn get(&self, path: &str) -> Resp {
        raw(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        )
    }

    pub fn admin_get(&self, path: &str) -> Resp {
        raw(
            self.admin.unwrap(),
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes and reads one response (until the connection closes or the framing
/// says the body is complete).
pub fn raw(addr: SocketAddr, request: &str) -> Resp {
    raw_bytes(addr, request.as_bytes())
}

pub fn raw_bytes(addr: SocketAddr, request: &[u8]) -> Resp {
    try_raw(addr, request).unwrap_or_else(|| panic!("no response"))
}

/// Like [`raw_bytes`], `None` when the connection closes without a response.
pub fn try_raw(addr: SocketAddr, request: &[u8]) -> Option<Resp> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let _ = s.write_all(request);
    read_response(&mut s)
}

pub fn read_response(s: &mut TcpStream) -> Option<Resp> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end;
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            head_end = i + 4;
            break;
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            headers
                .entry(n.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_owned());
        }
    }
    let mut body = buf[head_end..].to_vec();
    let cl = headers
        .get("content-length")
        .and_then(|v| v[0].parse::<usize>().ok());
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v[0].eq_ignore_ascii_case("chunked"));
    loop {
        if let Some(cl) = cl {
            if body.len() >= cl {
                body.truncate(cl);
                break;
            }
        } else if chunked && let Some(b) = dechunk(&body) {
            body = b;
            break;
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&tmp[..n]),
        }
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = find(b, b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..i]).ok()?.split(';').next()?.trim(),
            16,
        )
        .ok()?;
        b = &b[i + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

pub const SECURITY_HEADERS: [&str; 6] = [
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
];

pub fn assert_security_headers(r: &Resp) {
    for h in SECURITY_HEADERS {
        assert!(
            r.header(h).is_some(),
            "missing {h} on {} response: {:?}",
            r.status,
            r.headers
        );
    }
    assert!(
        r.header("server").is_none(),
        "Server leaked: {:?}",
        r.headers
    );
    assert!(r.header("x-powered-by").is_none(), "X-Powered-By leaked");
    assert!(r.header("x-request-id").is_some(), "no x-request-id");
}

pub fn assert_problem(r: &Resp, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v = r.json();
    assert_eq!(v["status"], status);
    assert!(v["type"].is_string() && v["title"].is_string() && v["detail"].is_string());
    assert_eq!(v["request_id"].as_str(), r.header("x-request-id"));
    assert_security_headers(r);
    v
}

pub fn write_private(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A TLS front for a plain backend: terminates TLS with a certificate for `localhost`
/// issued by a test CA and copies bytes both ways; one backend connection per client
/// connection, closed when either side closes. `ca` is the CA certificate (PEM) the
/// gateway is told to trust through `SSL_CERT_FILE`.
pub struct TlsFront {
    pub addr: SocketAddr,
    pub ca: PathBuf,
}

impl TlsFront {
    pub fn start(backend: SocketAddr) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
            KeyPair,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "rampart upstream test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".into()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let sk = KeyPair::generate().unwrap();
        let sc = sp.signed_by(&sk, &ca).unwrap();
        let dir = private_dir("tls-front");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rustls_pki_types::PrivateKeyDer::try_from(sk.serialize_der()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![sc.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(s).await else {
                            return;
                        };
                        let Ok(mut back) = tokio::net::TcpStream::connect(backend).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                    });
                }
            });
        });
        TlsFront { addr, ca: ca_path }
    }

    /// A gateway serving `config` with its upstream `app` (at `backend`) moved to this
    /// front (https); `upstream_extra` is added to the upstream's table.
    pub fn gateway(&self, config: &str, backend: SocketAddr, upstream_extra: &str) -> Gateway {
        let cfg = config.replace(
            &format!("url = \"http://{backend}\"\n"),
            &format!(
                "url = \"https://localhost:{}\"\n{upstream_extra}",
                self.addr.port()
            ),
        );
        let dir = private_dir("gw-https");
        let path = dir.join("rampart.toml");
        std::fs::write(&path, cfg).unwrap();
        let ca = self.ca.to_str().unwrap().to_owned();
        Gateway::spawn_env(dir, path, &[("SSL_CERT_FILE", &ca)]).unwrap()
    }
}

/// An HTTP/2 client connection (prior knowledge, cleartext) to `addr`: the request
/// sender, and the task driving the connection (await it to see how the connection
/// ended).
pub async fn h2c_connect<B>(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}
