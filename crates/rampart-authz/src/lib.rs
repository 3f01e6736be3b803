//! rampart's authorization policy: may this authenticated caller use this route?
//!
//! Guards against: a caller using a route whose scopes it does not hold, a role the
//! configuration never defined granting anything, and one tenant reaching another
//! tenant's resources through a `{tenant}` path segment. Trusts: the [`Identity`] the
//! authentication stage built (its scopes, roles and tenant), the route match (made on
//! the normalized path, so `..`, `//` and unreserved percent-encodings are already
//! resolved and ambiguous paths already refused), and the validated `[rbac]` section.
//!
//! Beside the policy, the browser-facing stages of routes that enable them: [`cors`]
//! (preflights answered before authentication, exact origin allowlist), [`csrf`]
//! (double-submit check for cookie-authenticated callers) and [`identity`] (the signed
//! `x-rampart-identity` assertion and the JWKS that verifies it). Each module's docs say
//! what it guards against and what it trusts.
//!
//! [`decide`] is pure: no I/O, no clock, no state kept between calls, so a decision made
//! for one route can never be reused for another. [`Policy`] wraps it as the
//! [`RoutePolicy`] the authorization layer in `rampart-http` asks on every request; that
//! layer, not this crate, makes the `Permit` (see its module docs for why).
//!
//! Rules:
//! - Public routes are always granted (there is nobody to check).
//! - Effective scopes = the identity's own scopes ∪ the scopes of its roles mapped
//!   through `[rbac.roles]` (built-in defaults when the section lists no roles). A role
//!   absent from the map grants nothing. `*` holds every scope.
//! - Every scope in the route's `scopes` must be held; when `any_scopes` is not empty, one
//!   of them must be held. `rbac.enabled = false` turns both checks off.
//! - A `{tenant}` route parameter must equal the caller's tenant byte for byte. A caller
//!   without a tenant is refused on such routes; the `tenants:*` scope (so also `*`) or
//!   the `admin` role (when the role map defines it) crosses tenants. Tenancy stays on
//!   when `rbac.enabled = false`: it is isolation, not permission.
//!
//! ```
//! use rampart_authz::{Rbac, decide, Denial};
//! # let route = |path: &str, scopes: &[&str]| rampart_config::RouteConfig {
//! #     id: "r".into(), path: path.into(), methods: vec![], upstream: "app".into(),
//! #     public: false, max_body_bytes: None, tier: None,
//! #     scopes: scopes.iter().map(|s| s.to_string()).collect(), any_scopes: vec![],
//! #     allow_path_params: false, allow_fragment: false, allow_wildcard: false,
//! #     cors: None, csrf: None, identity_assertion: false };
//! let mut reader = rampart_http::Identity::anonymous();
//! reader.method = "jwt";
//! reader.roles = vec!["reader".into()];
//! let rbac = Rbac::from_config(None);
//! let params = rampart_http::Params::default();
//! assert!(decide(&reader, &route("/jobs", &["jobs"]), &params, &rbac).is_ok());
//! assert_eq!(
//!     decide(&reader, &route("/evaluate", &["evaluate"]), &params, &rbac),
//!     Err(Denial::MissingScope)
//! );
//! ```

#![forbid(unsafe_code)]

pub mod cors;
pub mod csrf;
pub mod identity;

pub use cors::{Cors, CorsLayer};
pub use csrf::{Csrf, CsrfLayer};
pub use identity::{Asserter, IdentityAssertion, IdentityAssertionLayer, jwks_json};

use std::collections::{BTreeMap, BTreeSet};

use rampart_config::RouteConfig;
use rampart_config::raw::RbacSection;
pub use rampart_http::Grant;
use rampart_http::{Identity, Params, Route, RoutePolicy};

/// The scope that holds every scope.
pub const ALL: &str = "*";
/// The scope that lets a caller act on any tenant's routes.
pub const ANY_TENANT: &str = "tenants:*";
/// The role that crosses tenants (when the role map defines it).
pub const ADMIN_ROLE: &str = "admin";
/// The route parameter bound to the caller's tenant.
pub const TENANT_PARAM: &str = "tenant";

/// Why a request was refused. The codes are stable: they appear in the access log, the
/// audit record and the `decision`/`reason` metrics, never in the client's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A scope listed in the route's `scopes` is not held.
    MissingScope,
    /// None of the route's `any_scopes` is held.
    NoAcceptedScope,
    /// The route's `{tenant}` is not the caller's tenant.
    TenantMismatch,
    /// A `{tenant}` route, and the caller has no tenant.
    NoTenant,
}

impl Denial {
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingScope => "missing_scope",
            Self::NoAcceptedScope => "no_accepted_scope",
            Self::TenantMismatch => "tenant_mismatch",
            Self::NoTenant => "no_tenant",
        }
    }
}

/// `[rbac]`, ready to decide with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rbac {
    /// `false`: scope checks are off (tenancy still applies).
    pub enabled: bool,
    /// Role → scopes it grants.
    pub roles: BTreeMap<String, Vec<String>>,
}

impl Default for Rbac {
    fn default() -> Self {
        Self::from_config(None)
    }
}

impl Rbac {
    /// The built-in roles, used when `[rbac.roles]` lists none.
    pub fn default_roles() -> BTreeMap<String, Vec<String>> {
        let role = |name: &str, scopes: &[&str]| {
            (
                name.to_owned(),
                scopes.iter().map(|s| (*s).to_owned()).collect(),
            )
        };
        BTreeMap::from([
            role(ADMIN_ROLE, &[ALL]),
            role("analyst", &["discover", "evaluate", "jobs", "metrics"]),
            role("reader", &["metrics", "jobs"]),
        ])
    }

    /// From the parsed `[rbac]` section (`None` = absent: enabled, default roles).
    pub fn from_config(section: Option<&RbacSection>) -> Self {
        let enabled = section.and_then(|s| s.enabled).unwrap_or(true);
        let roles = match section {
            Some(s) if !s.roles.is_empty() => s.roles.clone(),
            _ => Self::default_roles(),
        };
        Self { enabled, roles }
    }

    /// The identity's scopes and its roles' scopes, sorted and without duplicates.
    /// Roles the map does not define contribute nothing.
    pub fn effective_scopes(&self, identity: &Identity) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = identity.scopes.iter().cloned().collect();
        for role in &identity.roles {
            if let Some(scopes) = self.roles.get(role) {
                out.extend(scopes.iter().cloned());
            }
        }
        out
    }

    fn crosses_tenants(&self, identity: &Identity, scopes: &BTreeSet<String>) -> bool {
        holds(scopes, ANY_TENANT)
            || (self.roles.contains_key(ADMIN_ROLE)
                && identity.roles.iter().any(|r| r == ADMIN_ROLE))
    }
}

fn holds(scopes: &BTreeSet<String>, want: &str) -> bool {
    scopes.contains(ALL) || scopes.contains(want)
}

/// The decision for one request: `identity` on `route`, whose template captured
/// `params` from the normalized path.
pub fn decide(
    identity: &Identity,
    route: &RouteConfig,
    params: &Params,
    rbac: &Rbac,
) -> Result<Grant, Denial> {
    if route.public {
        return Ok(Grant::default());
    }
    let scopes = rbac.effective_scopes(identity);
    if let Some(wanted) = params.get(TENANT_PARAM) {
        match identity.tenant.as_deref() {
            None => return Err(Denial::NoTenant),
            Some(own) if own == wanted => {}
            Some(_) if rbac.crosses_tenants(identity, &scopes) => {}
            Some(_) => return Err(Denial::TenantMismatch),
        }
    }
    if rbac.enabled {
        if !route.scopes.iter().all(|s| holds(&scopes, s)) {
            return Err(Denial::MissingScope);
        }
        if !route.any_scopes.is_empty() && !route.any_scopes.iter().any(|s| holds(&scopes, s)) {
            return Err(Denial::NoAcceptedScope);
        }
    }
    Ok(Grant {
        scopes: scopes.into_iter().collect(),
    })
}

/// [`decide`] as the authorization layer's [`RoutePolicy`].
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rbac: Rbac,
}

impl Policy {
    pub fn new(rbac: Rbac) -> Self {
        Self { rbac }
    }
}

impl RoutePolicy for Policy {
    fn check(
        &self,
        identity: &Identity,
        route: &Route,
        params: &Params,
    ) -> Result<Grant, &'static str> {
        decide(identity, &route.config, params, &self.rbac).map_err(Denial::code)
    }
}

#[cfg(test)]
mod tests;
