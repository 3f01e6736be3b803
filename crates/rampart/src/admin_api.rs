//! `/admin/revocations` on the admin listener: list and add revocations.
//!
//! Guards against: anyone reaching the admin address changing the revocation list
//! (every call is authenticated with the gateway's own modes and verifiers, and needs the
//! `admin` scope, the `*` scope or the `admin` role; anonymous access never qualifies,
//! even where `auth.modes` holds `none`); oversized or malformed bodies (64 KiB cap,
//! strict JSON with known members only). Trusts: the authentication stage and the
//! credential store.
//!
//! A revocation added here is enforced at once by this node (the local snapshot is
//! updated before the answer), reaches other nodes through Redis when configured, and by
//! store polling within 5 s otherwise. Every change is logged with the caller's subject.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use rampart_admin::{AdminApi, AdminResponse, admin_json, admin_problem};
use rampart_authn::Authn;
use rampart_config::Config;
use rampart_http::{ConnInfo, Identity, Reject};
use rampart_store::{NewRevocation, RevocationKind, RevocationSet, Revocations};

use crate::auth::AuthRuntime;

struct Api(Arc<Inner>);

struct Inner {
    authn: Authn,
    revocations: Revocations,
    local: Option<Arc<RevocationSet>>,
    admin_addr: Option<SocketAddr>,
    devices: crate::admin_devices::DevicesApi,
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
    Some(Arc::new(Api(Arc::new(Inner {
        authn,
        devices: crate::admin_devices::DevicesApi::new(cfg, store.clone()),
        revocations: Revocations::new(store),
        local: auth.revocations.clone(),
        admin_addr: cfg.server.admin_listen,
    }))))
}

fn is_admin(id: &Identity) -> bool {
    !id.is_anonymous()
        && (id.scopes.iter().any(|s| s == "admin" || s == "*")
            || id.roles.iter().any(|r| r == "admin"))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRevocation {
    /// `jti`, `subject`, `cert` (fingerprint) or `apikey`.
    kind: String,
    value: String,
    /// Unix seconds at which the entry lapses; absent = never.
    #[serde(default)]
    until: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

impl Inner {
    /// The caller, if it may use the admin API; else the refusal.
    fn caller(
        &self,
        req: &Request<Bytes>,
        peer: SocketAddr,
    ) -> Result<Identity, Box<AdminResponse>> {
        let mut probe = Request::new(());
        *probe.headers_mut() = req.headers().clone();
        probe.extensions_mut().insert(ConnInfo {
            write_stalled: None,
            peer,
            local: self.admin_addr.unwrap_or(peer),
            tls: None,
        });
        match self.authn.authenticate(&probe) {
            Ok(id) if is_admin(&id) => Ok(id),
            Ok(id) if id.is_anonymous() => Err(Box::new(unauthenticated())),
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
                    _ => unauthenticated(),
                }))
            }
        }
    }

    async fn handle(&self, req: Request<Bytes>, peer: SocketAddr) -> AdminResponse {
        let devices = crate::admin_devices::is_devices_path(req.uri().path());
        if req.uri().path() != "/admin/revocations" && !devices {
            return admin_problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such admin endpoint.",
            );
        }
        let caller = match self.caller(&req, peer) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        if devices {
            return self.devices.handle(&req, &caller).await;
        }
        match *req.method() {
            Method::GET => match self.revocations.list().await {
                Ok(list) => admin_json(
                    StatusCode::OK,
                    serde_json::json!({ "revocations": list }).to_string(),
                ),
                Err(e) => store_failed(&e),
            },
            Method::POST => self.add(req.body(), &caller).await,
            _ => {
                let mut r = admin_problem(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "This endpoint accepts GET and POST.",
                );
                r.headers_mut().insert(
                    http::header::ALLOW,
                    http::HeaderValue::from_static("GET, POST"),
                );
                r
            }
        }
    }

    async fn add(&self, body: &Bytes, caller: &Identity) -> AdminResponse {
        let Ok(a) = serde_json::from_slice::<AddRevocation>(body) else {
            return admin_problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Expected {\"kind\": \"jti|subject|cert|apikey\", \"value\": \"…\", \"until\": unix seconds, \"reason\": \"…\"}.",
            );
        };
        let Some(kind) = RevocationKind::parse(&a.kind) else {
            return admin_problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "kind must be one of jti, subject, cert, apikey.",
            );
        };
        let new = NewRevocation {
            kind,
            value: a.value,
            until: a.until,
            reason: a.reason,
        };
        match self.revocations.add_and_publish(new).await {
            Ok((rec, published)) => {
                if let Some(local) = &self.local {
                    local.insert(rec.clone());
                }
                if let Some(Err(e)) = published {
                    tracing::warn!(error = %e, "revocation stored but not published to Redis");
                }
                tracing::info!(
                    admin = caller.subject.as_deref().unwrap_or(""),
                    kind = rec.kind.as_str(),
                    until = rec.until,
                    "revocation added through the admin API"
                );
                admin_json(
                    StatusCode::CREATED,
                    serde_json::to_string(&rec).unwrap_or_else(|_| "{}".into()),
                )
            }
            Err(e) if e.is_usage() => {
                admin_problem(StatusCode::BAD_REQUEST, "bad_request", &e.to_string())
            }
            Err(e) => store_failed(&e),
        }
    }
}

fn unauthenticated() -> AdminResponse {
    let mut r = admin_problem(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Valid credentials are required to access this route.",
    );
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"rampart-admin\""),
    );
    r
}

fn store_failed(e: &rampart_store::StoreError) -> AdminResponse {
    tracing::error!(error = %e, "admin API: credential store failed");
    admin_problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The credential store could not be reached.",
    )
}

impl AdminApi for Api {
    fn call(
        &self,
        req: Request<Bytes>,
        peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = AdminResponse> + Send>> {
        let this = Arc::clone(&self.0);
        Box::pin(async move { this.handle(req, peer).await })
    }
}
