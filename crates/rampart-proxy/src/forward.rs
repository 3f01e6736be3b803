//! The forwarding stage: sends an [`Authorized`] request to its route's upstream with the
//! spoofable headers replaced by what the gateway established, and streams the response
//! back. Bodies are streamed both ways; nothing is buffered whole.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rampart_http::body::{BodyLimitTripped, BoxError, RespBody};
use rampart_http::{
    Authorized, ClientAddr, GatewayMetrics, Reject, RequestId, Resp, X_RAMPART_AUTH,
    X_RAMPART_SCOPES, X_RAMPART_SUBJECT, X_RAMPART_TENANT, strip_hop_by_hop,
};
use tower_service::Service;

use crate::upstream::{self, HostPool, Outgoing, Pools};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The shared upstream connection pool (one per process; keeps connections across
/// configuration reloads).
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    /// https upstreams (hyper's client: rustls, ALPN).
    client: Client<Connector, RespBody>,
    /// Plain-http upstreams (`crate::upstream`: the exchange runs in the request's task).
    pools: Arc<Pools>,
    connect_timeout: Duration,
    idle: Duration,
}

impl UpstreamClient {
    /// `connect_timeout` bounds TCP connect; idle pooled connections close after `idle`.
    /// https upstreams are verified against the system's root certificates; without any,
    /// they fail to verify (logged once here), plain-http upstreams still work.
    pub fn new(connect_timeout: Duration, idle: Duration) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::clone(&provider))
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no native root certificates: https upstreams will fail to verify");
                let cfg = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(cfg)
            }
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            pools: Arc::new(Pools::default()),
            connect_timeout,
            idle,
        })
    }
}

/// Where a configured upstream lives: scheme and authority, plus an optional path prefix.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: Arc<str>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    prefix: String,
    /// Set for plain-http upstreams.
    pool: Option<Arc<HostPool>>,
}

impl Upstream {
    pub fn from_config(
        u: &rampart_config::UpstreamConfig,
        client: &UpstreamClient,
    ) -> Option<Self> {
        let scheme = u.url.scheme()?.clone();
        let authority = u.url.authority()?.clone();
        let prefix = u.url.path().trim_end_matches('/').to_owned();
        let pool = (scheme == http::uri::Scheme::HTTP).then(|| {
            client
                .pools
                .get(&authority, client.connect_timeout, client.idle)
        });
        Some(Self {
            name: Arc::from(u.name.as_str()),
            scheme,
            authority,
            prefix,
            pool,
        })
    }

    /// The upstream URI for a request's (already normalized) path and query. Without a
    /// prefix the request's `PathAndQuery` is reused as is (no copy).
    fn uri_for(&self, pq: Option<&http::uri::PathAndQuery>) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(match (pq, self.prefix.is_empty()) {
            (Some(pq), true) => pq.clone(),
            (pq, _) => {
                let tail = pq.map_or("/", http::uri::PathAndQuery::as_str);
                http::uri::PathAndQuery::try_from(format!("{}{tail}", self.prefix))?
            }
        });
        Ok(Uri::from_parts(parts)?)
    }
}

/// The innermost service.
#[derive(Clone, Debug)]
pub struct Forward {
    client: UpstreamClient,
    upstreams: Arc<BTreeMap<String, Arc<Upstream>>>,
    metrics: Arc<GatewayMetrics>,
}

impl Forward {
    pub fn new(
        client: UpstreamClient,
        upstreams: Arc<BTreeMap<String, Arc<Upstream>>>,
        metrics: Arc<GatewayMetrics>,
    ) -> Self {
        Self {
            client,
            upstreams,
            metrics,
        }
    }
}

static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

impl<B> Service<Authorized<B>> for Forward
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, a: Authorized<B>) -> Self::Future {
        let Authorized { permit, request } = a;
        let (mut parts, body) = request.into_parts();
        let request_id = parts.extensions.remove::<RequestId>();
        let tripped = parts.extensions.remove::<BodyLimitTripped>();
        let route = permit.route();
        let Some(upstream) = self.upstreams.get(&route.config.upstream).cloned() else {
            return Box::pin(std::future::ready(Ok(
                Reject::Internal.into_response(request_id.as_ref())
            )));
        };
        // The host the client asked for, for X-Forwarded-Host.
        let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let client = parts.extensions.get::<ClientAddr>().cloned();
        let h = &mut parts.headers;
        h.remove(header::HOST);
        if let Some(c) = &client {
            let mut peer = String::with_capacity(48);
            rampart_http::push_ip(&mut peer, c.peer);
            // From a trusted proxy the chain is extended; otherwise it starts here
            // (an untrusted peer's X-Forwarded-* never got past Sanitize).
            let xff = match h.get(&XFF).and_then(|v| v.to_str().ok()) {
                Some(prev) if c.peer_trusted => format!("{prev}, {peer}"),
                _ => peer,
            };
            if let Ok(v) = HeaderValue::from_str(&xff) {
                h.insert(XFF.clone(), v);
            }
            if !(c.peer_trusted && h.contains_key(&XFP)) {
                h.insert(
                    XFP.clone(),
                    HeaderValue::from_static(if c.https { "https" } else { "http" }),
                );
            }
            if !(c.peer_trusted && h.contains_key(&XFH))
                && let Some(v) = client_host
            {
                h.insert(XFH.clone(), v);
            }
        }
        let id = permit.identity();
        if let Ok(v) = HeaderValue::from_str(id.method) {
            h.insert(X_RAMPART_AUTH, v);
        }
        if let Some(v) = id
            .subject
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            h.insert(X_RAMPART_SUBJECT, v);
        }
        if let Some(v) = id
            .tenant
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            h.insert(X_RAMPART_TENANT, v);
        }
        if !id.scopes.is_empty()
            && let Ok(v) = HeaderValue::from_str(&id.scopes.join(" "))
        {
            h.insert(X_RAMPART_SCOPES, v);
        }
        let metrics = Arc::clone(&self.metrics);
        if let Some(pool) = upstream.pool.clone() {
            h.remove(header::CONTENT_LENGTH);
            h.remove(header::TRANSFER_ENCODING);
            // hyper answered the client's 100-continue when the body was first polled.
            h.remove(header::EXPECT);
            let method = parts.method;
            let headers = parts.headers;
            let target = parts.uri.path_and_query().cloned();
            return Box::pin(async move {
                let out = Outgoing {
                    method: &method,
                    target_prefix: &upstream.prefix,
                    target: target.as_ref().map_or("/", http::uri::PathAndQuery::as_str),
                    headers: &headers,
                };
                match upstream::exchange(&pool, out, body).await {
                    Ok(resp) => {
                        let (mut parts, body) = resp.into_parts();
                        strip_hop_by_hop(&mut parts.headers, &[]);
                        Ok(http::Response::from_parts(
                            parts,
                            body.map_err(Into::into).boxed_unsync(),
                        ))
                    }
                    Err(e) => Ok(failed(
                        &metrics,
                        &upstream,
                        e.is_connect(),
                        &e,
                        request_id.as_ref(),
                        tripped.as_ref(),
                    )),
                }
            });
        }
        let uri = match upstream.uri_for(parts.uri.path_and_query()) {
            Ok(u) => u,
            Err(_) => {
                return Box::pin(std::future::ready(Ok(
                    Reject::BadTarget.into_response(request_id.as_ref())
                )));
            }
        };
        let mut out = Request::new(body.map_err(Into::into).boxed_unsync());
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = parts.headers;

        let fut = self.client.client.request(out);
        Box::pin(async move {
            match fut.await {
                Ok(resp) => {
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers, &[]);
                    let body: RespBody = body.map_err(Into::into).boxed_unsync();
                    let mut resp = http::Response::from_parts(parts, body);
                    resp.extensions_mut().clear();
                    Ok(resp)
                }
                Err(e) => Ok(failed(
                    &metrics,
                    &upstream,
                    e.is_connect(),
                    &e,
                    request_id.as_ref(),
                    tripped.as_ref(),
                )),
            }
        })
    }
}

/// The answer when the upstream exchange failed: 413 if the client's body crossed its
/// limit (that is why the exchange stopped), else 502, counted and logged.
fn failed(
    metrics: &GatewayMetrics,
    upstream: &Upstream,
    connect: bool,
    e: &(dyn std::error::Error + 'static),
    request_id: Option<&RequestId>,
    tripped: Option<&BodyLimitTripped>,
) -> Resp {
    if tripped.is_some_and(BodyLimitTripped::is_set) {
        return Reject::PayloadTooLarge.into_response(request_id);
    }
    let kind = if connect { "connect" } else { "request" };
    metrics.upstream_error(&upstream.name, kind);
    tracing::warn!(
        upstream = &*upstream.name,
        kind,
        request_id = request_id.map(RequestId::as_str),
        error = %error_chain(e),
        "upstream request failed"
    );
    Reject::BadGateway.into_response(request_id)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
