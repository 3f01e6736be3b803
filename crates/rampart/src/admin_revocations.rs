//! `/admin/revocations`: list the entries in force, add one.
//!
//! Guards against: a revocation the running gateways ignore (this node's snapshot is
//! updated before the answer; other nodes get it through Redis when configured, else by
//! store polling within 5 s). Trusts: the router (`admin_api`) for authentication.
//!
//! No `DELETE`: nothing is ever un-revoked. The sync between gateways (Redis messages,
//! store polling by change counter) carries additions only, so a deletion could not reach
//! the snapshots that already hold the entry and the API would claim an effect it does
//! not have. An entry lapses at its `until` time; a mistaken one is given a short `until`
//! only by the store's owner.

use std::sync::Arc;

use http::{Method, StatusCode};
use rampart_admin::AdminResponse;
use rampart_store::{NewRevocation, RevocationKind};

use crate::admin_api::{Call, Ctx, Route, json, store_failed};

pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::admin(Method::GET, "/admin/revocations", |cx, _| {
            Box::pin(list(cx))
        }),
        Route::admin(Method::POST, "/admin/revocations", |cx, call| {
            Box::pin(add(cx, call))
        }),
    ]
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRevocation {
    /// `jti`, `subject`, `cert` (fingerprint) or `apikey`.
    kind: String,
    value: String,
    /// Unix seconds at which the entry lapses; absent or null = never.
    #[serde(default)]
    until: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

async fn list(cx: Arc<Ctx>) -> AdminResponse {
    match cx.revocations.list().await {
        Ok(list) => json(StatusCode::OK, &serde_json::json!({ "revocations": list })),
        Err(e) => store_failed(&e),
    }
}

async fn add(cx: Arc<Ctx>, call: Call) -> AdminResponse {
    let a: AddRevocation = match call.json(
        "Expected {\"kind\": \"jti|subject|cert|apikey\", \"value\": \"…\", \"until\": unix seconds, \"reason\": \"…\"}.",
    ) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let Some(kind) = RevocationKind::parse(&a.kind) else {
        return rampart_admin::admin_problem(
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
    match cx.revocations.add_and_publish(new).await {
        Ok((rec, published)) => {
            if let Some(local) = &cx.local {
                local.insert(rec.clone());
            }
            if let Some(Err(e)) = published {
                tracing::warn!(error = %e, "revocation stored but not published to Redis");
            }
            tracing::info!(
                admin = call.admin(),
                kind = rec.kind.as_str(),
                until = rec.until,
                "revocation added through the admin API"
            );
            json(StatusCode::CREATED, &rec)
        }
        Err(e) => store_failed(&e),
    }
}
