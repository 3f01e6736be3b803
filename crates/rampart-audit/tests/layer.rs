//! The audit stage around a service: one record per response, and when the record
//! cannot be written (a full disk, injected) `deny` answers 503 `audit_unavailable`
//! while `allow` serves and counts; either way no response claims a record it lacks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::convert::Infallible;
use std::future::Ready;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use rampart_audit::{AuditHandle, AuditLayer, LayerSettings};
use rampart_config::raw::OnFailure;
use rampart_http::{GatewayMetrics, Identity, Resp, full};
use tower_layer::Layer;
use tower_service::Service;

#[derive(Clone)]
struct App;

impl Service<Request<()>> for App {
    type Response = Resp;
    type Error = Infallible;
    type Future = Ready<Result<Resp, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<()>) -> Self::Future {
        let mut r = Response::new(full(bytes::Bytes::from_static(b"hello")));
        r.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("rid-1"));
        r.headers_mut()
            .insert("x-frame-options", HeaderValue::from_static("DENY"));
        if req.uri().path() == "/me" {
            r.extensions_mut().insert(std::sync::Arc::new(Identity {
                method: "jwt",
                subject: Some("alice@example.com".into()),
                tenant: Some("acme".into()),
                scopes: vec![],
                roles: vec![],
                credential_id: None,
                rate_override: None,
            }));
        }
        std::future::ready(Ok(r))
    }
}

fn settings(on_failure: OnFailure, key: Option<&[u8]>) -> LayerSettings {
    LayerSettings {
        on_failure,
        redact_query_params: vec!["token".into()],
        pseudonymize_key: key.map(|k| std::sync::Arc::new(zeroize::Zeroizing::new(k.to_vec()))),
        timeout: Duration::from_secs(2),
    }
}

fn req(path: &str) -> Request<()> {
    Request::builder().uri(path).body(()).unwrap()
}

async fn run(on_failure: OnFailure) -> (u64, u64, Log, std::sync::Arc<GatewayMetrics>) {
    let l = Log::new();
    let mut cfg = l.config();
    cfg.fault = Some(rampart_audit::danger::FaultInjection {
        fail_after_bytes: 12_000,
        ..Default::default()
    });
    let m = GatewayMetrics::new();
    let (h, _) = AuditHandle::start(cfg, l.keyring(), m.clone()).unwrap();
    let mut svc = AuditLayer::new(h.clone(), settings(on_failure, None), m.clone()).layer(App);
    let (mut ok, mut unavailable) = (0, 0);
    for i in 0..100 {
        let r = svc
            .call(req(&format!("/x?i={i}&token=SECRET")))
            .await
            .unwrap();
        match r.status() {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                unavailable += 1;
                assert_eq!(r.headers()["content-type"], "application/problem+json");
                assert_eq!(r.headers()["x-request-id"], "rid-1");
                assert_eq!(
                    r.headers()["x-frame-options"],
                    "DENY",
                    "security headers kept"
                );
                let body = r.into_body().collect().await.unwrap().to_bytes();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["code"], "audit_unavailable");
                assert_eq!(v["request_id"], "rid-1");
            }
            s => panic!("{s}"),
        }
    }
    assert!(h.is_failing());
    tokio::task::spawn_blocking(move || h.shutdown().unwrap())
        .await
        .unwrap();
    (ok, unavailable, l, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_answers_503_once_records_cannot_be_written() {
    let (ok, unavailable, l, m) = run(OnFailure::Deny).await;
    assert!(ok > 5 && unavailable > 5, "ok {ok} 503 {unavailable}");
    let r = l.verify().unwrap();
    assert_eq!(
        r.records, ok,
        "every served response has its record, no more"
    );
    assert_eq!(m.audit.denied.load(Ordering::Relaxed), unavailable);
    assert_eq!(m.audit.failed.load(Ordering::Relaxed), unavailable);
    let text = std::fs::read_to_string(&l.segments()[0].path).unwrap();
    assert!(!text.contains("SECRET") && text.contains("token=REDACTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_serves_counts_and_flags() {
    let (ok, unavailable, l, m) = run(OnFailure::Allow).await;
    assert_eq!((ok, unavailable), (100, 0));
    let r = l.verify().unwrap();
    let unaudited = m.audit.unaudited.load(Ordering::Relaxed);
    assert!(unaudited > 5);
    assert_eq!(r.records + unaudited, 100);
    let mut out = String::new();
    m.encode(&mut out);
    assert!(
        out.contains(&format!("rampart_audit_unaudited_total {unaudited}")),
        "{out}"
    );
    assert!(out.contains(&format!(
        "rampart_audit_records_total{{result=\"written\"}} {}",
        r.records
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_recorded_and_pseudonymized() {
    let l = Log::new();
    let m = GatewayMetrics::new();
    let (h, _) = AuditHandle::start(l.config(), l.keyring(), m.clone()).unwrap();
    let key = [7u8; 32];
    let mut svc = AuditLayer::new(h.clone(), settings(OnFailure::Deny, Some(&key)), m).layer(App);
    assert_eq!(svc.call(req("/me")).await.unwrap().status(), 200);
    assert_eq!(svc.call(req("/anon")).await.unwrap().status(), 200);
    tokio::task::spawn_blocking(move || h.shutdown().unwrap())
        .await
        .unwrap();
    let ls = lines(&l.segments()[0].path);
    let me: serde_json::Value = serde_json::from_str(&ls[0]).unwrap();
    assert_eq!(me["auth"], "jwt");
    assert_eq!(me["tenant"], "acme");
    assert_eq!(
        me["subject"],
        rampart_audit::layer::pseudonymize(&key, "subject", "alice@example.com").as_str()
    );
    assert!(!ls[0].contains("alice"));
    let anon: serde_json::Value = serde_json::from_str(&ls[1]).unwrap();
    assert_eq!(anon["auth"], "none");
    assert!(anon["subject"].is_null());
}
