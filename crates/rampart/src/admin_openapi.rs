//! `GET /admin/openapi.json`: the OpenAPI 3.1 document of the admin API, kept as
//! `admin_openapi.json` beside this file and adapted at start to the gateway's auth modes
//! (a security scheme per mode the admin API accepts, with the configured header names).
//!
//! Served without authentication: it describes shapes and holds no data (no key, no
//! tenant, no subject), everything in it is in the public README, and client generators
//! and API testers fetch specifications before they hold credentials. The admin listener
//! itself stays operator-only (loopback by default). Guards against: a document that
//! drifts from the router (a unit test compares both ways). Trusts: the file in the build.

use http::{Method, StatusCode};
use rampart_admin::admin_json;
use rampart_config::Config;
use rampart_config::raw::AuthMode;
use serde_json::{Value, json};

use crate::admin_api::Route;

/// The document as written (before adaptation).
pub(crate) const DOCUMENT: &str = include_str!("admin_openapi.json");

pub(crate) fn routes() -> Vec<Route> {
    vec![Route {
        method: Method::GET,
        path: "/admin/openapi.json",
        public: true,
        handler: |cx, _| {
            let doc = cx.openapi.clone();
            Box::pin(async move { admin_json(StatusCode::OK, doc) })
        },
    }]
}

/// The document for this configuration: only the schemes of the enabled modes (`jwt`,
/// `api_key`, `signature`), with the configured header names. Without any of them the
/// admin API accepts no caller (the
/// admin listener has no TLS, so `mtls` cannot reach it); the document then keeps both
/// schemes as the shape a caller would need.
pub(crate) fn document(cfg: &Config) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(DOCUMENT) else {
        return DOCUMENT.to_owned();
    };
    let auth = cfg.later.auth.clone().unwrap_or_default();
    let modes = auth.modes.clone().unwrap_or_default();
    let mut schemes = serde_json::Map::new();
    if modes.contains(&AuthMode::Jwt) {
        let jwt = auth.jwt.clone().unwrap_or_default();
        let header = jwt
            .header
            .as_deref()
            .unwrap_or("authorization")
            .to_ascii_lowercase();
        let prefix = jwt.bearer_prefix.as_deref().unwrap_or("Bearer ");
        let scheme = if header == "authorization" && prefix.trim().eq_ignore_ascii_case("bearer") {
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "A JWT accepted by `[auth.jwt]` (auth mode `jwt`)."})
        } else {
            json!({"type": "apiKey", "in": "header", "name": header,
                   "description": format!("A JWT accepted by `[auth.jwt]` (auth mode `jwt`), written `{prefix}<token>`.")})
        };
        schemes.insert("bearerAuth".into(), scheme);
    }
    if modes.contains(&AuthMode::ApiKey) {
        let header = auth
            .api_key
            .as_ref()
            .and_then(|k| k.header.as_deref())
            .unwrap_or("x-api-key")
            .to_ascii_lowercase();
        schemes.insert(
            "apiKeyAuth".into(),
            json!({"type": "apiKey", "in": "header", "name": header,
                   "description": "A rampart API key `rpk_…` (auth mode `api_key`)."}),
        );
    }
    if modes.contains(&AuthMode::Signature) {
        schemes.insert(
            "signatureAuth".into(),
            json!({"type": "apiKey", "in": "header", "name": "signature",
                   "description": "A device's RFC 9421 signed request (auth mode `signature`): `Signature` and `Signature-Input` covering `@method`, `@target-uri` (this listener's) and, with a body, `content-digest` (RFC 9530), with `created`, `nonce` and `keyid` (the device name)."}),
        );
    }
    if !schemes.is_empty() {
        let security: Vec<Value> = schemes.keys().map(|k| json!({ k.clone(): [] })).collect();
        if let Some(o) = doc.as_object_mut() {
            o.insert("security".into(), Value::Array(security));
        }
        if let Some(c) = doc.pointer_mut("/components/securitySchemes") {
            *c = Value::Object(schemes);
        }
    }
    doc.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::admin_api::all_routes;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    #[test]
    fn document_and_router_agree() {
        let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let routes = all_routes();
        for r in &routes {
            let op = &paths
                .get(r.path)
                .unwrap_or_else(|| panic!("{} is not in admin_openapi.json", r.path))
                [r.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} is not documented", r.method, r.path);
            // Public exactly when the document says so.
            let open = op["security"].as_array().is_some_and(Vec::is_empty);
            assert_eq!(open, r.public, "{} {}: security", r.method, r.path);
            // Every authenticated operation documents the refusals the router makes.
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("413"),
                "{} {}: 413",
                r.method,
                r.path
            );
            if !r.public {
                for s in ["401", "403", "503"] {
                    assert!(responses.contains_key(s), "{} {}: {s}", r.method, r.path);
                }
            }
            if r.path.contains('{') {
                assert!(
                    responses.contains_key("404"),
                    "{} {}: 404",
                    r.method,
                    r.path
                );
            }
            if op.get("requestBody").is_some() {
                for s in ["400", "415"] {
                    assert!(responses.contains_key(s), "{} {}: {s}", r.method, r.path);
                }
            }
        }
        for (path, item) in paths {
            for (k, _) in item.as_object().unwrap() {
                if !METHODS.contains(&k.as_str()) {
                    continue;
                }
                assert!(
                    routes
                        .iter()
                        .any(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(k)),
                    "{k} {path} is documented but not routed"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        let ptr = r.strip_prefix('#').unwrap();
                        assert!(doc.pointer(ptr).is_some(), "dangling {r}");
                    }
                    o.values().for_each(|x| walk(x, doc));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
        walk(&doc, &doc);
    }

    fn config(auth: &str) -> Config {
        let text = format!(
            "profile = \"dev\"\n[server]\nlisten = \"127.0.0.1:0\"\n{auth}\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nid = \"a\"\npath = \"/a\"\nupstream = \"app\"\npublic = true\n"
        );
        rampart_config::load_from_strs(
            &[("t.toml", &text)],
            &[("SECRET".into(), "0123456789abcdef0123456789abcdef".into())],
        )
        .unwrap()
    }

    #[test]
    fn schemes_follow_the_auth_modes() {
        let only_jwt: Value = serde_json::from_str(&document(&config(
            "[auth]\nmodes = [\"jwt\"]\n[auth.jwt]\nhs256_secret = \"env:SECRET\"\nissuer = \"i\"\naudience = [\"a\"]",
        )))
        .unwrap();
        let s = only_jwt["components"]["securitySchemes"]
            .as_object()
            .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s["bearerAuth"]["scheme"], "bearer");
        assert_eq!(only_jwt["security"], json!([{"bearerAuth": []}]));

        let keys: Value = serde_json::from_str(&document(&config(
            "[auth]\nmodes = [\"api_key\", \"jwt\"]\n[auth.api_key]\nheader = \"X-Key\"\n[auth.jwt]\nheader = \"x-token\"\nbearer_prefix = \"\"",
        )))
        .unwrap();
        let s = &keys["components"]["securitySchemes"];
        assert_eq!(s["apiKeyAuth"]["name"], "x-key");
        assert_eq!(s["bearerAuth"]["type"], "apiKey");
        assert_eq!(s["bearerAuth"]["name"], "x-token");
        assert_eq!(keys["security"].as_array().unwrap().len(), 2);

        let signed: Value =
            serde_json::from_str(&document(&config("[auth]\nmodes = [\"signature\"]"))).unwrap();
        let s = signed["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s["signatureAuth"]["name"], "signature");
        assert_eq!(signed["security"], json!([{"signatureAuth": []}]));
    }
}
