#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use rampart_http::{ConnInfo, GatewayMetrics, Reject, RouteMatch, Router, TlsInfo};

use super::*;
use proptest::prop_assert_eq;

fn config(extra: &str) -> Config {
    let text = format!(
        "profile = \"dev\"\n[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nid = \"api\"\npath = \"/api\"\nupstream = \"app\"\n[[routes]]\nid = \"open\"\npath = \"/open\"\nupstream = \"app\"\npublic = true\n{extra}"
    );
    rampart_config::load_from_strs(&[("t.toml", &text)], &[]).unwrap()
}

struct FakeJwt;
impl TokenVerifier for FakeJwt {
    fn verify(&self, token: &str) -> Result<TokenClaims, TokenFailure> {
        match token {
            "good" => Ok(TokenClaims {
                subject: "alice".into(),
                tenant: Some("acme".into()),
                scopes: vec!["jobs".into()],
                roles: vec!["reader".into()],
                jti: Some("t-1".into()),
            }),
            "revoked-jti" => Ok(TokenClaims {
                subject: "bob".into(),
                tenant: None,
                scopes: vec![],
                roles: vec![],
                jti: Some("bad-jti".into()),
            }),
            "nokeys" => Err(TokenFailure::Unavailable),
            _ => Err(TokenFailure::Invalid("bad_signature")),
        }
    }
}

struct FakeKeys;
impl ApiKeyVerifier for FakeKeys {
    fn verify(&self, presented: &str) -> Result<KeyClaims, &'static str> {
        if presented == "rpk_good" {
            Ok(KeyClaims {
                id: "k1".into(),
                name: "ci".into(),
                tenant: Some("globex".into()),
                scopes: vec!["metrics".into()],
                roles: vec![],
                rate_override: None,
            })
        } else {
            Err("unknown_key")
        }
    }
}

#[derive(Default)]
struct Revs(Mutex<HashSet<String>>);
impl RevocationCheck for Revs {
    fn jti(&self, v: &str) -> bool {
        self.0.lock().unwrap().contains(&format!("jti:{v}"))
    }
    fn subject(&self, v: &str) -> bool {
        self.0.lock().unwrap().contains(&format!("sub:{v}"))
    }
    fn cert(&self, v: &str) -> bool {
        self.0.lock().unwrap().contains(&format!("cert:{v}"))
    }
    fn api_key(&self, v: &str) -> bool {
        self.0.lock().unwrap().contains(&format!("key:{v}"))
    }
}

fn verifiers(revs: Arc<Revs>) -> Verifiers {
    Verifiers {
        jwt: Some(Arc::new(FakeJwt)),
        api_keys: Some(Arc::new(FakeKeys)),
        revocations: Some(revs),
        signature: None,
        metrics: Arc::default(),
    }
}

fn request(cfg: &Config, path: &str, peer: &str, headers: &[(&str, &str)]) -> Request<()> {
    let metrics = GatewayMetrics::new();
    let router = Router::new(&cfg.routes, &metrics);
    let mut b = Request::builder().uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(()).unwrap();
    let (route, params) = match router.route(path, &http::Method::GET) {
        rampart_http::RouteOutcome::Matched(r, p) => (r, p),
        _ => panic!("no route"),
    };
    req.extensions_mut().insert(RouteMatch { route, params });
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnInfo {
        write_stalled: None,
        peer,
        local: "127.0.0.1:8080".parse().unwrap(),
        tls: None,
    });
    req
}

fn run(authn: &Authn, mut req: Request<()>) -> Result<Arc<Identity>, Reject> {
    authn.on_request(&mut req)?;
    Ok(req.extensions().get::<Arc<Identity>>().cloned().unwrap())
}

fn reason(r: Result<Arc<Identity>, Reject>) -> (u16, &'static str, Option<String>) {
    let e = r.unwrap_err();
    let status = e.status().as_u16();
    let reason = e.reason();
    let www = e
        .into_response(None)
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, reason, www)
}

#[test]
fn modes_in_order_and_identity_fields() {
    let cfg = config("[auth]\nmodes = [\"jwt\", \"api_key\"]\n");
    let a = Authn::new(&cfg, verifiers(Arc::default())).unwrap();
    let id = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[("authorization", "Bearer good")],
        ),
    )
    .unwrap();
    assert_eq!(id.method, "jwt");
    assert_eq!(id.subject.as_deref(), Some("alice"));
    assert_eq!(id.tenant.as_deref(), Some("acme"));
    assert_eq!(id.scopes, vec!["jobs"]);
    assert_eq!(id.roles, vec!["reader"]);
    assert_eq!(id.credential_id.as_deref(), Some("t-1"));
    // Case-insensitive prefix.
    let id = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[("authorization", "bEaReR good")],
        ),
    )
    .unwrap();
    assert_eq!(id.method, "jwt");
    let id = run(
        &a,
        request(&cfg, "/api", "127.0.0.1:5000", &[("x-api-key", "rpk_good")]),
    )
    .unwrap();
    assert_eq!(id.method, "api_key");
    assert_eq!(id.credential_id.as_deref(), Some("k1"));
    assert_eq!(id.tenant.as_deref(), Some("globex"));
    // A bad token is refused even though a good API key is also present: the first
    // mode that finds a credential decides.
    let r = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[
                ("authorization", "Bearer forged"),
                ("x-api-key", "rpk_good"),
            ],
        ),
    );
    assert_eq!(
        reason(r),
        (
            401,
            "bad_signature",
            Some("Bearer error=\"invalid_token\"".into())
        )
    );
    assert_eq!(a.metrics().failures("jwt", "bad_signature"), 1);
}

#[test]
fn missing_duplicate_and_unavailable() {
    let cfg = config("[auth]\nmodes = [\"jwt\", \"api_key\"]\n");
    let a = Authn::new(&cfg, verifiers(Arc::default())).unwrap();
    let r = run(&a, request(&cfg, "/api", "127.0.0.1:5000", &[]));
    assert_eq!(
        reason(r),
        (
            401,
            "missing_credentials",
            Some("Bearer realm=\"rampart\"".into())
        )
    );
    // Basic credentials are not a bearer token: nothing to authenticate with.
    let r = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[("authorization", "Basic dTpw")],
        ),
    );
    assert_eq!(reason(r).1, "missing_credentials");
    let r = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[
                ("authorization", "Bearer good"),
                ("authorization", "Bearer good"),
            ],
        ),
    );
    assert_eq!(reason(r).1, "duplicate_credential");
    let r = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[("x-api-key", "rpk_good"), ("x-api-key", "rpk_good")],
        ),
    );
    assert_eq!(reason(r).1, "duplicate_credential");
    let r = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[("authorization", "Bearer nokeys")],
        ),
    );
    let e = r.unwrap_err();
    assert_eq!(e.status(), 503);
    let resp = e.into_response(None);
    assert!(resp.headers().contains_key("retry-after"));
    // Public routes skip authentication altogether.
    let mut req = request(
        &cfg,
        "/open",
        "127.0.0.1:5000",
        &[("authorization", "Bearer forged")],
    );
    a.on_request(&mut req).unwrap();
    assert!(req.extensions().get::<Arc<Identity>>().is_none());
}

#[test]
fn anonymous_only_without_credentials() {
    let cfg = config("[auth]\nmodes = [\"jwt\", \"none\"]\n");
    let a = Authn::new(&cfg, verifiers(Arc::default())).unwrap();
    let id = run(&a, request(&cfg, "/api", "127.0.0.1:5000", &[])).unwrap();
    assert!(id.is_anonymous());
    // A presented, bad credential is never excused by anonymous access.
    let r = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[("authorization", "Bearer forged")],
        ),
    );
    assert_eq!(reason(r).0, 401);
}

#[test]
fn revocation_by_jti_subject_and_key() {
    let revs = Arc::new(Revs::default());
    let cfg = config("[auth]\nmodes = [\"jwt\", \"api_key\"]\n");
    let a = Authn::new(&cfg, verifiers(Arc::clone(&revs))).unwrap();
    let ok = |h: (&str, &str)| run(&a, request(&cfg, "/api", "127.0.0.1:5000", &[h]));
    assert!(ok(("authorization", "Bearer good")).is_ok());
    revs.0.lock().unwrap().insert("jti:t-1".into());
    assert_eq!(reason(ok(("authorization", "Bearer good"))).1, "revoked");
    revs.0.lock().unwrap().insert("sub:bob".into());
    assert_eq!(
        reason(ok(("authorization", "Bearer revoked-jti"))).1,
        "revoked"
    );
    assert!(ok(("x-api-key", "rpk_good")).is_ok());
    revs.0.lock().unwrap().insert("key:k1".into());
    let (status, why, www) = reason(ok(("x-api-key", "rpk_good")));
    assert_eq!((status, why), (401, "revoked"));
    assert_eq!(www.as_deref(), Some("ApiKey realm=\"rampart\""));
}

#[test]
fn identity_headers_only_from_trusted_proxies() {
    let cfg = config(
        "[auth]\nmodes = [\"mtls\"]\nidentity_header = \"x-auth-request-user\"\n[auth.mtls]\nidentity_header = \"x-ssl-client-subject\"\nscopes_header = \"x-ssl-client-scopes\"\nroles_header = \"x-ssl-client-roles\"\nmap = [{ id = \"CN=svc,O=Acme\", tenant = \"acme\", scopes = [\"jobs\"] }]\n",
    );
    let a = Authn::new(&cfg, verifiers(Arc::default())).unwrap();
    let h = [
        ("x-ssl-client-subject", "CN=svc,O=Acme"),
        ("x-ssl-client-scopes", "metrics, evaluate"),
        ("x-ssl-client-roles", "reader"),
    ];
    let id = run(&a, request(&cfg, "/api", "10.1.2.3:5000", &h)).unwrap();
    assert_eq!(id.method, "mtls");
    assert_eq!(id.subject.as_deref(), Some("CN=svc,O=Acme"));
    assert_eq!(id.tenant.as_deref(), Some("acme"));
    assert_eq!(id.scopes, vec!["metrics", "evaluate", "jobs"]);
    assert_eq!(id.roles, vec!["reader"]);
    // The same headers from an untrusted peer authenticate nothing.
    let r = run(&a, request(&cfg, "/api", "192.0.2.7:5000", &h));
    assert_eq!(reason(r).1, "missing_credentials");
    let id = run(
        &a,
        request(
            &cfg,
            "/api",
            "10.1.2.3:5000",
            &[("x-auth-request-user", "carol")],
        ),
    )
    .unwrap();
    assert_eq!((id.method, id.subject.as_deref()), ("proxy", Some("carol")));
    let r = run(
        &a,
        request(
            &cfg,
            "/api",
            "192.0.2.7:5000",
            &[("x-auth-request-user", "carol")],
        ),
    );
    assert_eq!(reason(r).1, "missing_credentials");
}

fn client_cert(sans: Vec<rcgen::SanType>, cn: &str) -> Vec<u8> {
    let mut p = rcgen::CertificateParams::default();
    p.subject_alt_names = sans;
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    p.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn certificate_identity_mapping_and_revocation() {
    let spiffe = "spiffe://acme.example/ns/prod/sa/billing";
    let der = client_cert(
        vec![
            rcgen::SanType::URI(spiffe.try_into().unwrap()),
            rcgen::SanType::DnsName("billing.acme.internal".try_into().unwrap()),
        ],
        "billing",
    );
    let c = mtls::CertIdentity::from_der(&der).unwrap();
    assert_eq!(c.subject(), spiffe);
    assert_eq!(c.common_name.as_deref(), Some("billing"));
    assert!(c.subject_dn.contains("CN=billing"));
    assert_eq!(c.fingerprint.len(), 64);
    assert_eq!(
        mtls::normalize_fingerprint(&c.fingerprint.to_uppercase()).unwrap(),
        c.fingerprint
    );

    let revs = Arc::new(Revs::default());
    let cfg = config(&format!(
        "[auth]\nmodes = [\"mtls\"]\n[auth.mtls]\nmap = [{{ id = \"{spiffe}\", tenant = \"acme\", roles = [\"analyst\"] }}]\n"
    ));
    let a = Authn::new(&cfg, verifiers(Arc::clone(&revs))).unwrap();
    let mk = || {
        let mut req = request(&cfg, "/api", "127.0.0.1:5000", &[]);
        req.extensions_mut().insert(ConnInfo {
            write_stalled: None,
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:8443".parse().unwrap(),
            tls: Some(Arc::new(TlsInfo {
                sni: None,
                alpn: None,
                peer_certificates: Some(Arc::new(vec![Bytes::from(der.clone())])),
            })),
        });
        req
    };
    let id = run(&a, mk()).unwrap();
    assert_eq!(id.subject.as_deref(), Some(spiffe));
    assert_eq!(id.tenant.as_deref(), Some("acme"));
    assert_eq!(id.roles, vec!["analyst"]);
    assert_eq!(id.credential_id.as_deref(), Some(c.fingerprint.as_str()));
    revs.0
        .lock()
        .unwrap()
        .insert(format!("cert:{}", c.fingerprint));
    assert_eq!(reason(run(&a, mk())).1, "revoked");
    // Trailing bytes after the certificate are refused.
    let mut bad = der.clone();
    bad.push(0);
    assert_eq!(
        mtls::CertIdentity::from_der(&bad).unwrap_err(),
        "bad_certificate"
    );
}

proptest::proptest! {
    #[test]
    fn certificate_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = mtls::CertIdentity::from_der(&bytes);
    }

    #[test]
    fn fingerprint_normalization(hex in "[0-9a-fA-F]{64}") {
        let n = mtls::normalize_fingerprint(&hex).unwrap();
        prop_assert_eq!(n.len(), 64);
        let colons: Vec<String> = n.as_bytes().chunks(2).map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase()).collect();
        prop_assert_eq!(mtls::normalize_fingerprint(&colons.join(":")), Some(n));
    }
}
