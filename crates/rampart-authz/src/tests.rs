#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use proptest::prelude::*;

fn route(path: &str, scopes: &[&str], any: &[&str]) -> RouteConfig {
    RouteConfig {
        id: "r".into(),
        path: path.into(),
        methods: vec![],
        upstream: "app".into(),
        public: false,
        max_body_bytes: None,
        tier: None,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        any_scopes: any.iter().map(|s| (*s).to_owned()).collect(),
        allow_path_params: false,
        allow_fragment: false,
        allow_wildcard: false,
        cors: None,
        csrf: None,
        identity_assertion: false,
    }
}

fn caller(tenant: Option<&str>, scopes: &[&str], roles: &[&str]) -> Identity {
    Identity {
        method: "jwt",
        subject: Some("alice".into()),
        tenant: tenant.map(str::to_owned),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        roles: roles.iter().map(|s| (*s).to_owned()).collect(),
        credential_id: None,
        rate_override: None,
    }
}

fn tenant(t: &str) -> Params {
    [("tenant".to_owned(), t.to_owned())].into_iter().collect()
}

fn none() -> Params {
    Params::default()
}

#[test]
fn default_roles() {
    let rbac = Rbac::default();
    let reader = caller(None, &[], &["reader"]);
    let analyst = caller(None, &[], &["analyst"]);
    assert_eq!(
        decide(&reader, &route("/e", &["evaluate"], &[]), &none(), &rbac),
        Err(Denial::MissingScope)
    );
    assert_eq!(
        decide(&reader, &route("/j", &["jobs"], &[]), &none(), &rbac)
            .unwrap()
            .scopes,
        ["jobs", "metrics"]
    );
    assert_eq!(
        decide(&analyst, &route("/e", &["evaluate"], &[]), &none(), &rbac)
            .unwrap()
            .scopes,
        ["discover", "evaluate", "jobs", "metrics"]
    );
    let admin = caller(None, &[], &["admin"]);
    assert_eq!(
        decide(
            &admin,
            &route("/x", &["anything", "else"], &[]),
            &none(),
            &rbac
        )
        .unwrap()
        .scopes,
        ["*"]
    );
}

#[test]
fn configured_roles_replace_defaults_and_unknown_roles_grant_nothing() {
    let section = RbacSection {
        enabled: None,
        roles: BTreeMap::from([("ops".to_owned(), vec!["jobs".to_owned()])]),
    };
    let rbac = Rbac::from_config(Some(&section));
    let r = route("/j", &["jobs"], &[]);
    assert!(decide(&caller(None, &[], &["ops"]), &r, &none(), &rbac).is_ok());
    // `reader` is a default role, but the configured map does not define it.
    assert_eq!(
        decide(&caller(None, &[], &["reader"]), &r, &none(), &rbac),
        Err(Denial::MissingScope)
    );
    // Nor `admin`, so it crosses no tenant either.
    assert_eq!(
        decide(
            &caller(Some("acme"), &["jobs"], &["admin"]),
            &route("/t/{tenant}", &["jobs"], &[]),
            &tenant("globex"),
            &rbac
        ),
        Err(Denial::TenantMismatch)
    );
}

#[test]
fn any_scopes() {
    let rbac = Rbac::default();
    let r = route("/m", &[], &["metrics", "audit"]);
    assert!(decide(&caller(None, &["audit"], &[]), &r, &none(), &rbac).is_ok());
    assert_eq!(
        decide(&caller(None, &["jobs"], &[]), &r, &none(), &rbac),
        Err(Denial::NoAcceptedScope)
    );
    let both = route("/m", &["jobs"], &["metrics", "audit"]);
    assert_eq!(
        decide(&caller(None, &["metrics"], &[]), &both, &none(), &rbac),
        Err(Denial::MissingScope)
    );
    assert!(
        decide(
            &caller(None, &["metrics", "jobs"], &[]),
            &both,
            &none(),
            &rbac
        )
        .is_ok()
    );
}

#[test]
fn disabled_rbac_skips_scopes_not_tenancy() {
    let rbac = Rbac {
        enabled: false,
        ..Rbac::default()
    };
    let r = route("/t/{tenant}", &["jobs"], &["x"]);
    assert!(decide(&caller(Some("acme"), &[], &[]), &r, &tenant("acme"), &rbac).is_ok());
    assert_eq!(
        decide(
            &caller(Some("acme"), &[], &[]),
            &r,
            &tenant("globex"),
            &rbac
        ),
        Err(Denial::TenantMismatch)
    );
}

#[test]
fn tenancy() {
    let rbac = Rbac::default();
    let r = route("/t/{tenant}/jobs", &["jobs"], &[]);
    let acme = caller(Some("acme"), &["jobs"], &[]);
    assert!(decide(&acme, &r, &tenant("acme"), &rbac).is_ok());
    for other in [
        "globex", "ACME", "Acme", "acme ", "acm", "acmee", "%61cme", "*", "",
    ] {
        assert_eq!(
            decide(&acme, &r, &tenant(other), &rbac),
            Err(Denial::TenantMismatch),
            "{other}"
        );
    }
    assert_eq!(
        decide(
            &caller(None, &["jobs", "tenants:*"], &["admin"]),
            &r,
            &tenant("acme"),
            &rbac
        ),
        Err(Denial::NoTenant)
    );
    let cross = caller(Some("acme"), &["jobs", "tenants:*"], &[]);
    assert!(decide(&cross, &r, &tenant("globex"), &rbac).is_ok());
    let admin = caller(Some("acme"), &[], &["admin"]);
    assert!(decide(&admin, &r, &tenant("globex"), &rbac).is_ok());
    // Crossing tenants does not waive the route's scopes.
    assert_eq!(
        decide(
            &caller(Some("acme"), &["tenants:*"], &[]),
            &r,
            &tenant("globex"),
            &rbac
        ),
        Err(Denial::MissingScope)
    );
}

#[test]
fn public_routes_are_granted() {
    let mut r = route("/t/{tenant}", &[], &[]);
    r.public = true;
    let anon = Identity::anonymous();
    assert_eq!(
        decide(&anon, &r, &tenant("globex"), &Rbac::default()),
        Ok(Grant::default())
    );
}

fn scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        Just("tenants:*".to_owned()),
        "[a-e]{1,2}",
    ]
}

fn role() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("admin".to_owned()),
        Just("analyst".to_owned()),
        Just("reader".to_owned()),
        "[a-c]{1,2}",
    ]
}

fn rbac() -> impl Strategy<Value = Rbac> {
    (
        any::<bool>(),
        proptest::option::of(proptest::collection::btree_map(
            role(),
            proptest::collection::vec(scope(), 0..4),
            0..4,
        )),
    )
        .prop_map(|(enabled, roles)| Rbac {
            enabled,
            roles: roles.unwrap_or_else(Rbac::default_roles),
        })
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        proptest::option::of(prop_oneof![Just("acme".to_owned()), "[a-c]{1,3}"]),
        proptest::collection::vec(scope(), 0..4),
        proptest::collection::vec(role(), 0..3),
    )
        .prop_map(|(t, s, r)| Identity {
            method: "jwt",
            subject: Some("p".into()),
            tenant: t,
            scopes: s,
            roles: r,
            credential_id: None,
            rate_override: None,
        })
}

fn route_cfg() -> impl Strategy<Value = (RouteConfig, Params)> {
    (
        proptest::collection::vec(scope(), 0..3),
        proptest::collection::vec(scope(), 0..3),
        proptest::option::of(prop_oneof![Just("acme".to_owned()), "[a-c]{1,3}"]),
        any::<bool>(),
    )
        .prop_map(|(scopes, any_scopes, t, public)| {
            let mut r = route("/r", &[], &[]);
            r.scopes = scopes;
            r.any_scopes = any_scopes;
            r.public = public;
            let params = t.map(|t| tenant(&t)).unwrap_or_default();
            (r, params)
        })
}

/// An oracle written independently of `decide`, from the rules in the crate docs.
fn oracle(id: &Identity, r: &RouteConfig, p: &Params, rbac: &Rbac) -> bool {
    if r.public {
        return true;
    }
    let mut held: Vec<&str> = id.scopes.iter().map(String::as_str).collect();
    for role in &id.roles {
        if let Some(s) = rbac.roles.get(role) {
            held.extend(s.iter().map(String::as_str));
        }
    }
    let has = |s: &str| held.contains(&"*") || held.contains(&s);
    let tenant_ok = match p.get("tenant") {
        None => true,
        Some(want) => match &id.tenant {
            None => false,
            Some(own) => {
                own == want
                    || has("tenants:*")
                    || (rbac.roles.contains_key("admin") && id.roles.iter().any(|r| r == "admin"))
            }
        },
    };
    let scopes_ok = !rbac.enabled
        || (r.scopes.iter().all(|s| has(s))
            && (r.any_scopes.is_empty() || r.any_scopes.iter().any(|s| has(s))));
    tenant_ok && scopes_ok
}

proptest! {
    #[test]
    fn matches_the_oracle(id in identity(), (r, p) in route_cfg(), rbac in rbac()) {
        prop_assert_eq!(decide(&id, &r, &p, &rbac).is_ok(), oracle(&id, &r, &p, &rbac));
    }

    /// The grant never holds a scope the caller did not have directly or through a
    /// defined role, and holds every one it did.
    #[test]
    fn grant_is_exactly_the_effective_scopes(id in identity(), (mut r, p) in route_cfg(), rbac in rbac()) {
        r.public = false;
        if let Ok(g) = decide(&id, &r, &p, &rbac) {
            let mut want: BTreeSet<String> = id.scopes.iter().cloned().collect();
            for role in &id.roles {
                want.extend(rbac.roles.get(role).into_iter().flatten().cloned());
            }
            prop_assert_eq!(g.scopes, want.into_iter().collect::<Vec<_>>());
        }
    }

    /// Adding scopes or defined roles never turns a grant into a refusal (monotone),
    /// except where a tenant is concerned, which scopes only widen too.
    #[test]
    fn more_scopes_never_hurt(id in identity(), extra in proptest::collection::vec(scope(), 0..3), (r, p) in route_cfg(), rbac in rbac()) {
        let mut more = id.clone();
        more.scopes.extend(extra);
        if decide(&id, &r, &p, &rbac).is_ok() {
            prop_assert!(decide(&more, &r, &p, &rbac).is_ok());
        }
    }

    /// A caller without `tenants:*`, `*` or a defined admin role only ever gets a
    /// tenant route whose parameter is exactly its own tenant.
    #[test]
    fn tenant_isolation(id in identity(), (mut r, _) in route_cfg(), want in "[a-cA-C%*.]{0,4}", rbac in rbac()) {
        r.public = false;
        let p = tenant(&want);
        let eff = rbac.effective_scopes(&id);
        let crosses = eff.contains("*") || eff.contains("tenants:*")
            || (rbac.roles.contains_key("admin") && id.roles.iter().any(|r| r == "admin"));
        if decide(&id, &r, &p, &rbac).is_ok() {
            prop_assert!(id.tenant.is_some());
            prop_assert!(crosses || id.tenant.as_deref() == Some(want.as_str()));
        }
    }
}
