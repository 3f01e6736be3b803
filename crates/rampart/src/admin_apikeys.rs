//! `/admin/apikeys`: list keys (metadata only), read one, create one (the answer carries
//! the new key, once), revoke one.
//!
//! Guards against: a key or its hash leaving the store (listings are the metadata of
//! `rampart apikey list --format json`; only the `201` of a create carries the key, with
//! `Cache-Control: no-store`, and the log names the key's id, never the key); a revoked
//! key still working (this node refuses it before the answer; other nodes through Redis,
//! else store polling within 5 s). A created key works on every node once its store poll
//! brings it (within 5 s), like one made by the CLI. Trusts: the router (`admin_api`) for
//! authentication, the store for validating names, tenants, scopes and roles.

use std::sync::Arc;

use http::{Method, StatusCode};
use rampart_admin::{AdminResponse, admin_problem};
use rampart_store::{ApiKeyRecord, NewApiKey, RateLimitOverride, when};

use crate::admin_api::{Call, Ctx, Route, json, store_failed};
use crate::apikey::record_json;

/// The latest expiry accepted (9999-12-31T23:59:59Z): later ones have no RFC 3339 form.
const MAX_EXPIRES: i64 = 253_402_300_799;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::admin(Method::GET, "/admin/apikeys", |cx, _| Box::pin(list(cx))),
        Route::admin(Method::POST, "/admin/apikeys", |cx, call| {
            Box::pin(create(cx, call))
        }),
        Route::admin(Method::GET, "/admin/apikeys/{id}", |cx, call| {
            Box::pin(get(cx, call))
        }),
        Route::admin(Method::POST, "/admin/apikeys/{id}/revoke", |cx, call| {
            Box::pin(revoke(cx, call))
        }),
    ]
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    tenant: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// Unix seconds, or a string: RFC 3339 or a duration (`90d`); absent or null = never.
    #[serde(default)]
    expires: Option<Expires>,
    #[serde(default)]
    rate_limit: Option<RateLimitIn>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Expires {
    Unix(i64),
    Text(String),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitIn {
    #[serde(default)]
    per_minute: Option<u64>,
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    tier: Option<String>,
}

const CREATE_HINT: &str = "Expected {\"name\": \"…\", \"tenant\": \"…\", \"scopes\": [\"…\"], \"roles\": [\"…\"], \"expires\": unix seconds | \"RFC 3339\" | \"90d\", \"rate_limit\": {\"per_minute\": n, \"burst\": n, \"tier\": \"…\"}}.";

fn not_found() -> AdminResponse {
    admin_problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "No API key with this id.",
    )
}

async fn find(cx: &Ctx, id: &str) -> Result<Option<ApiKeyRecord>, AdminResponse> {
    if !rampart_store::key::is_key_id(id) {
        return Ok(None);
    }
    match rampart_store::list_api_keys(&cx.store).await {
        Ok(rows) => Ok(rows.into_iter().find(|r| r.id == id)),
        Err(e) => Err(store_failed(&e)),
    }
}

async fn list(cx: Arc<Ctx>) -> AdminResponse {
    match rampart_store::list_api_keys(&cx.store).await {
        Ok(rows) => {
            let keys: Vec<serde_json::Value> = rows.iter().map(record_json).collect();
            json(StatusCode::OK, &serde_json::json!({ "apikeys": keys }))
        }
        Err(e) => store_failed(&e),
    }
}

async fn get(cx: Arc<Ctx>, call: Call) -> AdminResponse {
    match find(&cx, call.param("id")).await {
        Ok(Some(r)) => json(StatusCode::OK, &record_json(&r)),
        Ok(None) => not_found(),
        Err(r) => r,
    }
}

async fn create(cx: Arc<Ctx>, call: Call) -> AdminResponse {
    let c: CreateKey = match call.json(CREATE_HINT) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let keys = match &cx.api_keys {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "admin API: cannot create API keys");
            return admin_problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "apikeys_unavailable",
                "This gateway cannot create API keys: auth.api_key.pepper is not set.",
            );
        }
    };
    let now = when::now_unix();
    let expires = match c.expires {
        None => None,
        Some(Expires::Unix(t)) if t > now && t <= MAX_EXPIRES => Some(t),
        Some(Expires::Text(s)) => match when::parse_until(&s, now) {
            Ok(t) if t <= MAX_EXPIRES => Some(t),
            _ => return bad_expiry(),
        },
        Some(Expires::Unix(_)) => return bad_expiry(),
    };
    let rl = c.rate_limit.unwrap_or(RateLimitIn {
        per_minute: None,
        burst: None,
        tier: None,
    });
    let req = NewApiKey {
        name: c.name,
        tenant: c.tenant,
        scopes: c.scopes,
        roles: c.roles,
        expires,
        rate_limit: RateLimitOverride {
            per_minute: rl.per_minute,
            burst: rl.burst,
            tier: rl.tier,
        },
    };
    match keys.create(req).await {
        Ok((rec, secret)) => {
            tracing::info!(
                admin = call.admin(),
                id = rec.id.as_str(),
                tenant = rec.tenant.as_str(),
                "API key created through the admin API"
            );
            let mut v = record_json(&rec);
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "key".into(),
                    serde_json::Value::String(secret.expose().to_owned()),
                );
            }
            let r = json(StatusCode::CREATED, &v);
            // The JSON text holding the key is inside the response now; wipe our copy.
            if let Some(serde_json::Value::String(k)) =
                v.as_object_mut().and_then(|o| o.remove("key"))
            {
                zeroize::Zeroize::zeroize(&mut k.into_bytes());
            }
            r
        }
        Err(e) => store_failed(&e),
    }
}

fn bad_expiry() -> AdminResponse {
    admin_problem(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "expires must lie in the future (before year 10000): Unix seconds, an RFC 3339 time or a duration such as 90d.",
    )
}

async fn revoke(cx: Arc<Ctx>, call: Call) -> AdminResponse {
    let id = call.param("id");
    if !rampart_store::key::is_key_id(id) {
        return not_found();
    }
    match cx.revocations.revoke_api_key(id).await {
        Ok(Some((rev, published))) => {
            if let Some(local) = &cx.local {
                local.insert(rev);
            }
            if let Some(Err(e)) = published {
                tracing::warn!(error = %e, "API key revocation stored but not published to Redis");
            }
            tracing::info!(
                admin = call.admin(),
                id,
                "API key revoked through the admin API"
            );
            match find(&cx, id).await {
                Ok(Some(r)) => json(StatusCode::OK, &record_json(&r)),
                Ok(None) => not_found(),
                Err(r) => r,
            }
        }
        Ok(None) => not_found(),
        Err(e) => store_failed(&e),
    }
}
