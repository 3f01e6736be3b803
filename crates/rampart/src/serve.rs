//! `rampart serve`: load and check the configuration, bind the listeners, serve, reload
//! on SIGHUP, drain on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rampart_admin::{AdminState, BuildInfo, Health, Reason, Severity};
use rampart_config::Config;
use rampart_http::GatewayMetrics;
use rampart_proxy::{Gateway, ListenerSettings};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::{auth, logging};

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("RAMPART_GIT_COMMIT"),
    branch: env!("RAMPART_GIT_BRANCH"),
    build_time: env!("RAMPART_BUILD_TIME"),
};

pub fn run(paths: &[PathBuf]) -> u8 {
    logging::init();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return 2;
        }
    };
    rt.block_on(serve(paths.to_vec(), |_, _| {}))
}

/// One event loop per usable CPU. On a single CPU (a pinned process, a one-core
/// container) a current-thread runtime avoids handing work between a worker and the
/// main thread.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}

/// Loads the configuration and runs the data-root and secret checks a start needs.
/// Errors are logged one per line; the caller exits 2.
pub fn load_checked(paths: &[PathBuf]) -> Result<Config, ()> {
    let cfg = match rampart_config::load(paths) {
        Ok(c) => c,
        Err(e) => {
            for d in &e.errors {
                tracing::error!(file = %d.file, line = d.line, key = %d.key, "{}", d.message);
            }
            return Err(());
        }
    };
    let mut bad = false;
    for f in rampart_config::check_data_roots(&cfg) {
        if f.severity == rampart_config::Severity::Error {
            bad = true;
            tracing::error!(check = f.code, path = %f.path, "{}", f.message);
        } else {
            tracing::warn!(check = f.code, path = %f.path, "{}", f.message);
        }
    }
    if bad {
        return Err(());
    }
    Ok(cfg)
}

/// `/healthz` reasons that follow from a configuration.
pub fn config_reasons(cfg: &Config) -> Vec<Reason> {
    let mut r = Vec::new();
    if cfg.profile == rampart_config::Profile::Dev {
        r.push(Reason {
            code: "profile_dev".into(),
            severity: Severity::Info,
            message: "profile = \"dev\": development relaxations are allowed".into(),
        });
    }
    if !cfg.warnings.is_empty() {
        r.push(Reason {
            code: "config_warnings".into(),
            severity: Severity::Info,
            message: cfg.warnings.join("; "),
        });
    }
    // Fail-open choices are explicit in config and visible here (and as health_reason).
    let later = &cfg.later;
    if later
        .rate_limit
        .as_ref()
        .and_then(|r| r.on_backend_error)
        .is_some_and(|o| o == rampart_config::raw::OnFailure::Allow)
    {
        r.push(Reason {
            code: "fail_open_rate_limit".into(),
            severity: Severity::Info,
            message: "rate_limit.on_backend_error = \"allow\": requests pass when the limiter backend fails".into(),
        });
    }
    if later
        .audit
        .as_ref()
        .and_then(|a| a.on_failure)
        .is_some_and(|o| o == rampart_config::raw::OnFailure::Allow)
    {
        r.push(Reason {
            code: "fail_open_audit".into(),
            severity: Severity::Info,
            message:
                "audit.on_failure = \"allow\": requests pass when an audit record cannot be written"
                    .into(),
        });
    }
    if later.anonymous_allowed() {
        r.push(Reason {
            code: "anonymous_access".into(),
            severity: Severity::Info,
            message:
                "auth.modes contains \"none\": every route is reachable without authentication"
                    .into(),
        });
    }
    crate::crypto::health_reasons(cfg, &mut r);
    if cfg.server.tls.is_none() {
        r.push(Reason {
            code: "tls_disabled".into(),
            severity: Severity::Info,
            message: "the public listener serves plain HTTP".into(),
        });
    }
    r
}

fn log_warnings(cfg: &Config) {
    for w in &cfg.warnings {
        tracing::warn!(profile = ?cfg.profile, "{w}");
    }
}

/// Runs the gateway until SIGTERM/SIGINT. `on_ready` gets the bound public and admin
/// addresses (the admin one is `None` when disabled). Returns the exit code.
pub async fn serve(
    paths: Vec<PathBuf>,
    on_ready: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> u8 {
    let Ok(cfg) = load_checked(&paths) else {
        tracing::error!("configuration refused; not starting");
        return 2;
    };
    log_warnings(&cfg);
    let (sink, _guard) = logging::access_sink();
    let metrics = GatewayMetrics::new();
    let health = Health::new();
    health.set_reasons(config_reasons(&cfg));
    let settings = ListenerSettings::from(&cfg.server);
    let listen = cfg.server.listen;
    let admin_listen = cfg.server.admin_listen;
    let backlog = cfg.server.listen_backlog;
    let auth = match auth::build(&cfg, &health).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "authentication cannot start; not starting");
            return 2;
        }
    };
    let Ok(keyring) = crate::signing::open(&cfg) else {
        tracing::error!("signing key cannot be opened; not starting");
        return 2;
    };
    // A KEK that cannot unwrap the stored data keys refuses the start (fail closed).
    let Ok(crypto) = crate::crypto::start(&cfg, &health).await else {
        tracing::error!("crypto.kek refused; not starting");
        return 2;
    };
    let Ok(audit) = crate::audit_writer::start(&cfg, &metrics, &health, keyring.as_ref()) else {
        tracing::error!("audit log cannot be opened; not starting");
        return 2;
    };
    let asserter = keyring.as_ref().map(|k| {
        Arc::new(rampart_authz::Asserter::new(
            Arc::clone(k) as Arc<dyn rampart_authz::identity::Signer>
        ))
    });
    let jwks = keyring
        .as_ref()
        .map(|k| rampart_authz::jwks_json(&k.public_keys()));
    let gw = match Gateway::with_audit(
        cfg,
        Arc::clone(&metrics),
        Some(sink),
        auth.verifiers.clone(),
        audit.clone(),
        asserter,
    ) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "configuration refused; not starting");
            return 2;
        }
    };
    // The rate limiter's Redis backend reports while it cannot decide.
    let limits = gw.ratelimit();
    health.add_probe(Arc::clone(&limits) as Arc<dyn rampart_admin::HealthProbe>);
    let listener = match rampart_proxy::bind(listen, backlog) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %listen, error = %e, "cannot bind server.listen");
            return 2;
        }
    };
    let admin = match admin_listen {
        Some(a) => match rampart_proxy::bind(a, backlog) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(addr = %a, error = %e, "cannot bind server.admin_listen");
                return 2;
            }
        },
        None => None,
    };
    // Handlers first: a signal that arrives once we say we are listening is ours.
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return 2;
    };
    let public_addr = listener.local_addr().unwrap_or(listen);
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (admin_tx, admin_rx) = watch::channel(false);
    if let Some(l) = admin {
        let state = Arc::new(AdminState {
            metrics: Arc::clone(&metrics),
            health: Arc::clone(&health),
            build: BUILD,
            sources: {
                let mut s = auth.sources.clone();
                s.push(crypto);
                s.push(Arc::clone(&limits.metrics) as Arc<dyn rampart_admin::MetricsSource>);
                s
            },
            api: crate::admin_api::build(&gw.config(), &auth),
            jwks,
            status: vec![Arc::new(crate::status::Sections {
                gateway: Arc::clone(&gw),
                metrics: Arc::clone(&metrics),
                jwt: auth.jwt.clone(),
                audit: audit.clone(),
                keyring: keyring.clone(),
                revocations: auth.revocations.clone(),
            })],
        });
        tokio::spawn(rampart_admin::serve(l, state, admin_rx));
    }
    let mut server = tokio::spawn(rampart_proxy::serve(
        Arc::clone(&gw),
        listener,
        settings,
        shutdown_rx,
    ));
    tracing::info!(
        public = %public_addr,
        admin = admin_addr.map(|a| a.to_string()),
        version = BUILD.version,
        commit = BUILD.commit,
        "listening"
    );
    on_ready(public_addr, admin_addr);

    loop {
        tokio::select! {
            _ = hup.recv() => reload(&paths, &gw, &metrics, &health),
            _ = term.recv() => { tracing::info!(signal = "SIGTERM", "shutting down"); break; }
            _ = int.recv() => { tracing::info!(signal = "SIGINT", "shutting down"); break; }
            r = &mut server => {
                tracing::error!(result = ?r.is_ok(), "listener stopped unexpectedly");
                return 1;
            }
        }
    }
    health.set_draining();
    let _ = shutdown_tx.send(true);
    let left = server.await.unwrap_or(0);
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain timeout reached; closing remaining connections"
        );
    } else {
        tracing::info!("drained");
    }
    if let Some(a) = audit {
        crate::audit_writer::stop(a).await;
    }
    let _ = admin_tx.send(true);
    0
}

fn reload(paths: &[PathBuf], gw: &Gateway, metrics: &GatewayMetrics, health: &Health) {
    tracing::info!("SIGHUP: reloading configuration");
    let Ok(cfg) = load_checked(paths) else {
        metrics
            .config_reloads_failed
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!("configuration reload rejected; keeping the running configuration");
        return;
    };
    log_warnings(&cfg);
    let reasons = config_reasons(&cfg);
    match gw.apply(cfg, None) {
        Ok(restart) => {
            metrics.config_reloads_ok.fetch_add(1, Ordering::Relaxed);
            health.set_reasons(reasons);
            if !restart.is_empty() {
                tracing::warn!(keys = ?restart, "changed settings take effect after a restart");
            }
            tracing::info!("configuration reloaded");
        }
        Err(e) => {
            metrics
                .config_reloads_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "configuration reload rejected; keeping the running configuration");
        }
    }
}
