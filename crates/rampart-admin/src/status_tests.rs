#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use rampart_http::{Decision, GatewayMetrics};

use super::*;
use crate::{AdminApi, Health, handle_from};

fn state() -> AdminState {
    AdminState {
        metrics: GatewayMetrics::new(),
        health: Health::new(),
        build: BuildInfo {
            version: "0.1.0",
            commit: "abc",
            branch: "main",
            build_time: "2026-01-01T00:00:00Z",
        },
        sources: Vec::new(),
        api: None,
        jwks: None,
        status: Vec::new(),
    }
}

fn get(path: &str) -> http::Request<()> {
    http::Request::builder().uri(path).body(()).unwrap()
}

fn body(r: crate::AdminResponse) -> String {
    use http_body_util::BodyExt;
    let b = futures_now(r.into_body().collect()).unwrap().to_bytes();
    String::from_utf8(b.to_vec()).unwrap()
}

/// `Full` bodies are ready at once.
fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:5000".parse().unwrap()
}

#[test]
fn page_stays_bounded_with_ten_thousand_hostile_routes() {
    let s = synthetic(10_000);
    let html = render_html(&s);
    assert!(
        html.len() <= MAX_PAGE_BYTES,
        "page is {} bytes, cap {MAX_PAGE_BYTES}",
        html.len()
    );
    // Only our own script element; every hostile name is escaped.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains("alert('"));
    assert!(html.contains("&lt;script&gt;alert(&#39;"));
    assert!(html.contains(&format!(
        "{} more routes not shown",
        10_000 - MAX_ROUTE_ROWS
    )));
    assert!(html.contains(&format!(
        "{} more refusals not shown",
        MAX_REFUSALS_JSON - MAX_REFUSAL_ROWS
    )));
    assert!(html.contains(&format!("{} more reasons not shown", 1000 - MAX_ROWS)));
    // Busiest route first.
    let top = s.routes.iter().map(|r| r.requests).max().unwrap();
    let first_row = html.split("<section id=routes>").nth(1).unwrap();
    let first_num = first_row
        .split("<td class=n>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    assert_eq!(first_num, top.to_string());
}

#[test]
fn unconfigured_sections_say_so() {
    let st = state();
    let s = collect(&st);
    let html = render_html(&s);
    for id in ["rate_limit", "jwks", "audit", "signing", "revocations"] {
        let sec = html
            .split(&format!("<section id={id}>"))
            .nth(1)
            .unwrap_or_else(|| panic!("section {id}"));
        assert!(
            sec.split("</section>")
                .next()
                .unwrap()
                .contains("Not configured."),
            "{id}"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&to_json(&s)).unwrap();
    for k in [
        "config",
        "rate_limit",
        "jwks",
        "audit",
        "signing",
        "revocations",
    ] {
        assert_eq!(v[k], serde_json::json!({"configured": false}), "{k}");
    }
    assert_eq!(v["build"]["commit"], "abc");
    assert_eq!(v["health"]["status"], "ok");
}

#[test]
fn configured_sections_are_flattened_into_json() {
    let s = synthetic(3);
    let v: serde_json::Value = serde_json::from_str(&to_json(&s)).unwrap();
    assert_eq!(v["jwks"]["configured"], true);
    assert_eq!(v["jwks"]["keys"], 3);
    assert_eq!(v["audit"]["records"], 12345);
    assert_eq!(v["revocations"]["entries"], 42);
    assert_eq!(v["routes"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["refusals"]["recent"].as_array().unwrap().len(),
        MAX_REFUSALS_JSON
    );
}

#[test]
fn collects_routes_and_refusals_from_the_metrics() {
    let mut st = state();
    let id: Arc<str> = Arc::from("jobs");
    let stats = st.metrics.route_stats(&id);
    stats.record(200, Decision::Allow, Duration::from_millis(3));
    stats.record(503, Decision::Deny, Duration::from_millis(3));
    st.metrics.refusals.record(rampart_http::refusals::Refusal {
        at_unix_ms: 1,
        request_id: Some("rid-1".into()),
        route: Some(Arc::clone(&id)),
        status: 401,
        stage: "authenticate",
        reason: "missing_credentials",
    });
    st.status.push(Arc::new(|s: &mut Status| {
        s.profile = Some("dev".into());
        s.revocations = Some(RevocationsStatus { entries: 9 });
    }));
    let s = collect(&st);
    let r = s.routes.iter().find(|r| r.route == "jobs").unwrap();
    assert_eq!((r.requests, r.denied, r.server_errors), (2, 1, 1));
    assert!((r.error_rate - 0.5).abs() < 1e-9);
    assert!(r.p99_ms.unwrap() > 2.5 && r.p99_ms.unwrap() <= 5.0);
    assert_eq!(s.refusals.total, 1);
    assert_eq!(s.refusals.recent[0].reason, "missing_credentials");
    assert_eq!(s.profile.as_deref(), Some("dev"));
    let html = render_html(&s);
    assert!(html.contains("<td class=reason>missing_credentials</td>"));
    assert!(html.contains("rid-1"));
    assert!(html.contains("9 entries"));
}

#[test]
fn page_headers_and_static_assets() {
    let st = state();
    let r = handle_from(&st, &get("/"), loopback());
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-security-policy"], PAGE_CSP);
    assert!(PAGE_CSP.starts_with("default-src 'self'"));
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(body(r).contains("<section id=routes>"));
    let j = handle_from(&st, &get("/admin/status.json"), loopback());
    assert_eq!(j.headers()["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body(j)).unwrap();
    assert_eq!(v["build"]["version"], "0.1.0");
    // The stylesheet and script hold no data: no access rule.
    let far: SocketAddr = "192.0.2.7:1".parse().unwrap();
    let css = handle_from(&st, &get("/status.css"), far);
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(handle_from(&st, &get("/status.js"), far).status(), 200);
    let post = http::Request::builder()
        .method("POST")
        .uri("/")
        .body(())
        .unwrap();
    assert_eq!(handle_from(&st, &post, loopback()).status(), 405);
}

struct Refuses;
impl AdminApi for Refuses {
    fn call(
        &self,
        _req: http::Request<Bytes>,
        _peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::AdminResponse> + Send>> {
        Box::pin(async { crate::admin_problem(StatusCode::NOT_FOUND, "not_found", "x") })
    }
}

#[test]
fn access_is_loopback_only_without_admin_auth_and_the_api_rule_with_it() {
    let mut st = state();
    for (peer, code) in [
        ("127.0.0.1:1", 200),
        ("[::1]:1", 200),
        ("[::ffff:127.0.0.1]:1", 200),
        ("10.0.0.1:1", 403),
        ("[2001:db8::1]:1", 403),
    ] {
        let peer: SocketAddr = peer.parse().unwrap();
        assert_eq!(handle_from(&st, &get("/"), peer).status(), code, "{peer}");
        assert_eq!(
            handle_from(&st, &get("/admin/status.json"), peer).status(),
            code,
            "{peer}"
        );
    }
    // An admin API that does not say otherwise refuses even loopback (fail closed).
    st.api = Some(Arc::new(Refuses));
    let bytes = |p: &str| http::Request::builder().uri(p).body(Bytes::new()).unwrap();
    for p in ["/", "/admin/status.json"] {
        assert_eq!(
            futures_now(crate::answer(&st, bytes(p), loopback())).status(),
            403
        );
        // `handle_from` cannot run the API's check: it refuses too.
        assert_eq!(handle_from(&st, &get(p), loopback()).status(), 403);
    }
    // An API that admits a caller: the page is served, the API saw the whole request
    // (a signed request is checked against its body), and other peers are its business.
    st.api = Some(Arc::new(Admits));
    let mut req = bytes("/admin/status.json");
    *req.body_mut() = Bytes::from_static(b"signed body");
    let far: SocketAddr = "10.0.0.1:1".parse().unwrap();
    let r = futures_now(crate::answer(&st, req, far));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let r = futures_now(crate::answer(&st, bytes("/admin/status.json"), far));
    assert_eq!(r.status(), 401, "no body: refused by the API's rule");
    // Not the status page: the API's own endpoints and the rest as before.
    assert_eq!(
        futures_now(crate::answer(&st, bytes("/admin/devices"), far)).status(),
        404
    );
    assert_eq!(
        futures_now(crate::answer(&st, bytes("/live"), far)).status(),
        200
    );
}

/// Admits a caller whose request body is `signed body` (a stand-in for a check that
/// needs the whole request, as a signed request's does).
struct Admits;
impl AdminApi for Admits {
    fn call(
        &self,
        _req: http::Request<Bytes>,
        _peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::AdminResponse> + Send>> {
        Box::pin(async { crate::admin_problem(StatusCode::NOT_FOUND, "not_found", "x") })
    }

    fn authorize<'a>(
        &'a self,
        req: &'a mut http::Request<Bytes>,
        _peer: SocketAddr,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), Box<crate::AdminResponse>>> + Send + 'a>,
    > {
        let ok = req.body().as_ref() == b"signed body";
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(Box::new(crate::admin_problem(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "x",
                )))
            }
        })
    }
}

proptest! {
    #[test]
    fn escaped_text_has_no_markup_and_is_bounded(v in any::<String>()) {
        let mut out = String::new();
        push_escaped(&mut out, &v);
        prop_assert!(!out.contains(['<', '>', '"', '\'']));
        // Every `&` starts one of our entities.
        for (i, _) in out.match_indices('&') {
            let rest = &out[i..];
            prop_assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| rest.starts_with(e)));
        }
        prop_assert!(out.chars().count() <= MAX_TEXT * 6 + 1);
        prop_assert!(!out.chars().any(char::is_control));
    }
}
