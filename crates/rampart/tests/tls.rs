//! TLS, mTLS and HTTP/2 (ALPN and h2c) against the real binary, with certificates made
//! here by rcgen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    /// Signed by the same CA, but expired.
    expired: (String, String),
    /// Signed by another CA.
    stranger: (String, String),
}

fn client_cert(
    name: &str,
    ca: &CertifiedIssuer<'_, KeyPair>,
) -> (String, String, CertificateParams) {
    let mut cp = CertificateParams::new(vec![name.into()]).unwrap();
    cp.distinguished_name.push(rcgen::DnType::CommonName, name);
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ck = KeyPair::generate().unwrap();
    let cc = cp.clone().signed_by(&ck, ca).unwrap();
    (cc.pem(), ck.serialize_pem(), cp)
}

fn test_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let ca = test_ca("rampart test CA");
    let mut sp = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let sk = KeyPair::generate().unwrap();
    let sc = sp.signed_by(&sk, &ca).unwrap();
    let (cc, ck, _) = client_cert("device-1", &ca);
    let (_, _, mut ep) = client_cert("device-old", &ca);
    ep.not_before = rcgen::date_time_ymd(2020, 1, 1);
    ep.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let ek = KeyPair::generate().unwrap();
    let ec = ep.signed_by(&ek, &ca).unwrap();
    let other = test_ca("some other CA");
    let (oc, ok, _) = client_cert("device-1", &other);
    Pki {
        ca_pem: ca.pem(),
        server: (sc.pem(), sk.serialize_pem()),
        client: (cc, ck),
        expired: (ec.pem(), ek.serialize_pem()),
        stranger: (oc, ok),
    }
}

fn tls_config(up: &Upstream, dir: &Path, p: &Pki, client_auth: &str) -> String {
    write_private(&dir.join("tls.crt"), &p.server.0, 0o644);
    write_private(&dir.join("tls.key"), &p.server.1, 0o600);
    write_private(&dir.join("ca.pem"), &p.ca_pem, 0o644);
    base_config(up.addr, "").replace(
        "drain_timeout_ms = 10000",
        &format!(
            "drain_timeout_ms = 10000\ntls = {{ cert = \"file:{0}/tls.crt\", key = \"file:{0}/tls.key\", client_ca = \"{0}/ca.pem\", client_auth = \"{1}\" }}",
            dir.display(),
            client_auth
        ),
    )
}

fn connector(p: &Pki, with_client_cert: bool, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    connector_with(p, with_client_cert.then_some(&p.client), alpn)
}

fn connector_with(
    p: &Pki,
    client: Option<&(String, String)>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(p.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = if let Some((cert, key)) = client {
        let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        b.with_client_auth_cert(certs, key).unwrap()
    } else {
        b.with_no_client_auth()
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One HTTP/1.1 request over TLS; `Err` when the handshake or the exchange fails.
async fn h1_over_tls(gw: &Gateway, c: &tokio_rustls::TlsConnector) -> Result<String, String> {
    h1_path_over_tls(gw, c, "/status").await
}

async fn h1_path_over_tls(
    gw: &Gateway,
    c: &tokio_rustls::TlsConnector,
    path: &str,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = c
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    if out.is_empty() {
        return Err("no response".into());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn mtls_required_and_hsts_and_h2_over_alpn() {
    let p = pki();
    let up = Upstream::start();
    let dir = private_dir("tls");
    let gw = Gateway::start(&tls_config(&up, &dir, &p, "required"));
    let rt = rt();
    // With a client certificate: served, with HSTS (the client used TLS).
    let resp = rt
        .block_on(h1_over_tls(&gw, &connector(&p, true, &[b"http/1.1"])))
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=63072000"),
        "{resp}"
    );
    assert_eq!(up.last().header("x-forwarded-proto"), Some("https"));
    // Without one: the handshake (or the first read) fails; nothing reaches the upstream.
    up.clear();
    let r = rt.block_on(h1_over_tls(&gw, &connector(&p, false, &[b"http/1.1"])));
    assert!(
        r.as_ref().map_or(true, |s| !s.starts_with("HTTP/1.1 200")),
        "{r:?}"
    );
    assert!(up.seen().is_empty());
    // HTTP/2 negotiated by ALPN; the upstream still gets HTTP/1.1 with the normalized path.
    let status = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let tls = connector(&p, true, &[b"h2"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("https://localhost/status//x/../y")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert!(resp.headers().get("content-security-policy").is_some());
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        // Bad :authority over h2 is refused like a bad Host.
        let req = http::Request::get("https://evil.example/status")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let bad = send.send_request(req).await.unwrap().status();
        assert_eq!(bad, 400);
        status
    });
    assert_eq!(status, 200);
    assert_eq!(up.last().target, "/status/y");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mtls_optional_accepts_clients_without_certificate() {
    let p = pki();
    let up = Upstream::start();
    let dir = private_dir("tlsopt");
    let gw = Gateway::start(&tls_config(&up, &dir, &p, "optional"));
    let rt = rt();
    let a = rt
        .block_on(h1_over_tls(&gw, &connector(&p, false, &[b"http/1.1"])))
        .unwrap();
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let b = rt
        .block_on(h1_over_tls(&gw, &connector(&p, true, &[b"http/1.1"])))
        .unwrap();
    assert!(b.starts_with("HTTP/1.1 200"), "{b}");
    // Plain HTTP to a TLS port is not served.
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    use std::io::{Read, Write};
    let _ = s.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn h2c_prior_knowledge() {
    let up = Upstream::start();
    let gw = Gateway::start(&base_config(up.addr, ""));
    let status = rt().block_on(async {
        let (mut send, _conn) = h2c_connect(gw.addr).await;
        let req = http::Request::get("http://127.0.0.1/status")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert!(resp.headers().get("x-request-id").is_some());
        assert!(resp.headers().get("strict-transport-security").is_none());
        resp.status()
    });
    assert_eq!(status, 200);
    assert_eq!(up.last().header("x-forwarded-host"), Some("127.0.0.1"));
}

/// `auth.modes = ["mtls"]`: the verified client certificate is the identity (mapped to a
/// tenant and roles), forwarded to the upstream; no certificate is a 401; a certificate
/// from another CA or an expired one never completes the handshake.
#[test]
fn mtls_certificate_is_the_identity() {
    let p = pki();
    let up = Upstream::start();
    let dir = private_dir("mtlsid");
    let cfg = tls_config(&up, &dir, &p, "optional")
        + "\n[auth]\nmodes = [\"mtls\"]\n[auth.mtls]\nmap = [{ id = \"device-1\", tenant = \"acme\", scopes = [\"jobs\"] }]\n";
    let gw = Gateway::start(&cfg);
    let rt = rt();
    let ok = rt
        .block_on(h1_path_over_tls(
            &gw,
            &connector(&p, true, &[b"http/1.1"]),
            "/private",
        ))
        .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let seen = up.last();
    assert_eq!(seen.header("x-rampart-auth"), Some("mtls"));
    assert_eq!(seen.header("x-rampart-subject"), Some("device-1"));
    assert_eq!(seen.header("x-rampart-tenant"), Some("acme"));
    assert_eq!(seen.header("x-rampart-scopes"), Some("jobs"));
    up.clear();
    let anon = rt
        .block_on(h1_path_over_tls(
            &gw,
            &connector(&p, false, &[b"http/1.1"]),
            "/private",
        ))
        .unwrap();
    assert!(anon.starts_with("HTTP/1.1 401"), "{anon}");
    assert!(anon.contains("application/problem+json"), "{anon}");
    for bad in [&p.expired, &p.stranger] {
        let r = rt.block_on(h1_path_over_tls(
            &gw,
            &connector_with(&p, Some(bad), &[b"http/1.1"]),
            "/private",
        ));
        assert!(
            r.as_ref().map_or(true, |s| !s.starts_with("HTTP/1.1 200")),
            "{r:?}"
        );
    }
    assert!(
        up.seen().is_empty(),
        "nothing but the valid certificate reached the upstream"
    );
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("rampart_auth_successes_total{method=\"mtls\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rampart_auth_failures_total{method=\"none\",reason=\"missing_credentials\"} 1"),
        "{m}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
