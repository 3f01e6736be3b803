//! rustls server configuration from `server.tls`: certificate chain and key (PEM), and
//! optional client-certificate verification against `client_ca`.

use std::sync::Arc;

use rampart_config::{ClientAuth, TlsConfig};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.cert ({0}): no PEM certificate found")]
    NoCert(String),
    #[error("server.tls.cert ({0}): {1}")]
    BadCert(String, String),
    #[error("server.tls.key: no PEM private key found")]
    NoKey,
    #[error("server.tls.client_ca: {0}")]
    BadClientCa(String),
    #[error("server.tls: {0}")]
    Rustls(String),
}

/// ALPN protocols offered, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub fn server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cfg.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCert(cfg.cert_source.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cfg.cert_source.clone()));
    }
    // The parse error of a key never echoes key bytes.
    let key = PrivateKeyDer::from_pem_slice(cfg.key_pem.expose()).map_err(|_| TlsError::NoKey)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (&cfg.client_ca_pem, cfg.client_auth) {
        (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|e| TlsError::BadClientCa(e.to_string()))?;
                roots
                    .add(c)
                    .map_err(|e| TlsError::BadClientCa(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TlsError::BadClientCa("no CA certificate found".into()));
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if cfg.client_auth == ClientAuth::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            let v = v
                .build()
                .map_err(|e| TlsError::BadClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(v)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut sc = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    sc.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(sc))
}
