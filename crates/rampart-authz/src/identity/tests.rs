use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

fn route(id: &str, upstream: &str) -> RouteConfig {
    RouteConfig {
        id: id.into(),
        path: "/r".into(),
        methods: vec![],
        upstream: upstream.into(),
        public: false,
        max_body_bytes: None,
        tier: None,
        scopes: vec![],
        any_scopes: vec![],
        allow_path_params: false,
        allow_fragment: false,
        allow_wildcard: false,
        cors: None,
        csrf: None,
        identity_assertion: true,
    }
}

fn alice() -> Identity {
    let mut id = Identity::anonymous();
    id.method = "jwt";
    id.subject = Some("alice".into());
    id.tenant = Some("acme".into());
    id.roles = vec!["reader".into()];
    id
}

fn setup() -> (Asserter, Arc<SigningKey>, Arc<AtomicU64>) {
    let key = Arc::new(SigningKey::generate("test").unwrap());
    let now = Arc::new(AtomicU64::new(1_800_000_000));
    let n = Arc::clone(&now);
    let a = Asserter::with_clock(
        Arc::clone(&key) as Arc<dyn Signer>,
        Arc::new(move || n.load(Ordering::Relaxed)),
    );
    (a, key, now)
}

fn parts(token: &HeaderValue) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
    let s = token.to_str().unwrap();
    let mut it = s.split('.');
    let (h, c, sig) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    assert!(it.next().is_none());
    let dec = |p: &str| B64.decode(p).unwrap();
    (
        serde_json::from_slice(&dec(h)).unwrap(),
        serde_json::from_slice(&dec(c)).unwrap(),
        dec(sig),
        format!("{h}.{c}"),
    )
}

#[test]
fn token_shape_claims_and_signature() {
    let (a, key, _) = setup();
    let scopes = vec!["jobs".to_owned(), "metrics".to_owned()];
    let t = a.assert(&alice(), &route("jobs", "app"), &scopes).unwrap();
    let (h, c, sig, signed) = parts(&t);
    assert_eq!(h["alg"], "EdDSA");
    assert_eq!(h["typ"], "JWT");
    assert_eq!(h["kid"], key.public().fingerprint());
    let sig = Signature::from_slice(&sig).unwrap();
    assert!(key.public().verify(signed.as_bytes(), &sig));
    assert_eq!(c["iss"], "rampart");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "app");
    assert_eq!(c["tenant"], "acme");
    assert_eq!(c["scopes"], serde_json::json!(["jobs", "metrics"]));
    assert_eq!(c["roles"], serde_json::json!(["reader"]));
    assert_eq!(c["auth"], "jwt");
    assert_eq!(c["route"], "jobs");
    assert_eq!(c["iat"], 1_800_000_000u64);
    assert_eq!(c["exp"], 1_800_000_030u64);
    assert!(c["jti"].as_str().unwrap().len() >= 22);
    // An anonymous caller has no `sub` and no `tenant`.
    let t = a
        .assert(&Identity::anonymous(), &route("x", "app"), &[])
        .unwrap();
    let (_, c, _, _) = parts(&t);
    assert!(c.get("sub").is_none() && c.get("tenant").is_none());
    assert_eq!(c["auth"], "none");
}

#[test]
fn reuse_is_per_caller_and_route_and_short() {
    let (a, _, now) = setup();
    let s = vec!["jobs".to_owned()];
    let r1 = route("jobs", "app");
    let t1 = a.assert(&alice(), &r1, &s).unwrap();
    assert_eq!(a.assert(&alice(), &r1, &s).unwrap(), t1);
    // Another route, upstream, tenant or scope set: another assertion.
    assert_ne!(a.assert(&alice(), &route("other", "app"), &s).unwrap(), t1);
    assert_ne!(
        a.assert(&alice(), &route("jobs2", "billing"), &s).unwrap(),
        t1
    );
    let mut globex = alice();
    globex.tenant = Some("globex".into());
    assert_ne!(a.assert(&globex, &r1, &s).unwrap(), t1);
    assert_ne!(a.assert(&alice(), &r1, &[]).unwrap(), t1);
    // After the reuse window a fresh one is signed.
    now.fetch_add(REUSE.as_secs(), Ordering::Relaxed);
    let t2 = a.assert(&alice(), &r1, &s).unwrap();
    assert_ne!(t2, t1);
    let (_, c, _, _) = parts(&t2);
    assert_eq!(c["iat"], 1_800_000_005u64);
}

#[test]
fn cache_is_bounded() {
    let (a, _, _) = setup();
    let r = route("jobs", "app");
    let mut id = alice();
    for i in 0..CACHE_CAP + 10 {
        id.subject = Some(format!("user{i}"));
        a.assert(&id, &r, &[]).unwrap();
    }
    assert!(a.cached() <= CACHE_CAP, "{}", a.cached());
}

#[test]
fn jwks_lists_every_key() {
    let k1 = SigningKey::generate("a").unwrap();
    let k2 = SigningKey::generate("b").unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&jwks_json(&[k1.public().clone(), k2.public().clone()])).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["kid"], k1.public().fingerprint());
    assert_eq!(
        B64.decode(keys[1]["x"].as_str().unwrap()).unwrap(),
        k2.public().raw()
    );
}
