//! The cost authorization adds to a request (issue 16 target: JWT + RBAC + tenant check
//! at most 5% more CPU than JWT alone). Both arms do the same JWT work (verify the token,
//! build the `Identity` the authentication stage inserts); the second also runs
//! [`rampart_authz::decide`] on a `{tenant}` route needing a scope held through a role.
//! Two JWT regimes: every token's signature checked (`no_cache`), and the gateway's
//! default verified-token cache answering (`cache_hit`, the cheapest JWT path, so the
//! largest relative overhead). Micro-level only; the whole-gateway figure comes from
//! `bench/run.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_authz::{Rbac, decide};
use rampart_config::{Profile, RouteConfig};
use rampart_http::{Identity, Params};
use rampart_jwt::{JwtSettings, JwtVerifier, ManualClock};
use rampart_test_support::TestKey;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn verifier(key: &TestKey, cache: bool) -> JwtVerifier {
    let mut s = JwtSettings::new(Profile::Prod, None);
    s.claims.issuer = Some("https://id.example.com/".into());
    s.claims.audience = vec!["rampart".into()];
    s.cache_entries = if cache { 10_000 } else { 0 };
    let jwks = json!({"keys": [key.jwk()]}).to_string();
    JwtVerifier::with_key_set(s, jwks.as_bytes(), Arc::new(ManualClock::new(NOW))).unwrap()
}

fn route() -> RouteConfig {
    RouteConfig {
        id: "jobs".into(),
        path: "/tenants/{tenant}/jobs".into(),
        methods: vec![],
        upstream: "app".into(),
        public: false,
        max_body_bytes: None,
        tier: None,
        scopes: vec!["jobs".into()],
        any_scopes: vec![],
        allow_path_params: false,
        allow_fragment: false,
        allow_wildcard: false,
        cors: None,
        csrf: None,
        identity_assertion: false,
    }
}

/// What the authentication stage makes of a verified token.
fn identity(v: &JwtVerifier, token: &str) -> Identity {
    let t = v.verify(token).unwrap();
    Identity {
        method: "jwt",
        subject: Some(t.subject),
        tenant: t.tenant,
        scopes: t.scopes,
        roles: t.roles,
        credential_id: t.jti,
        rate_override: None,
    }
}

fn bench(c: &mut Criterion) {
    let key = TestKey::es256("e1");
    let token = key.token(
        "ES256",
        &json!({"iss":"https://id.example.com/","aud":"rampart","sub":"alice","tenant":"acme",
                "scope":"metrics","roles":["analyst"],"jti":"j-1","exp": NOW + 3600, "iat": NOW}),
    );
    let rbac = Rbac::from_config(None);
    let route = route();
    let params: Params = [("tenant".to_owned(), "acme".to_owned())]
        .into_iter()
        .collect();
    for cache in [false, true] {
        let v = verifier(&key, cache);
        // The arms must do what they claim: the policy grants this caller.
        assert!(decide(&identity(&v, &token), &route, &params, &rbac).is_ok());
        let mut g = c.benchmark_group(if cache {
            "authz/cache_hit"
        } else {
            "authz/no_cache"
        });
        g.bench_function("jwt", |b| {
            b.iter(|| black_box(identity(&v, black_box(&token))));
        });
        g.bench_function("jwt_rbac_tenant", |b| {
            b.iter(|| {
                let id = identity(&v, black_box(&token));
                black_box(decide(&id, &route, black_box(&params), &rbac).unwrap())
            });
        });
        g.bench_function("rbac_tenant_only", |b| {
            let id = identity(&v, &token);
            b.iter(|| {
                black_box(decide(black_box(&id), &route, black_box(&params), &rbac).unwrap())
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
