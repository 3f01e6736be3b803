//! The `/admin/*` API on the admin listener: a small router over one module per resource
//! (`admin_revocations`, `admin_apikeys`, …) plus `GET /admin/openapi.json`.
//!
//! Guards against: anyone reaching the admin address changing credentials (every route
//! but the OpenAPI document authenticates the caller with the gateway's own modes and
//! verifiers and needs the `admin` scope, the `*` scope or the `admin` role; anonymous
//! access never qualifies, even where `auth.modes` holds `none`); credential confusion
//! (the credentials of two modes on one call are refused); forged, replayed or altered
//! signed device requests (RFC 9421, verified as on the public listener, the
//! `Content-Digest` against the whole body before any handler runs); oversized or malformed
//! bodies (64 KiB cap in `rampart-admin`, `application/json` only, strict JSON with known
//! members only; a body that does not parse gets a fixed detail, never the parser's
//! message). Trusts: the authentication stage and the credential store.
//!
//! Adding a resource: a module with `pub(crate) fn routes() -> Vec<Route>` (handlers get
//! the shared [`Ctx`] and a [`Call`]), one line in [`RESOURCES`], its paths in
//! `admin_openapi.json` (a unit test refuses a route the document lacks and a documented
//! operation the router does not know).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use rampart_admin::{AdminApi, AdminResponse, admin_json, admin_problem};
use rampart_authn::Authn;
use rampart_config::Config;
use rampart_http::{Challenge, ConnInfo, Identity, Reject};
use rampart_store::{ApiKeys, RevocationSet, Revocations, Store, StoreError};

use crate::auth::AuthRuntime;

/// What a handler returns.
pub(crate) type BoxFut = Pin<Box<dyn Future<Output = AdminResponse> + Send>>;
/// A route's handler: a plain function (non-capturing closures coerce to it).
pub(crate) type Handler = fn(Arc<Ctx>, Call) -> BoxFut;

/// One operation: a method on a path template whose `{name}` segments match one
/// non-empty path segment each.
pub(crate) struct Route {
    pub method: Method,
    pub path: &'static str,
    /// Served without authentication (only the OpenAPI document).
    pub public: bool,
    pub handler: Handler,
}

impl Route {
    /// An operation for authenticated admins.
    pub(crate) fn admin(method: Method, path: &'static str, handler: Handler) -> Route {
        Route {
            method,
            path,
            public: false,
            handler,
        }
    }
}

/// Every resource of the admin API. A new resource is one line here.
pub(crate) const RESOURCES: &[fn() -> Vec<Route>] = &[
    crate::admin_openapi::routes,
    crate::admin_revocations::routes,
    crate::admin_apikeys::routes,
    crate::admin_devices::routes,
];

/// Every route of every resource.
pub(crate) fn all_routes() -> Vec<Route> {
    RESOURCES.iter().flat_map(|r| r()).collect()
}

/// A request that reached its handler.
pub(crate) struct Call {
    pub req: Request<Bytes>,
    /// The authenticated admin (anonymous only on public routes).
    pub caller: Identity,
    params: Vec<(&'static str, String)>,
}

impl Call {
    /// A `{name}` segment of the route's path (raw, not percent-decoded).
    pub(crate) fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The caller's subject for the change log (never a credential).
    pub(crate) fn admin(&self) -> &str {
        self.caller.subject.as_deref().unwrap_or("")
    }

    /// Whether the body is declared `application/json`.
    pub(crate) fn is_json(&self) -> bool {
        self.req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    }

    /// `415` for a body that is not `application/json` (an empty body passes: the
    /// handler decides whether it needs one).
    pub(crate) fn json_or_empty(&self) -> Result<(), Box<AdminResponse>> {
        if self.req.body().is_empty() || self.is_json() {
            return Ok(());
        }
        Err(Box::new(admin_problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "The body must be application/json.",
        )))
    }

    /// The body as `T`: `415` unless it is `application/json`, `400` with `hint` (a fixed
    /// text, never the parser's message, which may quote the input) unless it parses with
    /// known members only.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        hint: &str,
    ) -> Result<T, Box<AdminResponse>> {
        if !self.is_json() {
            return Err(Box::new(admin_problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "The body must be application/json.",
            )));
        }
        serde_json::from_slice(self.req.body())
            .map_err(|_| Box::new(admin_problem(StatusCode::BAD_REQUEST, "bad_request", hint)))
    }
}

/// What every handler may use.
pub(crate) struct Ctx {
    pub store: Store,
    pub revocations: Revocations,
    /// This node's revocation snapshot: updated before an answer so a change is enforced
    /// here at once (other nodes: Redis, else store polling within 5 s).
    pub local: Option<Arc<RevocationSet>>,
    /// Creating keys needs `auth.api_key.pepper`; the error says what is missing.
    pub api_keys: Result<ApiKeys, String>,
    /// `GET /admin/openapi.json`, adapted to this gateway's auth modes.
    pub openapi: String,
    /// `/admin/devices`: the devices of the `signature` mode.
    pub devices: crate::admin_devices::DevicesApi,
    authn: Authn,
    /// The headers of the credential-bearing modes (`jwt`, `api_key`, `signature`): an
    /// admin call presents the credential of one mode.
    credential_headers: Vec<Vec<http::HeaderName>>,
    admin_addr: Option<SocketAddr>,
}

/// The admin API, when a credential store is configured (nothing to manage otherwise).
pub fn build(cfg: &Config, auth: &AuthRuntime) -> Option<Arc<dyn AdminApi>> {
    let store = auth.store.clone()?;
    let authn = match Authn::new(cfg, auth.verifiers.clone()) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "admin API disabled");
            return None;
        }
    };
    let ctx = Ctx {
        devices: crate::admin_devices::DevicesApi::new(cfg, store.clone()),
        revocations: Revocations::new(store.clone()),
        api_keys: ApiKeys::from_config(store.clone(), cfg).map_err(|e| e.to_string()),
        store,
        local: auth.revocations.clone(),
        openapi: crate::admin_openapi::document(cfg),
        authn,
        credential_headers: credential_headers(cfg),
        admin_addr: cfg.server.admin_listen,
    };
    Some(Arc::new(Api {
        ctx: Arc::new(ctx),
        routes: all_routes().into(),
    }))
}

struct Api {
    ctx: Arc<Ctx>,
    routes: Arc<[Route]>,
}

fn is_admin(id: &Identity) -> bool {
    !id.is_anonymous()
        && (id.scopes.iter().any(|s| s == "admin" || s == "*")
            || id.roles.iter().any(|r| r == "admin"))
}

/// The `{name}` values when `path` matches `template`.
pub(crate) fn match_path(
    template: &'static str,
    path: &str,
) -> Option<Vec<(&'static str, String)>> {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut params = Vec::new();
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                    if ps.is_empty() {
                        return None;
                    }
                    params.push((name, ps.to_owned()));
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// The headers that carry a credential of each enabled mode (the JWT's, the API key's,
/// a signature's two fields): an admin call presents the credential of one mode.
fn credential_headers(cfg: &Config) -> Vec<Vec<http::HeaderName>> {
    use rampart_config::raw::AuthMode;
    let auth = cfg.later.auth.clone().unwrap_or_default();
    let modes = auth.modes.unwrap_or_default();
    let name = |n: Option<&str>, default: &'static str| {
        n.and_then(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
            .unwrap_or(http::HeaderName::from_static(default))
    };
    let mut out: Vec<Vec<http::HeaderName>> = Vec::new();
    if modes.contains(&AuthMode::Jwt) {
        out.push(vec![name(
            auth.jwt.as_ref().and_then(|j| j.header.as_deref()),
            "authorization",
        )]);
    }
    if modes.contains(&AuthMode::ApiKey) {
        let h = name(
            auth.api_key.as_ref().and_then(|k| k.header.as_deref()),
            "x-api-key",
        );
        // One header for both: one credential (the stage tells them apart).
        if !out.iter().any(|g| g.contains(&h)) {
            out.push(vec![h]);
        }
    }
    if modes.contains(&AuthMode::Signature) {
        out.push(vec![
            http::HeaderName::from_static("signature"),
            http::HeaderName::from_static("signature-input"),
        ]);
    }
    out
}

impl Ctx {
    /// Credential confusion: an admin call presents the credential of one mode, or none
    /// is believed (the authentication stage also requires every presented credential to
    /// verify; the admin API is stricter still).
    fn several_credentials(&self, headers: &http::HeaderMap) -> Result<(), Box<AdminResponse>> {
        let presented = self
            .credential_headers
            .iter()
            .filter(|g| g.iter().any(|h| headers.contains_key(h)))
            .count();
        if presented > 1 {
            self.authn.metrics().failure("none", "several_credentials");
            return Err(Box::new(unauthenticated(None)));
        }
        Ok(())
    }

    fn conn(&self, peer: SocketAddr) -> ConnInfo {
        ConnInfo {
            write_stalled: None,
            peer,
            local: self.admin_addr.unwrap_or(peer),
            tls: None,
        }
    }

    /// The caller, if it may use the admin API; else the refusal. Signed requests
    /// (RFC 9421) verify against the whole body, with the admin listener's target URI.
    async fn caller(
        &self,
        req: &mut Request<Bytes>,
        peer: SocketAddr,
    ) -> Result<Identity, Box<AdminResponse>> {
        self.several_credentials(req.headers())?;
        req.extensions_mut().insert(self.conn(peer));
        let outcome = self.authn.authenticate_buffered(req).await;
        self.judge(outcome)
    }

    fn judge(
        &self,
        outcome: Result<Identity, (&'static str, Reject)>,
    ) -> Result<Identity, Box<AdminResponse>> {
        match outcome {
            Ok(id) if is_admin(&id) => Ok(id),
            Ok(id) if id.is_anonymous() => Err(Box::new(unauthenticated(None))),
            Ok(_) => Err(Box::new(admin_problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                "The admin scope is required.",
            ))),
            Err((method, reject)) => {
                self.authn.metrics().failure(method, reject.reason());
                Err(Box::new(match reject {
                    Reject::AuthUnavailable(_) => admin_problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "auth_unavailable",
                        "Credentials cannot be checked right now; retry later.",
                    ),
                    Reject::Unauthenticated(f) => unauthenticated(Some(f.challenge)),
                    _ => unauthenticated(None),
                }))
            }
        }
    }
}

/// Routes one request: `404` for an unknown path, then authentication (unless every
/// operation on the path is public), then `405` for a method the path does not take.
async fn dispatch(
    ctx: Arc<Ctx>,
    routes: Arc<[Route]>,
    mut req: Request<Bytes>,
    peer: SocketAddr,
) -> AdminResponse {
    let path = req.uri().path();
    let mut allowed: Vec<&Method> = Vec::new();
    let mut hit = None;
    let mut all_public = true;
    for r in routes.iter() {
        if let Some(params) = match_path(r.path, path) {
            all_public &= r.public;
            if r.method == req.method() {
                hit = Some((r, params));
                break;
            }
            allowed.push(&r.method);
        }
    }
    if hit.is_none() && allowed.is_empty() {
        return admin_problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such admin endpoint.",
        );
    }
    let needs_auth = hit.as_ref().map_or(!all_public, |(r, _)| !r.public);
    let caller = if needs_auth {
        match ctx.caller(&mut req, peer).await {
            Ok(c) => c,
            Err(r) => return *r,
        }
    } else {
        Identity::anonymous()
    };
    let Some((route, params)) = hit else {
        let list = allowed
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut r = admin_problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This endpoint does not accept this method (see Allow).",
        );
        if let Ok(v) = http::HeaderValue::from_str(&list) {
            r.headers_mut().insert(http::header::ALLOW, v);
        }
        return r;
    };
    let handler = route.handler;
    handler(
        ctx,
        Call {
            req,
            caller,
            params,
        },
    )
    .await
}

/// `401` with the one generic detail; a refused signature also gets `Accept-Signature`
/// (RFC 9421 §5.1) naming the components it must cover, as on the public listener.
fn unauthenticated(challenge: Option<Challenge>) -> AdminResponse {
    let mut r = admin_problem(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Valid credentials are required to access this route.",
    );
    let signature = challenge.and_then(Challenge::accept_signature);
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        challenge.unwrap_or(Challenge::Bearer).admin_header_value(),
    );
    if let Some(v) = signature {
        r.headers_mut()
            .insert(http::HeaderName::from_static("accept-signature"), v);
    }
    r
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, v: &impl serde::Serialize) -> AdminResponse {
    match serde_json::to_string(v) {
        Ok(s) => admin_json(status, s),
        Err(e) => {
            tracing::error!(error = %e, "admin API: cannot encode an answer");
            admin_problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "The answer could not be encoded.",
            )
        }
    }
}

/// A store failure: the caller's input (`400`, the store's message names no secret and
/// no input beyond a bounded field name) or an outage (`503`, details only in the log).
pub(crate) fn store_failed(e: &StoreError) -> AdminResponse {
    if e.is_usage() {
        return admin_problem(StatusCode::BAD_REQUEST, "bad_request", &e.to_string());
    }
    tracing::error!(error = %e, "admin API: credential store failed");
    admin_problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The credential store could not be reached.",
    )
}

impl AdminApi for Api {
    fn call(&self, req: Request<Bytes>, peer: SocketAddr) -> BoxFut {
        Box::pin(dispatch(
            Arc::clone(&self.ctx),
            Arc::clone(&self.routes),
            req,
            peer,
        ))
    }

    /// The status page: the same caller rule as every `/admin/*` endpoint, signed
    /// requests included.
    fn authorize<'a>(
        &'a self,
        req: &'a mut Request<Bytes>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<(), Box<AdminResponse>>> + Send + 'a>> {
        Box::pin(async move { self.ctx.caller(req, peer).await.map(|_| ()) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        assert_eq!(match_path("/admin/apikeys", "/admin/apikeys"), Some(vec![]));
        assert_eq!(match_path("/admin/apikeys", "/admin/apikeys/"), None);
        assert_eq!(match_path("/admin/apikeys", "/admin/apikeysx"), None);
        assert_eq!(
            match_path("/admin/apikeys/{id}/revoke", "/admin/apikeys/abc/revoke"),
            Some(vec![("id", "abc".to_owned())])
        );
        assert_eq!(match_path("/admin/apikeys/{id}", "/admin/apikeys/"), None);
        assert_eq!(
            match_path("/admin/apikeys/{id}", "/admin/apikeys/a/b"),
            None
        );
    }

    proptest::proptest! {
        /// Every route's template matches exactly the paths built from it (each `{name}`
        /// one non-empty segment without `/`), gives back those values, and nothing
        /// longer, shorter or with a changed literal; any path whatsoever never panics.
        #[test]
        fn templates_match_what_they_describe(
            values in proptest::collection::vec("[^/]{1,16}", 3),
            extra in "[^/]{0,8}",
            any in "\\PC{0,64}",
        ) {
            for r in all_routes() {
                let mut vals = values.iter();
                let mut expect = Vec::new();
                let path = r
                    .path
                    .split('/')
                    .map(|seg| match seg.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                        Some(n) => {
                            let v = vals.next().cloned().unwrap_or_default();
                            expect.push((n, v.clone()));
                            v
                        }
                        None => seg.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                proptest::prop_assert_eq!(match_path(r.path, &path), Some(expect));
                let longer = format!("{path}/{extra}");
                proptest::prop_assert_eq!(match_path(r.path, &longer), None);
                let changed = path.replacen("/admin/", "/admin-/", 1);
                proptest::prop_assert_eq!(match_path(r.path, &changed), None);
                let _ = match_path(r.path, &any);
            }
        }
    }

    #[test]
    fn routes_are_unique() {
        let routes = all_routes();
        for (i, a) in routes.iter().enumerate() {
            for b in routes.iter().skip(i + 1) {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
