//! `rampart check`: every configuration, profile, data-root, secret-file and key-material
//! check, without serving; with `--online`, whether the JWKS endpoint, Redis and
//! PostgreSQL answer.
//!
//! Added to what `rampart_config::check` finds:
//! - TLS material loads into rustls (certificate chain, key, client CA);
//! - certificate validity: an expired or not-yet-valid certificate (chain or client CA)
//!   is an error, one expiring within [`EXPIRY_WARNING_DAYS`] a warning (warnings alone
//!   leave the exit status at 0);
//! - signing key presence (`[signing] provider = "env"` needs `SIGNING_PRIVATE_KEY`, a
//!   PEM private key; its content is never printed);
//! - routes with `identity_assertion`: the signing key `serve` would open (the same
//!   lookup, read-only) can be opened, else an error (`identity-assertion-key`), as
//!   `serve` would refuse to start;
//! - `--online`: `auth.jwt.jwks_url` answers 200 with a JSON key set; each Redis URL
//!   answers `PING`; each PostgreSQL URL answers the SSLRequest probe. Each probe is a
//!   plain TCP connection (TLS for https JWKS) with a [`PROBE_TIMEOUT`] deadline; no
//!   credential is sent, and messages name host and port only (never a URL's userinfo).

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rampart_config::{Config, Finding, Severity};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// A certificate expiring within this many days is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// Deadline of each online probe (connect, then each read and write).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Most bytes read from a JWKS response.
const MAX_JWKS_BYTES: u64 = 1 << 20;

fn finding(severity: Severity, code: &'static str, path: &str, message: String) -> Finding {
    Finding {
        severity,
        code,
        path: path.into(),
        message,
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn date(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Validity findings for every certificate in a PEM bundle at time `now` (Unix).
pub fn cert_validity(label: &str, pem: &[u8], now: i64) -> Vec<Finding> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut out = Vec::new();
    for (i, der) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let which = if i == 0 {
            label.to_owned()
        } else {
            format!("{label} (chain certificate {})", i + 1)
        };
        let Ok(der) = der else {
            out.push(finding(
                Severity::Error,
                "tls-cert-parse",
                label,
                format!("{which}: not a PEM certificate"),
            ));
            continue;
        };
        let cert = match x509_parser::parse_x509_certificate(der.as_ref()) {
            Ok((_, c)) => c,
            Err(e) => {
                out.push(finding(
                    Severity::Error,
                    "tls-cert-parse",
                    label,
                    format!("{which}: not an X.509 certificate: {e}"),
                ));
                continue;
            }
        };
        let v = cert.validity();
        let (nb, na) = (v.not_before.timestamp(), v.not_after.timestamp());
        let days_left = (na - now).div_euclid(86_400);
        let subject = cert.subject().to_string();
        if now < nb {
            out.push(finding(
                Severity::Error,
                "tls-cert-not-yet-valid",
                label,
                format!("{which} ({subject}) is not valid before {}", date(nb)),
            ));
        } else if now > na {
            out.push(finding(
                Severity::Error,
                "tls-cert-expired",
                label,
                format!("{which} ({subject}) expired on {}", date(na)),
            ));
        } else if days_left < EXPIRY_WARNING_DAYS {
            out.push(finding(
                Severity::Warn,
                "tls-cert-expiring",
                label,
                format!(
                    "{which} ({subject}) expires on {} (in {days_left} day(s)); renew it",
                    date(na)
                ),
            ));
        } else {
            out.push(finding(
                Severity::Info,
                "tls-cert-valid",
                label,
                format!("{which} ({subject}) is valid until {}", date(na)),
            ));
        }
    }
    out
}

/// Key material beyond the TLS files: the audit signing key when its provider is the
/// environment.
fn signing_findings(cfg: &Config, env: &dyn Fn(&str) -> Option<String>) -> Vec<Finding> {
    use rampart_config::raw::SigningProvider;
    let Some(s) = &cfg.later.signing else {
        return Vec::new();
    };
    if !matches!(s.provider, None | Some(SigningProvider::Env)) {
        return Vec::new();
    }
    match env("SIGNING_PRIVATE_KEY") {
        None => vec![finding(
            Severity::Error,
            "signing-key-missing",
            "signing.provider",
            "provider \"env\" needs SIGNING_PRIVATE_KEY (a PEM private key) in the environment; it is not set".into(),
        )],
        Some(v) if !(v.contains("-----BEGIN") && v.contains("PRIVATE KEY-----")) => vec![finding(
            Severity::Error,
            "signing-key-format",
            "signing.provider",
            "SIGNING_PRIVATE_KEY is set but holds no PEM private key".into(),
        )],
        Some(_) => vec![finding(
            Severity::Info,
            "signing-key",
            "signing.provider",
            "SIGNING_PRIVATE_KEY holds a PEM private key".into(),
        )],
    }
}

/// Routes with `identity_assertion` need a signing key `serve` can open (it refuses to
/// start otherwise): the same lookup, read-only (no directory or keyring file is made).
fn assertion_key_findings<E: rampart_crypto::EnvSource>(cfg: &Config, env: E) -> Vec<Finding> {
    use rampart_config::raw::SigningProvider;
    use rampart_crypto::{EnvProvider, FileProvider, KeyProvider, KeyringFile};
    let routes: Vec<&str> = cfg
        .routes
        .iter()
        .filter(|r| r.identity_assertion)
        .map(|r| r.id.as_str())
        .collect();
    if routes.is_empty() {
        return Vec::new();
    }
    let usable = (|| -> Result<String, String> {
        let paths = rampart_audit::Paths::from_config(cfg).map_err(|e| e.to_string())?;
        let signing = cfg.later.signing.clone().unwrap_or_default();
        let file = KeyringFile::load(&paths.keyring).map_err(|e| e.to_string())?;
        let key = match signing.provider.unwrap_or(SigningProvider::Env) {
            SigningProvider::Env => EnvProvider::new(env, signing.key_id).load_active(&file),
            SigningProvider::File => FileProvider::new(&paths.keys_dir).load_active(&file),
        }
        .map_err(|e| e.to_string())?;
        Ok(key.public().fingerprint().to_owned())
    })();
    let which = routes.join(", ");
    match usable {
        Ok(fp) => vec![finding(
            Severity::Info,
            "identity-assertion-key",
            "routes.identity_assertion",
            format!("routes {which} sign identity assertions with {fp}"),
        )],
        Err(e) => vec![finding(
            Severity::Error,
            "identity-assertion-key",
            "routes.identity_assertion",
            format!(
                "routes {which} ask for identity assertions but no signing key can be opened ({e}); \
                 serve refuses to start: configure [signing] and run `rampart keys generate`"
            ),
        )],
    }
}

/// Host and port of a URL, defaulting the port; never its userinfo.
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), uri.port_u16().unwrap_or(default_port)))
}

fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} resolves to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, PROBE_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(PROBE_TIMEOUT))
                    .and_then(|()| s.set_write_timeout(Some(PROBE_TIMEOUT)))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    Err(last)
}

/// Redis: `PING`; any RESP reply proves a Redis server (an authentication error too).
pub fn probe_redis(url: &str) -> Result<String, String> {
    let tls = url.starts_with("rediss://");
    let (host, port) = host_port(url, 6379).ok_or("not a redis:// URL with a host")?;
    let mut s = connect(&host, port)?;
    if tls {
        return Ok(format!(
            "{host}:{port} accepts TCP connections (rediss: the TLS handshake is not probed)"
        ));
    }
    s.write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let mut buf = [0u8; 64];
    let n = s
        .read(&mut buf)
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let reply = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
    if reply.starts_with("+PONG") {
        Ok(format!("{host}:{port} answered PONG"))
    } else if reply.starts_with("-NOAUTH") || reply.starts_with("-WRONGPASS") {
        Ok(format!(
            "{host}:{port} is Redis and requires authentication"
        ))
    } else if reply.starts_with(['+', '-']) {
        Ok(format!("{host}:{port} is Redis"))
    } else {
        Err(format!("{host}:{port} did not answer as Redis"))
    }
}

/// PostgreSQL: an SSLRequest; the server answers one byte, `S` or `N`.
pub fn probe_postgres(url: &str) -> Result<String, String> {
    let (host, port) = host_port(url, 5432).ok_or("not a postgres:// URL with a host")?;
    let mut s = connect(&host, port)?;
    // Length 8, request code 80877103 (1234.5679).
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)
        .map_err(|e| format!("{host}:{port}: no answer to the PostgreSQL SSLRequest: {e}"))?;
    match b {
        [b'S'] => Ok(format!("{host}:{port} is PostgreSQL (TLS available)")),
        [b'N'] => Ok(format!("{host}:{port} is PostgreSQL (no TLS offered)")),
        _ => Err(format!("{host}:{port} did not answer as PostgreSQL")),
    }
}

/// Whether `crypto.kek` unwraps the data keys already in the credential store, as
/// `serve` requires (a wrong KEK makes it refuse to start): checked when the SQLite
/// store exists (a PostgreSQL store only with `--online`); nothing to check without a
/// KEK or a store.
fn kek_findings(cfg: &Config, online: bool) -> Vec<Finding> {
    use rampart_crypto::envelope::EnvelopeError;
    use rampart_store::{Store, StoreError, Vault};
    let Ok(Some(kms)) = crate::crypto::kms_from_config(cfg) else {
        // No KEK, or one that does not parse (reported by the secret checks).
        return Vec::new();
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    rt.block_on(async {
        let store = match Store::open_existing(cfg, online).await {
            Ok(Some(s)) => s,
            Ok(None) => return Vec::new(),
            Err(e) => {
                return vec![finding(
                    Severity::Warn,
                    "crypto-kek",
                    "crypto.kek",
                    format!("the data keys could not be checked: the credential store: {e}"),
                )];
            }
        };
        match Vault::open(store, kms, false).await {
            Ok(_) => Vec::new(),
            Err(StoreError::Crypto(EnvelopeError::Unwrap { .. } | EnvelopeError::Kek(_))) => {
                vec![finding(
                    Severity::Error,
                    "crypto-kek",
                    "crypto.kek",
                    "crypto.kek cannot unwrap the data keys in the credential store (wrong key-encryption key?): serve would refuse to start".into(),
                )]
            }
            Err(e) => vec![finding(
                Severity::Warn,
                "crypto-kek",
                "crypto.kek",
                format!("the data keys could not be checked: {e}"),
            )],
        }
    })
}

/// JWKS: `GET` with a deadline; 200 and a JSON object with a non-empty `keys` array.
pub fn probe_jwks(url: &http::Uri) -> Result<String, String> {
    use http_body_util::{BodyExt as _, Empty, Limited};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let host = url.host().unwrap_or("").to_owned();
    rt.block_on(async {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("no root certificates for https: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, Empty<bytes::Bytes>>(https);
        let req = http::Request::get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(PROBE_TIMEOUT, client.request(req))
            .await
            .map_err(|_| format!("{host}: no answer within {PROBE_TIMEOUT:?}"))?
            .map_err(|e| format!("{host}: {e}"))?;
        let status = resp.status();
        let body = tokio::time::timeout(
            PROBE_TIMEOUT,
            Limited::new(
                resp.into_body(),
                usize::try_from(MAX_JWKS_BYTES).unwrap_or(usize::MAX),
            )
            .collect(),
        )
        .await
        .map_err(|_| format!("{host}: the body did not arrive within {PROBE_TIMEOUT:?}"))?
        .map_err(|e| format!("{host}: {e}"))?
        .to_bytes();
        if !status.is_success() {
            return Err(format!("{host} answered {status}"));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| format!("{host}: the answer is not JSON"))?;
        match v.get("keys").and_then(|k| k.as_array()) {
            Some(k) if !k.is_empty() => Ok(format!("{host} serves {} key(s)", k.len())),
            _ => Err(format!("{host}: the answer has no `keys`")),
        }
    })
}

fn online_findings(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut record = |code: &'static str, path: &str, r: Result<String, String>| {
        out.push(match r {
            Ok(m) => finding(Severity::Info, code, path, format!("reachable: {m}")),
            Err(m) => finding(Severity::Error, code, path, format!("unreachable: {m}")),
        });
    };
    let l = &cfg.later;
    if let Some(u) = l
        .auth
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .and_then(|j| j.jwks_url.as_ref())
    {
        record("online-jwks", "auth.jwt.jwks_url", probe_jwks(u));
    }
    // The resolved URL (`env:`/`file:` references included), as the limiter uses it.
    if let Some(u) = l
        .rate_limit
        .as_ref()
        .and_then(|r| r.redis_url_secret.as_ref())
        .and_then(|s| s.expose_str())
    {
        record("online-redis", "rate_limit.redis_url", probe_redis(u));
    }
    if let Some(u) = l.store.as_ref().and_then(|s| s.url.as_deref())
        && (u.starts_with("postgres://") || u.starts_with("postgresql://"))
    {
        record("online-postgres", "store.url", probe_postgres(u));
    }
    if out.is_empty() {
        out.push(finding(
            Severity::Info,
            "online-none",
            "config",
            "--online: no JWKS URL, Redis or PostgreSQL configured".into(),
        ));
    }
    out
}

pub fn run(paths: &[PathBuf], format: Format, online: bool) -> u8 {
    let mut report = rampart_config::check(paths);
    if let Some(cfg) = report.config.as_ref() {
        let mut extra = Vec::new();
        if let Some(tls) = cfg.server.tls.as_ref() {
            // Key material: the TLS certificate and key must load into rustls.
            if let Err(e) = rampart_proxy::tls::server_config(tls) {
                extra.push(finding(
                    Severity::Error,
                    "tls-material",
                    "server.tls",
                    e.to_string(),
                ));
            }
            let now = now_unix();
            extra.extend(cert_validity("server.tls.cert", &tls.cert_pem, now));
            if let Some(ca) = &tls.client_ca_pem {
                extra.extend(cert_validity("server.tls.client_ca", ca, now));
            }
        }
        // The JWT settings `serve` would build (prod requires issuer and audience, a
        // discovery issuer must be https, …).
        if let Some(Err(e)) = rampart_jwt::JwtSettings::from_config(cfg) {
            extra.push(finding(
                Severity::Error,
                "auth-jwt",
                "auth.jwt",
                e.to_string(),
            ));
        }
        extra.extend(signing_findings(cfg, &|k| {
            std::env::var(k).ok().filter(|v| !v.is_empty())
        }));
        extra.extend(assertion_key_findings(cfg, rampart_crypto::ProcessEnv));
        extra.extend(kek_findings(cfg, online));
        if online {
            extra.extend(online_findings(cfg));
        }
        report.findings.extend(extra);
    }
    let code = report.exit_code();
    match format {
        Format::Text => {
            for f in &report.findings {
                eprintln!("{}: [{}] {}: {}", f.severity, f.code, f.path, f.message);
            }
            let errors = report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            match code {
                0 => println!(
                    "ok: configuration and data roots pass ({} finding(s))",
                    report.findings.len()
                ),
                1 => println!("FAIL: {errors} check(s) failed"),
                _ => println!("FAIL: the configuration cannot be loaded"),
            }
        }
        Format::Json => {
            let v: Vec<serde_json::Value> = report
                .findings
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "severity": f.severity.to_string(),
                        "code": f.code,
                        "path": f.path,
                        "message": f.message,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({ "exit_code": code, "findings": v })
            );
        }
    }
    u8::try_from(code).unwrap_or(2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().pem().into_bytes()
    }

    fn ts(y: i32, m: u8, d: u8) -> i64 {
        rcgen::date_time_ymd(y, m, d).unix_timestamp()
    }

    #[test]
    fn expiry_levels() {
        let pem = cert((2029, 1, 1), (2030, 1, 31));
        let at = |now| {
            cert_validity("server.tls.cert", &pem, now)
                .into_iter()
                .map(|f| (f.severity, f.code))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(ts(2029, 6, 1)), [(Severity::Info, "tls-cert-valid")]);
        assert_eq!(at(ts(2030, 1, 2)), [(Severity::Warn, "tls-cert-expiring")]);
        assert_eq!(at(ts(2030, 2, 1)), [(Severity::Error, "tls-cert-expired")]);
        assert_eq!(
            at(ts(2028, 12, 1)),
            [(Severity::Error, "tls-cert-not-yet-valid")]
        );
        let f = cert_validity("server.tls.cert", &pem, ts(2030, 1, 11));
        assert!(f[0].message.contains("2030-01-31"), "{}", f[0].message);
        assert!(f[0].message.contains("in 20 day(s)"), "{}", f[0].message);
        assert_eq!(date(ts(2030, 1, 31)), "2030-01-31");
    }

    #[test]
    fn host_port_never_keeps_userinfo() {
        assert_eq!(
            host_port("redis://:s3cret@cache.internal:6380/0", 6379),
            Some(("cache.internal".into(), 6380))
        );
        assert_eq!(
            host_port("postgres://u:p@db/rampart?sslmode=require", 5432),
            Some(("db".into(), 5432))
        );
        assert_eq!(host_port("redis://[::1]", 6379), Some(("::1".into(), 6379)));
    }

    #[test]
    fn probes_report_refused_ports() {
        // A port that was just free: connection refused, reported as an error message.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = probe_redis(&format!("redis://:pw@127.0.0.1:{port}")).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
        assert!(!e.contains("pw"), "{e}");
        assert!(probe_postgres(&format!("postgres://127.0.0.1:{port}/x")).is_err());
    }
}
