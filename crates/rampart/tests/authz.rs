//! Authorization against the real binary: scopes and roles per route, `any_scopes`,
//! tenant binding on `{tenant}` routes (path tricks included), and the identity the
//! upstream is told. Callers are simulated with trusted mTLS identity headers (from
//! 127.0.0.1, a trusted proxy here). JWT callers are not exercised here: `serve` on main
//! does not yet wire a JWT verifier into the gateway (it warns "no verifier").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;

fn extra(rbac: &str) -> String {
    format!(
        r#"
[[routes]]
id = "jobs"
path = "/api/jobs"
upstream = "app"
scopes = ["jobs"]

[[routes]]
id = "evaluate"
path = "/api/evaluate"
upstream = "app"
scopes = ["evaluate"]

[[routes]]
id = "report"
path = "/api/report"
upstream = "app"
any_scopes = ["metrics", "audit"]

[[routes]]
id = "tenant-jobs"
path = "/tenants/{{tenant}}/jobs"
upstream = "app"
scopes = ["jobs"]

[[routes]]
id = "loose"
path = "/loose/{{tenant}}/jobs"
upstream = "app"
scopes = ["jobs"]
allow_path_params = true
allow_wildcard = true

[auth]
modes = ["mtls"]

[auth.mtls]
identity_header = "x-ssl-client-subject"
scopes_header = "x-ssl-client-scopes"
roles_header = "x-ssl-client-roles"
map = [{{ id = "alice", tenant = "acme" }}, {{ id = "bob", tenant = "globex" }}, {{ id = "root", tenant = "acme" }}]

{rbac}"#
    )
}

fn start(rbac: &str) -> (Upstream, Gateway) {
    let up = Upstream::start();
    let cfg = base_config(up.addr, &extra(rbac)).replace(
        "drain_timeout_ms = 10000",
        "drain_timeout_ms = 10000\ntrusted_proxies = [\"127.0.0.1/32\"]",
    );
    let gw = Gateway::start(&cfg);
    (up, gw)
}

fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(gw.addr, &req)
}

/// A caller as the trusted ingress describes it.
fn who<'a>(subject: &'a str, scopes: &'a str, roles: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![("x-ssl-client-subject", subject)];
    if !scopes.is_empty() {
        h.push(("x-ssl-client-scopes", scopes));
    }
    if !roles.is_empty() {
        h.push(("x-ssl-client-roles", roles));
    }
    h
}

/// The request was refused with the generic 403, and the upstream never saw it.
fn refused(up: &Upstream, r: &Resp) {
    let doc = assert_problem(r, 403);
    assert_eq!(doc["code"], "forbidden");
    assert_eq!(
        doc["detail"],
        "The caller is not allowed to access this route."
    );
    assert_security_headers(r);
    assert!(up.seen().is_empty(), "{:?}", up.seen());
}

/// Served: the upstream saw exactly one request, which is returned.
fn served(up: &Upstream, r: &Resp) -> Seen {
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    up.clear();
    seen.into_iter().next().unwrap()
}

#[test]
fn default_roles_scopes_and_any_scopes() {
    let (up, gw) = start("");
    // A reader is refused `evaluate` and allowed `jobs`.
    let r = get(&gw, "/api/evaluate", &who("carol", "", "reader"));
    refused(&up, &r);
    assert!(gw.wait_access("missing_scope", Duration::from_secs(5)));
    let s = served(&up, &get(&gw, "/api/jobs", &who("carol", "", "reader")));
    assert_eq!(s.header("x-rampart-scopes"), Some("jobs metrics"));
    assert_eq!(s.header("x-rampart-subject"), Some("carol"));
    assert_eq!(s.header("x-rampart-auth"), Some("mtls"));
    // An analyst is allowed `evaluate`, and the role's scopes are forwarded.
    let s = served(
        &up,
        &get(&gw, "/api/evaluate", &who("carol", "", "analyst")),
    );
    assert_eq!(
        s.header("x-rampart-scopes"),
        Some("discover evaluate jobs metrics")
    );
    // Direct scopes and role scopes together.
    let s = served(
        &up,
        &get(&gw, "/api/evaluate", &who("carol", "evaluate", "")),
    );
    assert_eq!(s.header("x-rampart-scopes"), Some("evaluate"));
    // A role nobody defined grants nothing.
    refused(&up, &get(&gw, "/api/jobs", &who("carol", "", "superuser")));
    // Unauthenticated is still 401, not 403.
    assert_problem(&get(&gw, "/api/jobs", &[]), 401);
    // any_scopes: one of the list is enough, none is refused.
    served(&up, &get(&gw, "/api/report", &who("carol", "audit", "")));
    served(&up, &get(&gw, "/api/report", &who("carol", "", "reader")));
    refused(
        &up,
        &get(&gw, "/api/report", &who("carol", "jobs evaluate", "")),
    );
    assert!(gw.wait_access("no_accepted_scope", Duration::from_secs(5)));
}

#[test]
fn a_role_outside_the_configured_map_grants_nothing() {
    let (up, gw) = start("\n[rbac]\nenabled = true\n[rbac.roles]\nops = [\"jobs\"]\n");
    served(&up, &get(&gw, "/api/jobs", &who("carol", "", "ops")));
    // `reader` and `admin` are defaults only when [rbac.roles] lists no role.
    refused(&up, &get(&gw, "/api/jobs", &who("carol", "", "reader")));
    refused(&up, &get(&gw, "/api/jobs", &who("carol", "", "admin")));
    refused(
        &up,
        &get(&gw, "/tenants/globex/jobs", &who("alice", "jobs", "admin")),
    );
}

#[test]
fn rbac_disabled_checks_no_scopes_but_keeps_tenancy_and_authentication() {
    let (up, gw) = start("\n[rbac]\nenabled = false\n");
    served(&up, &get(&gw, "/api/evaluate", &who("carol", "", "")));
    assert_problem(&get(&gw, "/api/evaluate", &[]), 401);
    assert!(up.seen().is_empty());
    refused(
        &up,
        &get(&gw, "/tenants/globex/jobs", &who("alice", "", "")),
    );
}

#[test]
fn one_caller_is_checked_afresh_on_every_route_in_either_order() {
    let (up, gw) = start("");
    let reader = who("carol", "", "reader");
    served(&up, &get(&gw, "/api/jobs", &reader));
    refused(&up, &get(&gw, "/api/evaluate", &reader));
    served(&up, &get(&gw, "/api/jobs", &reader));
    // The other order, on the same gateway, with a caller not seen before.
    let fresh = who("dave", "", "reader");
    refused(&up, &get(&gw, "/api/evaluate", &fresh));
    served(&up, &get(&gw, "/api/jobs", &fresh));
    refused(&up, &get(&gw, "/api/evaluate", &fresh));
}

#[test]
fn a_tenant_is_bound_to_its_own_routes_whatever_the_path_spelling() {
    let (up, gw) = start("");
    let alice = who("alice", "jobs", "");
    let s = served(&up, &get(&gw, "/tenants/acme/jobs", &alice));
    assert_eq!(s.header("x-rampart-tenant"), Some("acme"));
    for path in [
        "/tenants/globex/jobs",
        "/tenants/GLOBEX/jobs",
        "/tenants/ACME/jobs",
        "/tenants/%67lobex/jobs",
        "/tenants/%67%6C%6F%62%65%78/jobs",
        "/tenants/%2567lobex/jobs",
        "/tenants/acme/../globex/jobs",
        "/tenants/./globex/jobs",
        "//tenants//globex//jobs",
        "/tenants/acme/..//globex/jobs",
        "/loose/globex;x/jobs",
        "/loose/*/jobs",
        "/loose/globex/jobs",
    ] {
        let r = get(&gw, path, &alice);
        let doc = assert_problem(&r, 403);
        assert_eq!(doc["code"], "forbidden", "{path}");
        assert_security_headers(&r);
        assert!(up.seen().is_empty(), "{path} reached the upstream");
    }
    assert!(gw.wait_access("tenant_mismatch", Duration::from_secs(5)));
    // Refused earlier, as ambiguous paths (never reaching authorization).
    for path in [
        "/tenants/globex;x/jobs",
        "/tenants/*/jobs",
        "/tenants/acme%2F..%2Fglobex/jobs",
        "/tenants/acme/../../globex/jobs",
        "/tenants/acme\\..\\globex/jobs",
    ] {
        let r = get(&gw, path, &alice);
        assert!(
            r.status == 400 || r.status == 404,
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(up.seen().is_empty(), "{path} reached the upstream");
    }
    // Climbing back into one's own tenant is acme's own route, served as acme's.
    let s = served(&up, &get(&gw, "/tenants/globex/../acme/jobs", &alice));
    assert_eq!(s.target, "/tenants/acme/jobs");
    assert_eq!(s.header("x-rampart-tenant"), Some("acme"));
    // Bob (globex) gets his own, not acme's.
    served(
        &up,
        &get(&gw, "/tenants/globex/jobs", &who("bob", "jobs", "")),
    );
    refused(
        &up,
        &get(&gw, "/tenants/acme/jobs", &who("bob", "jobs", "")),
    );
}

#[test]
fn admin_and_tenants_star_cross_tenants_with_their_own_tenant_forwarded() {
    let (up, gw) = start("");
    let s = served(
        &up,
        &get(&gw, "/tenants/globex/jobs", &who("root", "", "admin")),
    );
    assert_eq!(s.header("x-rampart-tenant"), Some("acme"));
    assert_eq!(s.header("x-rampart-subject"), Some("root"));
    assert_eq!(s.header("x-rampart-scopes"), Some("*"));
    let s = served(
        &up,
        &get(
            &gw,
            "/tenants/globex/jobs",
            &who("alice", "jobs tenants:*", ""),
        ),
    );
    assert_eq!(s.header("x-rampart-tenant"), Some("acme"));
    assert_eq!(s.header("x-rampart-scopes"), Some("jobs tenants:*"));
    // Crossing tenants does not waive the route's scopes.
    refused(
        &up,
        &get(&gw, "/tenants/globex/jobs", &who("alice", "tenants:*", "")),
    );
}

#[test]
fn a_caller_without_a_tenant_is_refused_on_tenant_routes() {
    let (up, gw) = start("");
    // carol has no mapping, hence no tenant; even admin or tenants:* does not help.
    for h in [
        who("carol", "jobs", ""),
        who("carol", "jobs tenants:*", ""),
        who("carol", "", "admin"),
    ] {
        refused(&up, &get(&gw, "/tenants/acme/jobs", &h));
    }
    assert!(gw.wait_access("no_tenant", Duration::from_secs(5)));
    // The same caller is fine on a route without a tenant.
    served(&up, &get(&gw, "/api/jobs", &who("carol", "jobs", "")));
}

#[test]
fn client_written_rampart_headers_never_reach_the_upstream() {
    let (up, gw) = start("");
    let mut h = who("alice", "jobs", "");
    h.extend([
        ("x-rampart-tenant", "globex"),
        ("x-rampart-subject", "root"),
        ("x-rampart-scopes", "*"),
        ("x-rampart-auth", "none"),
        ("X-Rampart-Tenant", "globex"),
        ("x_rampart_tenant", "globex"),
        ("x-rampart-identity", "forged"),
    ]);
    let s = served(&up, &get(&gw, "/tenants/acme/jobs", &h));
    let rampart: Vec<_> = s
        .headers
        .iter()
        .filter(|(n, _)| {
            n.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-rampart")
        })
        .collect();
    assert_eq!(rampart.len(), 4, "{rampart:?}");
    assert_eq!(s.header("x-rampart-tenant"), Some("acme"));
    assert_eq!(s.header("x-rampart-subject"), Some("alice"));
    assert_eq!(s.header("x-rampart-scopes"), Some("jobs"));
    assert_eq!(s.header("x-rampart-auth"), Some("mtls"));
    // And a refused caller's forged headers change nothing.
    let mut h = who("alice", "jobs", "");
    h.push(("x-rampart-tenant", "globex"));
    h.push(("x-rampart-scopes", "tenants:*"));
    refused(&up, &get(&gw, "/tenants/globex/jobs", &h));
}
