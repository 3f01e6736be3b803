//! `/admin/devices` on the admin listener: list, create, rotate and revoke the devices of
//! the `signature` mode (the same operations as `rampart device …`).
//!
//! Guards against: callers without the admin scope (the caller is checked by
//! `admin_api` with the same rule as `/admin/revocations` before anything here runs);
//! secrets in listings (a new HMAC secret is returned once, in the answer to the create
//! or rotate that made it, with `Cache-Control: no-store`, never again); oversized or
//! malformed bodies (the admin listener caps bodies; strict JSON with known members only);
//! private keys sent as public ones (refused). Trusts: the credential store and the vault.
//!
//! Changes reach every gateway sharing the store within 5 s (the device sync polls the
//! store's change counter). Every change is logged with the caller's subject.
//!
//! | request | answer |
//! |---|---|
//! | `GET /admin/devices` | 200 `{"devices": [DEVICE, …]}` |
//! | `GET /admin/devices/{name}` | 200 `DEVICE`, 404 |
//! | `POST /admin/devices` `{"name","tenant","scopes":[…],"roles":[…],"alg":"hmac-sha256"\|"ed25519","public_key":"ssh-ed25519 …"\|PEM,"rate_limit":{"per_minute","burst","tier"}}` | 201 `DEVICE` (+ `"secret"` for HMAC), 400, 409 |
//! | `POST /admin/devices/{name}/rotate` `{"public_key":…,"overlap_s":86400}` | 200 `DEVICE` (+ `"secret"` for HMAC), 400, 404 |
//! | `POST /admin/devices/{name}/revoke` | 200 `DEVICE`, 404 |
//!
//! `DEVICE` is the JSON of `rampart device list --format json`.

use std::sync::Arc;

use crate::admin_api::{BoxFut, Call, Ctx, Route};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use rampart_admin::{AdminResponse, admin_json, admin_problem};
use rampart_config::Config;
use rampart_crypto::Kms;
use rampart_http::Identity;
use rampart_store::{
    DeviceAlg, DeviceRecord, DeviceSecret, Devices, NewDevice, RateLimitOverride, Store,
    StoreError, Vault,
};

/// The operations of this resource for the admin router (which checks the caller and
/// the method first); [`DevicesApi::handle`] tells them apart by path and method.
pub(crate) fn routes() -> Vec<Route> {
    fn h(cx: Arc<Ctx>, call: Call) -> BoxFut {
        Box::pin(async move {
            if call.req.method() == Method::POST
                && !call.req.uri().path().ends_with("/revoke")
                && let Err(r) = call.json_or_empty()
            {
                return *r;
            }
            cx.devices.handle(&call.req, &call.caller).await
        })
    }
    vec![
        Route::admin(Method::GET, "/admin/devices", h),
        Route::admin(Method::POST, "/admin/devices", h),
        Route::admin(Method::GET, "/admin/devices/{name}", h),
        Route::admin(Method::POST, "/admin/devices/{name}/rotate", h),
        Route::admin(Method::POST, "/admin/devices/{name}/revoke", h),
    ]
}

/// The devices API of one admin listener.
pub struct DevicesApi {
    store: Store,
    kms: Option<Arc<dyn Kms>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitJson {
    #[serde(default)]
    per_minute: Option<u64>,
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    tier: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJson {
    name: String,
    tenant: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    alg: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    rate_limit: Option<RateLimitJson>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateJson {
    #[serde(default)]
    public_key: Option<String>,
    /// Seconds the previous credential stays valid; default 24 h.
    #[serde(default)]
    overlap_s: Option<i64>,
}

fn bad(detail: &str) -> AdminResponse {
    admin_problem(StatusCode::BAD_REQUEST, "bad_request", detail)
}

fn not_found() -> AdminResponse {
    admin_problem(StatusCode::NOT_FOUND, "not_found", "No such device.")
}

fn failed(e: &StoreError) -> AdminResponse {
    if e.is_usage() {
        return bad(&e.to_string());
    }
    tracing::error!(error = %e, "admin API: credential store failed");
    admin_problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The credential store could not be reached.",
    )
}

fn public_key(text: Option<&str>) -> Result<Option<[u8; 32]>, String> {
    match text {
        None => Ok(None),
        Some(t) if t.contains("PRIVATE KEY") => {
            Err("public_key holds a private key; send the public key only".into())
        }
        Some(t) => crate::device::public_key_from_text(t)
            .map(Some)
            .map_err(|m| format!("public_key: {m}")),
    }
}

fn answer(status: StatusCode, rec: &DeviceRecord, secret: Option<&DeviceSecret>) -> AdminResponse {
    let mut v = crate::device::record_json(rec);
    if let (Some(o), Some(s)) = (v.as_object_mut(), secret) {
        o.insert(
            "secret".into(),
            serde_json::Value::String(s.expose().to_owned()),
        );
    }
    let mut r = admin_json(status, v.to_string());
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

impl DevicesApi {
    pub fn new(cfg: &Config, store: Store) -> DevicesApi {
        let kms = crate::crypto::kms_from_config(cfg).ok().flatten();
        DevicesApi { store, kms }
    }

    async fn vault(&self) -> Result<Option<Vault>, StoreError> {
        let Some(k) = &self.kms else { return Ok(None) };
        Vault::open(self.store.clone(), Arc::clone(k), true)
            .await
            .map(Some)
    }

    pub async fn handle(&self, req: &Request<Bytes>, caller: &Identity) -> AdminResponse {
        let path = req.uri().path();
        let rest = path
            .strip_prefix("/admin/devices")
            .unwrap_or("")
            .trim_start_matches('/');
        let mut parts = rest.split('/');
        let (name, action) = (parts.next().unwrap_or(""), parts.next());
        if parts.next().is_some() {
            return not_found();
        }
        let admin = caller.subject.as_deref().unwrap_or("");
        match (req.method(), name, action) {
            (&Method::GET, "", None) => match Devices::new(&self.store, None).list().await {
                Ok(list) => {
                    let v: Vec<serde_json::Value> =
                        list.iter().map(crate::device::record_json).collect();
                    admin_json(
                        StatusCode::OK,
                        serde_json::json!({ "devices": v }).to_string(),
                    )
                }
                Err(e) => failed(&e),
            },
            (&Method::GET, n, None) => match Devices::new(&self.store, None).get(n).await {
                Ok(Some(r)) => answer(StatusCode::OK, &r, None),
                Ok(None) => not_found(),
                Err(e) => failed(&e),
            },
            (&Method::POST, "", None) => self.create(req.body(), admin).await,
            (&Method::POST, n, Some("rotate")) => self.rotate(n, req.body(), admin).await,
            (&Method::POST, n, Some("revoke")) => {
                match Devices::new(&self.store, None).revoke(n).await {
                    Ok(Some(r)) => {
                        tracing::info!(admin, device = %r.name, "device revoked through the admin API");
                        answer(StatusCode::OK, &r, None)
                    }
                    Ok(None) => not_found(),
                    Err(e) => failed(&e),
                }
            }
            _ => {
                let mut r = admin_problem(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "Use GET /admin/devices[/NAME], POST /admin/devices, POST /admin/devices/NAME/rotate or /revoke.",
                );
                r.headers_mut().insert(
                    http::header::ALLOW,
                    http::HeaderValue::from_static("GET, POST"),
                );
                r
            }
        }
    }

    async fn create(&self, body: &Bytes, admin: &str) -> AdminResponse {
        let Ok(c) = serde_json::from_slice::<CreateJson>(body) else {
            return bad(
                "Expected {\"name\", \"tenant\", \"scopes\": [..], \"roles\": [..], \"alg\": \"hmac-sha256|ed25519\", \"public_key\": \"ssh-ed25519 ..|PEM\"}.",
            );
        };
        let Some(alg) = DeviceAlg::parse(&c.alg) else {
            return bad("alg must be hmac-sha256 or ed25519.");
        };
        let key = match public_key(c.public_key.as_deref()) {
            Ok(k) => k,
            Err(m) => return bad(&m),
        };
        let vault = if alg == DeviceAlg::HmacSha256 {
            match self.vault().await {
                Ok(Some(v)) => Some(v),
                Ok(None) => {
                    return bad(
                        "crypto.kek is not set on this gateway: an hmac-sha256 device's secret is stored only encrypted; use ed25519 or configure crypto.kek.",
                    );
                }
                Err(e) => return failed(&e),
            }
        } else {
            None
        };
        let rl = c.rate_limit.unwrap_or(RateLimitJson {
            per_minute: None,
            burst: None,
            tier: None,
        });
        let new = NewDevice {
            name: c.name,
            tenant: c.tenant,
            scopes: c.scopes,
            roles: c.roles,
            alg,
            public_key: key,
            rate_limit: RateLimitOverride {
                per_minute: rl.per_minute,
                burst: rl.burst,
                tier: rl.tier,
            },
        };
        let name = new.name.clone();
        match Devices::new(&self.store, vault.as_ref()).create(new).await {
            Ok((rec, secret)) => {
                tracing::info!(admin, device = %rec.name, alg = rec.alg.as_str(), "device created through the admin API");
                answer(StatusCode::CREATED, &rec, secret.as_ref())
            }
            Err(StoreError::Invalid(m)) if m.contains("already exists") => admin_problem(
                StatusCode::CONFLICT,
                "conflict",
                &format!("A device named `{name}` already exists."),
            ),
            Err(e) => failed(&e),
        }
    }

    async fn rotate(&self, name: &str, body: &Bytes, admin: &str) -> AdminResponse {
        let r: RotateJson = if body.is_empty() {
            RotateJson::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(_) => return bad("Expected {\"public_key\": \"..\", \"overlap_s\": seconds}."),
            }
        };
        let key = match public_key(r.public_key.as_deref()) {
            Ok(k) => k,
            Err(m) => return bad(&m),
        };
        let vault = if key.is_none() {
            match self.vault().await {
                Ok(v) => v,
                Err(e) => return failed(&e),
            }
        } else {
            None
        };
        let overlap = r.overlap_s.unwrap_or(86_400);
        match Devices::new(&self.store, vault.as_ref())
            .rotate(name, key, overlap)
            .await
        {
            Ok(Some((rec, secret))) => {
                tracing::info!(admin, device = %rec.name, overlap_s = overlap, "device rotated through the admin API");
                answer(StatusCode::OK, &rec, secret.as_ref())
            }
            Ok(None) => not_found(),
            Err(StoreError::Config(_)) => bad(
                "crypto.kek is not set on this gateway: an hmac-sha256 device's secret is stored only encrypted.",
            ),
            Err(e) => failed(&e),
        }
    }
}
