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
            // A kid rotated in at the identity provider: known after the refresh.
            "rotated" | "rotated-forged" => Err(TokenFailure::RetryAfterRefresh("unknown_kid")),
            _ => Err(TokenFailure::Invalid("bad_signature")),
        }
    }

    fn verify_wait<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        WAITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::ready(match token {
            "rotated" => Ok(TokenClaims {
                subject: "carol".into(),
                tenant: None,
                scopes: vec![],
                roles: vec![],
                jti: Some("t-9".into()),
            }),
            _ => Err(TokenFailure::Invalid("unknown_kid")),
        }))
    }
}

/// How often [`FakeJwt::verify_wait`] ran (only the `rotated` tokens reach it).
static WAITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
    // A bad token is refused even though a good API key is also present: every
    // presented credential must verify.
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

/// RFC 9421 §5.1: with signed requests among the modes, a request without any credential
/// is asked to sign (`Signature realm`, `Accept-Signature`), `content-digest` included
/// when it declares a body; `Bearer realm` stays beside it when other modes are accepted.
#[test]
fn a_missing_credential_is_asked_to_sign_where_signatures_are_accepted() {
    let answer = |modes: &str, hdrs: &[(&str, &str)]| {
        let cfg = config(&format!("[auth]\nmodes = {modes}\n"));
        let a = Authn::new(&cfg, verifiers(Arc::default())).unwrap();
        let e = run(&a, request(&cfg, "/api", "127.0.0.1:5000", hdrs)).unwrap_err();
        assert_eq!(e.reason(), "missing_credentials");
        let r = e.into_response(None);
        assert_eq!(r.status(), 401);
        let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        (h("www-authenticate"), h("accept-signature"))
    };
    let plain = "sig=(\"@method\" \"@target-uri\");created;nonce";
    let digest = "sig=(\"@method\" \"@target-uri\" \"content-digest\");created;nonce";
    assert_eq!(
        answer("[\"signature\"]", &[]),
        (
            Some("Signature realm=\"rampart\"".into()),
            Some(plain.into())
        )
    );
    assert_eq!(
        answer("[\"signature\"]", &[("content-length", "12")]),
        (
            Some("Signature realm=\"rampart\"".into()),
            Some(digest.into())
        )
    );
    assert_eq!(
        answer("[\"signature\"]", &[("transfer-encoding", "chunked")]).1,
        Some(digest.into())
    );
    assert_eq!(
        answer("[\"jwt\", \"signature\"]", &[("content-length", "0")]),
        (
            Some("Bearer realm=\"rampart\", Signature realm=\"rampart\"".into()),
            Some(plain.into())
        )
    );
    assert_eq!(
        answer("[\"jwt\", \"api_key\"]", &[]),
        (Some("Bearer realm=\"rampart\"".into()), None)
    );
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

/// A request from 127.0.0.1 over TLS whose verified client certificate is `der`.
fn with_cert(cfg: &Config, headers: &[(&str, &str)], der: &[u8]) -> Request<()> {
    let mut req = request(cfg, "/api", "127.0.0.1:5000", headers);
    req.extensions_mut().insert(ConnInfo {
        write_stalled: None,
        peer: "127.0.0.1:5000".parse().unwrap(),
        local: "127.0.0.1:8443".parse().unwrap(),
        tls: Some(Arc::new(TlsInfo {
            sni: None,
            alpn: None,
            peer_certificates: Some(Arc::new(vec![Bytes::copy_from_slice(der)])),
        })),
    });
    req
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
    let mk = || with_cert(&cfg, &[], &der);
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

fn run_headers(authn: &Authn, cfg: &Config, headers: &[(&str, &str)]) -> Request<()> {
    let mut req = request(cfg, "/api", "127.0.0.1:5000", headers);
    authn.on_request(&mut req).map(|_| ()).unwrap();
    req
}

/// Issue 12: a valid credential never excuses a bad one beside it, whatever their order;
/// the caller is the first configured mode's.
#[test]
fn every_presented_credential_must_verify() {
    let revs = Arc::new(Revs::default());
    let cfg = config("[auth]\nmodes = [\"jwt\", \"api_key\"]\n");
    let a = Authn::new(&cfg, verifiers(Arc::clone(&revs))).unwrap();
    let req = |h: &[(&str, &str)]| request(&cfg, "/api", "127.0.0.1:5000", h);
    let r = run(
        &a,
        req(&[("authorization", "Bearer good"), ("x-api-key", "rpk_bad")]),
    );
    assert_eq!(
        reason(r),
        (401, "unknown_key", Some("ApiKey realm=\"rampart\"".into()))
    );
    assert_eq!(a.metrics().failures("api_key", "unknown_key"), 1);
    let r = run(
        &a,
        req(&[
            ("authorization", "Bearer forged"),
            ("x-api-key", "rpk_good"),
        ]),
    );
    assert_eq!(reason(r).1, "bad_signature");
    // Both verify: the JWT names the caller (first in `auth.modes`); the key, rampart's
    // own credential, is not forwarded.
    let done = run_headers(
        &a,
        &cfg,
        &[("authorization", "Bearer good"), ("x-api-key", "rpk_good")],
    );
    let id = done.extensions().get::<Arc<Identity>>().unwrap();
    assert_eq!((id.method, id.subject.as_deref()), ("jwt", Some("alice")));
    assert!(done.headers().get("x-api-key").is_none());
    assert!(done.headers().get("authorization").is_some());
    // Revocation applies to each: a revoked key beside a good token is refused.
    revs.0.lock().unwrap().insert("key:k1".into());
    let r = run(
        &a,
        req(&[("authorization", "Bearer good"), ("x-api-key", "rpk_good")]),
    );
    assert_eq!(reason(r).1, "revoked");
    revs.0.lock().unwrap().clear();

    // The other order: the API key names the caller.
    let cfg2 = config("[auth]\nmodes = [\"api_key\", \"jwt\"]\n");
    let b = Authn::new(&cfg2, verifiers(Arc::default())).unwrap();
    let done = run_headers(
        &b,
        &cfg2,
        &[("authorization", "Bearer good"), ("x-api-key", "rpk_good")],
    );
    let id = done.extensions().get::<Arc<Identity>>().unwrap();
    assert_eq!((id.method, id.subject.as_deref()), ("api_key", Some("ci")));
    assert!(done.headers().get("x-api-key").is_none());

    // A credential of a mode that is not configured is ignored (and forwarded).
    let cfg3 = config("[auth]\nmodes = [\"jwt\"]\n");
    let c = Authn::new(&cfg3, verifiers(Arc::default())).unwrap();
    let done = run_headers(
        &c,
        &cfg3,
        &[("authorization", "Bearer good"), ("x-api-key", "rpk_bad")],
    );
    assert_eq!(
        done.extensions().get::<Arc<Identity>>().unwrap().method,
        "jwt"
    );
    assert_eq!(done.headers().get("x-api-key").unwrap(), "rpk_bad");
}

/// `jwt` and `api_key` on one header: a bearer value is the JWT's, any other the key's
/// (one credential, not two).
#[test]
fn one_header_for_jwt_and_api_key() {
    let cfg = config(
        "[auth]\nmodes = [\"api_key\", \"jwt\"]\n[auth.api_key]\nheader = \"authorization\"\n",
    );
    let a = Authn::new(&cfg, verifiers(Arc::default())).unwrap();
    let done = run_headers(&a, &cfg, &[("authorization", "Bearer good")]);
    let id = done.extensions().get::<Arc<Identity>>().unwrap();
    assert_eq!(id.method, "jwt");
    assert!(done.headers().get("authorization").is_some());
    let done = run_headers(&a, &cfg, &[("authorization", "rpk_good")]);
    assert_eq!(
        done.extensions().get::<Arc<Identity>>().unwrap().method,
        "api_key"
    );
    let r = run(
        &a,
        request(
            &cfg,
            "/api",
            "127.0.0.1:5000",
            &[("authorization", "Bearer forged")],
        ),
    );
    assert_eq!(reason(r).1, "bad_signature");
}

/// A verified client certificate and a user's token on the same request (mTLS transport
/// plus a bearer token): both verify, the first configured mode names the caller; a bad
/// token beside a good certificate is refused.
#[test]
fn mtls_transport_with_a_user_token() {
    let der = client_cert(
        vec![rcgen::SanType::DnsName(
            "svc.acme.internal".try_into().unwrap(),
        )],
        "svc",
    );
    let cfg = config("[auth]\nmodes = [\"jwt\", \"mtls\"]\n");
    let a = Authn::new(&cfg, verifiers(Arc::default())).unwrap();
    let id = run(
        &a,
        with_cert(&cfg, &[("authorization", "Bearer good")], &der),
    )
    .unwrap();
    assert_eq!((id.method, id.subject.as_deref()), ("jwt", Some("alice")));
    let id = run(&a, with_cert(&cfg, &[], &der)).unwrap();
    assert_eq!(id.method, "mtls");
    let r = run(
        &a,
        with_cert(&cfg, &[("authorization", "Bearer forged")], &der),
    );
    assert_eq!(reason(r).1, "bad_signature");
    let cfg2 = config("[auth]\nmodes = [\"mtls\", \"jwt\"]\n");
    let b = Authn::new(&cfg2, verifiers(Arc::default())).unwrap();
    let id = run(
        &b,
        with_cert(&cfg2, &[("authorization", "Bearer good")], &der),
    )
    .unwrap();
    assert_eq!(
        (id.method, id.subject.as_deref()),
        ("mtls", Some("svc.acme.internal"))
    );
    let r = run(
        &b,
        with_cert(&cfg2, &[("authorization", "Bearer forged")], &der),
    );
    assert_eq!(reason(r).1, "bad_signature");
}

/// The inner service of the layer tests: answers 200 with the caller in headers.
#[derive(Clone)]
struct Echo;

impl<B> tower_service::Service<Request<AuthnBody<B>>> for Echo {
    type Response = rampart_http::Resp;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<rampart_http::Resp, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<AuthnBody<B>>) -> Self::Future {
        let id = req.extensions().get::<Arc<Identity>>().cloned().unwrap();
        let mut resp = http::Response::new(rampart_http::body::empty());
        resp.headers_mut()
            .insert("x-method", http::HeaderValue::from_static(id.method));
        resp.headers_mut().insert(
            "x-subject",
            http::HeaderValue::from_str(id.subject.as_deref().unwrap_or("")).unwrap(),
        );
        resp.headers_mut().insert(
            "x-key-forwarded",
            http::HeaderValue::from_static(if req.headers().contains_key("x-api-key") {
                "yes"
            } else {
                "no"
            }),
        );
        std::future::ready(Ok(resp))
    }
}

/// The asynchronous path: a JWT whose kid arrives with the key-set refresh, beside an API
/// key. Both must verify; a bad key is refused without waiting on the refresh.
#[test]
fn layer_jwt_retry_beside_an_api_key() {
    use tower_layer::Layer as _;
    use tower_service::Service as _;
    let cfg = config("[auth]\nmodes = [\"jwt\", \"api_key\"]\n");
    let layer = AuthnLayer::from_stage(Authn::new(&cfg, verifiers(Arc::default())).unwrap());
    let mut svc = layer.layer(Echo);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut call = |h: &[(&str, &str)]| {
        let req = request(&cfg, "/api", "127.0.0.1:5000", h)
            .map(|()| http_body_util::Empty::<Bytes>::new());
        rt.block_on(svc.call(req)).unwrap()
    };
    let header = |r: &rampart_http::Resp, n: &str| {
        r.headers().get(n).map(|v| v.to_str().unwrap().to_owned())
    };
    let waits = || WAITS.load(std::sync::atomic::Ordering::SeqCst);
    let before = waits();
    let r = call(&[
        ("authorization", "Bearer rotated"),
        ("x-api-key", "rpk_bad"),
    ]);
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate").as_deref(),
        Some("ApiKey realm=\"rampart\"")
    );
    assert_eq!(waits(), before, "a bad key is refused before any waiting");
    let r = call(&[
        ("authorization", "Bearer rotated"),
        ("x-api-key", "rpk_good"),
    ]);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-method").as_deref(), Some("jwt"));
    assert_eq!(header(&r, "x-subject").as_deref(), Some("carol"));
    assert_eq!(header(&r, "x-key-forwarded").as_deref(), Some("no"));
    assert_eq!(waits(), before + 1);
    let r = call(&[
        ("authorization", "Bearer rotated-forged"),
        ("x-api-key", "rpk_good"),
    ]);
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate").as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    // Alone, as before.
    let r = call(&[("authorization", "Bearer rotated")]);
    assert_eq!(header(&r, "x-subject").as_deref(), Some("carol"));
    // Several credentials decided from memory take the synchronous path.
    let r = call(&[("authorization", "Bearer good"), ("x-api-key", "rpk_good")]);
    assert_eq!(
        (
            header(&r, "x-subject").as_deref(),
            header(&r, "x-key-forwarded").as_deref()
        ),
        (Some("alice"), Some("no"))
    );
    let r = call(&[("authorization", "Bearer good"), ("x-api-key", "rpk_bad")]);
    assert_eq!(r.status(), 401);
}
