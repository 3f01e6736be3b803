//! Micro-benchmarks of the request path without sockets: the path normalizer, the router
//! and the whole stage stack from security headers to the body limit, in front of an
//! inner service that answers at once. `cargo bench -p rampart-http`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::future::Ready;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response};
use http_body_util::Empty;
use rampart_config::RouteConfig;
use rampart_http::{
    AuthorizeLayer, Authorized, BodyLimitLayer, ClientAddrLayer, ConnInfo, GatewayMetrics,
    HostLayer, LimitedBody, RequestIdLayer, Resp, RouteLayer, Router, SanitizeLayer,
    SecurityHeadersLayer, TimeoutLayer, empty, path,
};
use tower_layer::Layer;
use tower_service::Service;

#[derive(Clone)]
struct Answer;

impl Service<Authorized<LimitedBody<Empty<Bytes>>>> for Answer {
    type Response = Resp;
    type Error = Infallible;
    type Future = Ready<Result<Resp, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Authorized<LimitedBody<Empty<Bytes>>>) -> Self::Future {
        std::future::ready(Ok(Response::new(empty())))
    }
}

/// Every bench route is public; anything else is refused.
#[derive(Debug)]
struct PublicOnly;

impl rampart_http::RoutePolicy for PublicOnly {
    fn check(
        &self,
        _: &rampart_http::Identity,
        route: &rampart_http::Route,
        _: &rampart_http::Params,
    ) -> Result<rampart_http::Grant, &'static str> {
        if route.config.public {
            Ok(rampart_http::Grant::default())
        } else {
            Err("not_public")
        }
    }
}

fn route(id: &str, path: &str) -> RouteConfig {
    RouteConfig {
        id: id.into(),
        path: path.into(),
        methods: vec![Method::GET],
        upstream: "app".into(),
        public: true,
        max_body_bytes: None,
        tier: None,
        scopes: vec![],
        any_scopes: vec![],
        allow_path_params: false,
        allow_fragment: false,
        allow_wildcard: false,
        cors: None,
        csrf: None,
        identity_assertion: false,
    }
}

fn routes() -> Vec<RouteConfig> {
    vec![
        route("discover", "/api/discover"),
        route("jobs", "/tenants/{tenant}/jobs"),
        route("status", "/status"),
        route("all", "/"),
    ]
}

fn bench(c: &mut Criterion) {
    c.bench_function("normalize/clean", |b| {
        b.iter(|| path::normalize(std::hint::black_box("/tenants/acme/jobs/42")))
    });
    c.bench_function("normalize/dirty", |b| {
        b.iter(|| path::normalize(std::hint::black_box("//tenants/./acme/%6Aobs/../jobs/42")))
    });
    let metrics = GatewayMetrics::new();
    let router = Arc::new(Router::new(&routes(), &metrics));
    c.bench_function("router/param", |b| {
        b.iter(|| router.route(std::hint::black_box("/tenants/acme/jobs/42"), &Method::GET))
    });

    let svc = BodyLimitLayer::new(1 << 20).layer(Answer);
    let svc = AuthorizeLayer::new(Arc::new(PublicOnly)).layer(svc);
    let svc = ClientAddrLayer::new(vec![]).layer(svc);
    let svc = RouteLayer::new(Arc::clone(&router)).layer(svc);
    let svc = HostLayer::new(vec!["api.example.com".into()]).layer(svc);
    let svc = TimeoutLayer::new(Duration::from_secs(30)).layer(svc);
    let svc = SanitizeLayer::new(16384, vec![], vec![]).layer(svc);
    let svc = RequestIdLayer::new(vec![]).layer(svc);
    let headers = rampart_config::load_from_strs(
        &[(
            "bench.toml",
            "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n",
        )],
        &[],
    )
    .unwrap()
    .headers;
    let svc = SecurityHeadersLayer::new(&headers, vec![]).layer(svc);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    c.bench_function("stages/allow", |b| {
        b.iter(|| {
            let mut req = Request::get("/tenants/acme/jobs/42?x=1")
                .header("host", "api.example.com")
                .header("user-agent", "bench/1")
                .header("accept", "*/*")
                .body(Empty::<Bytes>::new())
                .unwrap();
            req.extensions_mut().insert(ConnInfo {
                write_stalled: None,
                peer,
                local: peer,
                tls: None,
            });
            let mut s = svc.clone();
            rt.block_on(async move { s.call(req).await }).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
