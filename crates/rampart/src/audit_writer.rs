//! The audit writer's lifetime in `serve`: opened (and recovered) before the listener
//! binds, stopped after the drain with a shutdown checkpoint.

use std::sync::Arc;

use rampart_admin::{Health, Reason, Severity};
use rampart_audit::{AuditHandle, Paths};
use rampart_config::Config;
use rampart_http::GatewayMetrics;

/// Starts the writer when `[audit]` is configured. Errors are logged; the caller exits 2.
/// `keyring`: the signing keyring `crate::signing::open` opened (always, when `[audit]`
/// is configured).
pub fn start(
    cfg: &Config,
    metrics: &Arc<GatewayMetrics>,
    health: &Arc<Health>,
    keyring: Option<&Arc<rampart_crypto::Keyring>>,
) -> Result<Option<AuditHandle>, ()> {
    let Some(section) = &cfg.later.audit else {
        return Ok(None);
    };
    let log = |e: &dyn std::fmt::Display| tracing::error!(error = %e, "audit");
    let paths = Paths::from_config(cfg).map_err(|e| log(&e))?;
    let Some(keyring) = keyring else {
        tracing::error!("audit: no signing key for checkpoints");
        return Err(());
    };
    let wcfg = rampart_audit::writer_config(paths.audit_dir.clone(), section);
    let (handle, report) =
        AuditHandle::start(wcfg, Arc::clone(keyring), Arc::clone(metrics)).map_err(|e| log(&e))?;
    tracing::info!(
        dir = %paths.audit_dir.display(),
        records = report.records,
        segments = report.segments,
        "audit log open; the chain continues"
    );
    let h = handle.clone();
    health.add_probe(Arc::new(move || {
        h.is_failing().then(|| Reason {
            code: "audit_write_failing".into(),
            severity: Severity::Warn,
            message: format!(
                "audit records cannot be written: {}",
                h.last_error().unwrap_or_default()
            ),
        })
    }));
    Ok(Some(handle))
}

/// Writes what is queued, fsyncs and signs the shutdown checkpoint.
pub async fn stop(handle: AuditHandle) {
    match tokio::task::spawn_blocking(move || handle.shutdown()).await {
        Ok(Ok(Some(cp))) => {
            tracing::info!(size = cp.size, "audit: shutdown checkpoint signed");
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "audit: shutdown checkpoint failed"),
        Err(e) => tracing::error!(error = %e, "audit: shutdown task failed"),
    }
}
