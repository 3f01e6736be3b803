//! The signing keyring in `serve`: opened once when something signs (audit checkpoints,
//! identity assertions) and shared by both; its public keys are served as the JWKS.

use std::sync::Arc;

use rampart_config::Config;
use rampart_crypto::Keyring;

/// Does this configuration sign anything?
pub fn needed(cfg: &Config) -> bool {
    cfg.later.audit.is_some() || cfg.routes.iter().any(|r| r.identity_assertion)
}

/// Opens the keyring of `[signing]` when [`needed`]. Errors are logged; the caller
/// exits 2.
pub fn open(cfg: &Config) -> Result<Option<Arc<Keyring>>, ()> {
    if !needed(cfg) {
        return Ok(None);
    }
    let log = |e: &dyn std::fmt::Display| tracing::error!(error = %e, "signing key");
    let paths = rampart_audit::Paths::from_config(cfg).map_err(|e| log(&e))?;
    let keyring = rampart_audit::open_keyring(cfg, &paths).map_err(|e| log(&e))?;
    let active = keyring.active().public();
    tracing::info!(
        key_id = active.key_id(),
        fingerprint = active.fingerprint(),
        "signing with this key (audit checkpoints, identity assertions)"
    );
    Ok(Some(Arc::new(keyring)))
}
