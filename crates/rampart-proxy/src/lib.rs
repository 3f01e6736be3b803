//! The gateway process: the pipeline of `rampart-http` stages assembled from a validated
//! [`Config`], the forwarding stage, the public listener (TCP, TLS, mTLS; HTTP/1.1 and
//! HTTP/2), hot reload and graceful drain.
//!
//! Guards against: connection floods (hard cap, excess connections closed at once), slow
//! clients (TLS-handshake and header-read timeouts), half-applied reloads (a new pipeline
//! is built completely, then swapped atomically; an invalid config never replaces a
//! running one), requests cut off by a shutdown (drain waits for in-flight requests).
//! Trusts: the validated configuration, the operating system's accept queue.

mod forward;
pub mod h1;
mod listener;
pub mod sniff;
pub mod tls;
mod tls_upstream;
mod upstream;

use std::collections::BTreeMap;

/// Longest deadline honoured: timers further out than this are as good as none, and
/// clamping keeps `Instant + deadline` from overflowing on an absurd configured value.
pub(crate) const MAX_DEADLINE: std::time::Duration = std::time::Duration::from_secs(86_400 * 365);
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use rampart_audit::{Audit, AuditHandle, AuditLayer, LayerSettings};
use rampart_authn::{Authn, AuthnLayer, Verifiers};
use rampart_config::Config;
use rampart_http::{
    AccessLog, AccessLogLayer, AccessSink, AuthorizeLayer, BodyLimitLayer, BoxStack,
    ClientAddrLayer, GatewayMetrics, HostCheck, HostLayer, RequestIdLayer, RequestIdStage,
    RouteLayer, RouteStage, Router, Sanitize, SanitizeLayer, SecurityHeaders, SecurityHeadersLayer,
    StageService, Timeout, TimeoutLayer,
};
use rampart_ratelimit::RateLimitLayer;
use tower_layer::Layer;

pub use forward::{Forward, Upstream, UpstreamClient};
pub use listener::{ListenerSettings, bind, serve};

/// The full pipeline, outermost stage first (DESIGN.md §1).
///
/// The stages after the route match (client address, authentication, authorization,
/// body limit, forwarding, and whatever access control grows there) sit behind one
/// [`BoxStack`]: a fully spelled-out type of a dozen nested services made the compiler
/// need minutes and gigabytes to check this crate, for a saving of one allocation per
/// request.
pub type Pipeline = AccessLog<
    Audit<
        StageService<
            SecurityHeaders,
            StageService<
                RequestIdStage,
                StageService<
                    Sanitize,
                    StageService<
                        HostCheck,
                        StageService<RouteStage, Timeout<BoxStack<http::Request<Incoming>>>>,
                    >,
                >,
            >,
        >,
    >,
>;

/// Identity headers that only a trusted proxy may send, from `auth.*` (they are
/// stripped from everyone else before any stage reads them).
fn identity_headers(cfg: &Config) -> Vec<String> {
    cfg.later.identity_header_names()
}

/// Process-wide services the pipeline uses, kept across reloads.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    /// The audit writer, while `[audit]` is configured.
    pub audit: Option<&'a AuditHandle>,
    /// Signs `x-rampart-identity` for routes with `identity_assertion`.
    pub asserter: Option<&'a Arc<rampart_authz::Asserter>>,
    /// Rate-limit budgets, backend and counters.
    pub limits: &'a rampart_ratelimit::Shared,
}

/// Builds the pipeline for `cfg`. Pure apart from allocating: safe to call for a reload
/// candidate while the old pipeline keeps serving. Innermost first; each line says why
/// the layer sits where it does.
pub fn build_pipeline(
    cfg: &Config,
    metrics: &Arc<GatewayMetrics>,
    sink: Option<Arc<dyn AccessSink>>,
    client: &UpstreamClient,
    verifiers: &Verifiers,
    shared: Shared<'_>,
) -> Result<Pipeline, ApplyError> {
    let Shared {
        audit,
        asserter,
        limits,
    } = shared;
    let s = &cfg.server;
    if asserter.is_none()
        && let Some(r) = cfg.routes.iter().find(|r| r.identity_assertion)
    {
        return Err(ApplyError::NoSigningKey(r.id.clone()));
    }
    let default_cap = forward::default_upstream_cap(s.max_connections, cfg.upstreams.len());
    let upstreams: BTreeMap<String, Arc<Upstream>> = cfg
        .upstreams
        .iter()
        .filter_map(|(name, u)| {
            Upstream::from_config(u, client, default_cap).map(|u| (name.clone(), Arc::new(u)))
        })
        .collect();
    let router = Arc::new(Router::new(&cfg.routes, metrics));
    let forward = Forward::new(
        client.clone(),
        Arc::new(upstreams),
        Arc::clone(metrics),
        upstream::Deadlines {
            client_body_idle: s.client_body_idle_timeout,
            upstream_body_idle: s.upstream_body_idle_timeout,
        },
    );
    // Body limit last before forwarding: it needs the permit's route, and a refused
    // caller's body is never read.
    let svc = BodyLimitLayer::new(s.max_body_bytes).layer(forward);
    // The signed identity is made from the permit, and replaces any x-rampart-identity
    // already on the request.
    let svc = rampart_authz::IdentityAssertionLayer::new(asserter.cloned()).layer(svc);
    // CSRF once the caller is known to be allowed, before any body byte is read.
    let svc = rampart_authz::CsrfLayer::new().layer(svc);
    // Rate limit on the permit's identity (or resolved client address) and route tier:
    // after authorization so an unauthorized caller cannot spend anyone's budget, before
    // the body limit so a refused caller's body is never read.
    let global_redis = cfg.later.redis.as_ref().and_then(|r| r.url.as_ref());
    let svc = RateLimitLayer::new(cfg.later.rate_limit.as_ref(), global_redis, limits)?.layer(svc);
    // The permit the forwarding stage demands is made here and nowhere else.
    let policy =
        rampart_authz::Policy::new(rampart_authz::Rbac::from_config(cfg.later.rbac.as_ref()));
    let svc = AuthorizeLayer::new(Arc::new(policy)).layer(svc);
    // Authentication after the route match (public routes skip it) and the client
    // address (identity headers count only from trusted proxies).
    let svc = AuthnLayer::from_stage(Authn::new(cfg, verifiers.clone())?).layer(svc);
    // CORS before authentication: browsers send preflights without credentials, and the
    // gateway answers them itself (never forwarded).
    let svc = rampart_authz::CorsLayer::new().layer(svc);
    let svc = ClientAddrLayer::new(s.trusted_proxies.clone()).layer(svc);
    let svc = BoxStack::new(svc);
    // The deadline inside the route match, so that a 504 carries its route.
    let svc = TimeoutLayer::new(s.request_timeout).layer(svc);
    let svc = RouteLayer::new(router).layer(svc);
    let svc = HostLayer::new(s.trusted_hosts.clone()).layer(svc);
    let svc = SanitizeLayer::new(
        s.max_header_bytes,
        s.trusted_proxies.clone(),
        identity_headers(cfg),
    )
    .max_header_count(s.max_header_count)
    .layer(svc);
    let svc = RequestIdLayer::new(s.trusted_proxies.clone()).layer(svc);
    let svc = SecurityHeadersLayer::new(&cfg.headers, s.trusted_proxies.clone()).layer(svc);
    // Audit: just inside the access log, so it records every outcome of every stage,
    // and its 503 (a record that cannot be made durable) is logged and counted too.
    let svc = match (audit, &cfg.later.audit) {
        (Some(h), Some(a)) => AuditLayer::new(
            h.clone(),
            LayerSettings::from_config(a),
            Arc::clone(metrics),
        ),
        _ => AuditLayer::disabled(),
    }
    .layer(svc);
    let sink = if s.access_log { sink } else { None };
    Ok(AccessLogLayer::new(Arc::clone(metrics), sink).layer(svc))
}

/// What a running gateway swaps on reload.
pub struct Gateway {
    pipeline: ArcSwap<Pipeline>,
    tls: ArcSwap<Option<tokio_rustls::TlsAcceptor>>,
    config: ArcSwap<Config>,
    metrics: Arc<GatewayMetrics>,
    sink: Option<Arc<dyn AccessSink>>,
    client: UpstreamClient,
    verifiers: ArcSwap<Verifiers>,
    audit: Option<AuditHandle>,
    asserter: Option<Arc<rampart_authz::Asserter>>,
    /// Rate limit budgets, the Redis backend and the decision counters survive reloads.
    limits: Arc<rampart_ratelimit::Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// Why a configuration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("upstream TLS client: {0}")]
    UpstreamTls(#[from] rustls::Error),
    #[error(transparent)]
    Authn(#[from] rampart_authn::AuthnError),
    #[error(
        "route `{0}` has identity_assertion = true, but no signing key was opened at start ([signing] and server.data_dir; a restart is needed to add one)"
    )]
    NoSigningKey(String),
    #[error(transparent)]
    RateLimit(#[from] rampart_ratelimit::RedisConfigError),
}

impl Gateway {
    pub fn new(
        cfg: Config,
        metrics: Arc<GatewayMetrics>,
        sink: Option<Arc<dyn AccessSink>>,
        verifiers: Verifiers,
    ) -> Result<Arc<Self>, ApplyError> {
        Self::with_audit(cfg, metrics, sink, verifiers, None, None)
    }

    /// Like [`Gateway::new`], recording every request through the audit writer `audit`
    /// while `[audit]` is configured, and signing identity assertions with `asserter` on
    /// routes that ask for them.
    pub fn with_audit(
        cfg: Config,
        metrics: Arc<GatewayMetrics>,
        sink: Option<Arc<dyn AccessSink>>,
        verifiers: Verifiers,
        audit: Option<AuditHandle>,
        asserter: Option<Arc<rampart_authz::Asserter>>,
    ) -> Result<Arc<Self>, ApplyError> {
        let client =
            UpstreamClient::new(cfg.server.upstream_connect_timeout, cfg.server.idle_timeout)?;
        let tls = match &cfg.server.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?)),
            None => None,
        };
        let limits = rampart_ratelimit::Shared::new();
        let pipeline = build_pipeline(
            &cfg,
            &metrics,
            sink.clone(),
            &client,
            &verifiers,
            Shared {
                audit: audit.as_ref(),
                asserter: asserter.as_ref(),
                limits: &limits,
            },
        )?;
        Ok(Arc::new(Self {
            pipeline: ArcSwap::from_pointee(pipeline),
            tls: ArcSwap::from_pointee(tls),
            config: ArcSwap::from_pointee(cfg),
            metrics,
            sink,
            client,
            verifiers: ArcSwap::from_pointee(verifiers),
            audit,
            asserter,
            limits,
        }))
    }

    pub fn metrics(&self) -> &Arc<GatewayMetrics> {
        &self.metrics
    }

    /// The rate limiter's state: its metric families (`rampart_ratelimit_*`) and its
    /// health reasons (a Redis backend that cannot decide).
    pub fn ratelimit(&self) -> Arc<rampart_ratelimit::Shared> {
        Arc::clone(&self.limits)
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Applies a validated configuration: builds everything first, then swaps. Settings
    /// bound to the listening socket (addresses, TLS on/off, connection cap, header
    /// limits) need a restart; they are reported, not applied.
    /// `verifiers`: `None` keeps the running ones (key sets, caches and revocation
    /// snapshots survive a reload).
    pub fn apply(
        &self,
        cfg: Config,
        verifiers: Option<Verifiers>,
    ) -> Result<Vec<String>, ApplyError> {
        let old = self.config.load();
        let mut restart_needed = Vec::new();
        let (o, n) = (&old.server, &cfg.server);
        if o.listen != n.listen {
            restart_needed.push("server.listen".to_owned());
        }
        if o.admin_listen != n.admin_listen {
            restart_needed.push("server.admin_listen".to_owned());
        }
        if o.tls.is_some() != n.tls.is_some() {
            restart_needed.push("server.tls (enabling or disabling)".to_owned());
        }
        if o.max_connections != n.max_connections {
            restart_needed.push("server.max_connections".to_owned());
        }
        if o.listen_backlog != n.listen_backlog {
            restart_needed.push("server.listen_backlog".to_owned());
        }
        if o.header_read_timeout != n.header_read_timeout {
            restart_needed.push("server.header_read_timeout_ms".to_owned());
        }
        let tls = match &cfg.server.tls {
            Some(t) if old.server.tls.is_some() => Some(Some(tokio_rustls::TlsAcceptor::from(
                tls::server_config(t)?,
            ))),
            _ => None,
        };
        if cfg.later.audit.is_some() != old.later.audit.is_some() {
            restart_needed.push("audit (enabling or disabling)".to_owned());
        }
        let verifiers = verifiers.unwrap_or_else(|| Verifiers::clone(&self.verifiers.load()));
        let pipeline = build_pipeline(
            &cfg,
            &self.metrics,
            self.sink.clone(),
            &self.client,
            &verifiers,
            Shared {
                audit: self.audit.as_ref(),
                asserter: self.asserter.as_ref(),
                limits: &self.limits,
            },
        )?;
        self.pipeline.store(Arc::new(pipeline));
        self.verifiers.store(Arc::new(verifiers));
        if let Some(t) = tls {
            self.tls.store(Arc::new(t));
        }
        self.config.store(Arc::new(cfg));
        Ok(restart_needed)
    }

    pub(crate) fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.load_full()
    }

    /// The current pipeline without taking a reference count.
    pub(crate) fn pipeline_ref(&self) -> arc_swap::Guard<Arc<Pipeline>> {
        self.pipeline.load()
    }

    pub(crate) fn tls_acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.load().as_ref().clone()
    }
}
