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
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "rampart test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let sk = KeyPair::generate().unwrap();
    let sc = sp.signed_by(&sk, &ca).unwrap();
    let mut cp = CertificateParams::new(vec!["device-1".into()]).unwrap();
    cp.distinguished_name
        .push(rcgen::DnType::CommonName, "device-1");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ck = KeyPair::generate().unwrap();
    let cc = cp.signed_by(&ck, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: (sc.pem(), sk.serialize_pem()),
        client: (cc.pem(), ck.serialize_pem()),
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
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(p.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = if with_client_cert {
        let certs = vec![CertificateDer::from_pem_slice(p.client.0.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(p.client.1.as_bytes()).unwrap();
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
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = c
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
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
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
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
