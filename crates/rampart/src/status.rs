//! The sections of the operator status page that `serve` knows beyond the admin
//! listener's own: profile and configuration digest, rate-limit pressure per tier, JWKS
//! state, audit chain head and writer queue, signing-key fingerprints and ages, and the
//! revocation count.
//!
//! Guards against: secrets on the page. The configuration digest is SHA-256 over the
//! validated configuration's `Debug` form, where every secret value prints as
//! `[redacted]` and the two URL fields that may carry a password as written are replaced
//! too, so the digest tells two gateways' configurations apart without being a hash of
//! a password someone could guess offline. Keys appear as fingerprints, JWKS errors as
//! the loader's fixed messages (no URL, no body). Trusts: the components it reads.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use rampart_admin::status::{
    AuditView, ConfigStatus, JwksStatus, KeyStatus, RateLimitStatus, RevocationsStatus,
    SigningStatus, TierStatus, share,
};
use rampart_admin::{Status, StatusSource};
use rampart_audit::AuditHandle;
use rampart_config::Config;
use rampart_crypto::Keyring;
use rampart_http::GatewayMetrics;
use rampart_jwt::JwtVerifier;
use rampart_proxy::Gateway;
use rampart_store::RevocationSet;

/// What the status page reads from `serve`'s components.
pub struct Sections {
    pub gateway: Arc<Gateway>,
    pub metrics: Arc<GatewayMetrics>,
    pub jwt: Option<JwtVerifier>,
    pub audit: Option<AuditHandle>,
    pub keyring: Option<Arc<Keyring>>,
    pub revocations: Option<Arc<RevocationSet>>,
}

const REDACTED: &str = "[redacted]";

/// `sha256:` + hex over the configuration with no secret in it (see the module doc).
pub fn config_digest(cfg: &Config) -> String {
    let mut c = cfg.clone();
    c.warnings.clear();
    c.sources.clear();
    if let Some(rl) = c.later.rate_limit.as_mut()
        && rl.redis_url.is_some()
    {
        rl.redis_url = Some(REDACTED.into());
    }
    if let Some(st) = c.later.store.as_mut()
        && st.url.is_some()
    {
        st.url = Some(REDACTED.into());
    }
    let d = digest(&SHA256, format!("{c:?}").as_bytes());
    let mut out = String::from("sha256:");
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Sections {
    fn rate_limit(&self, cfg: &Config) -> Option<RateLimitStatus> {
        let section = cfg.later.rate_limit.as_ref()?;
        let limits = self.gateway.ratelimit();
        let counts = limits.metrics.snapshot();
        let mut tiers: Vec<TierStatus> = section
            .tiers
            .iter()
            .map(|(name, spec)| TierStatus {
                tier: name.clone(),
                per_minute: spec.per_minute,
                burst: spec.burst,
                ..TierStatus::default()
            })
            .collect();
        for (name, [allowed, limited, errors]) in counts {
            let t = match tiers.iter_mut().find(|t| t.tier == name) {
                Some(t) => t,
                None => {
                    tiers.push(TierStatus {
                        tier: name,
                        ..TierStatus::default()
                    });
                    let Some(t) = tiers.last_mut() else { continue };
                    t
                }
            };
            t.allowed = allowed;
            t.limited = limited;
            t.errors = errors;
            t.limited_share = share(limited, allowed + limited + errors);
        }
        Some(RateLimitStatus {
            backend: match section.backend {
                Some(rampart_config::raw::RateLimitBackend::Redis) => "redis",
                _ => "memory",
            }
            .into(),
            backend_up: limits.metrics.backend_up(),
            backend_errors: limits.metrics.backend_errors(),
            tiers,
        })
    }
}

impl StatusSource for Sections {
    fn fill(&self, s: &mut Status) {
        let cfg = self.gateway.config();
        s.profile = Some(
            match cfg.profile {
                rampart_config::Profile::Dev => "dev",
                _ => "prod",
            }
            .into(),
        );
        s.config = Some(ConfigStatus {
            digest: config_digest(&cfg),
            files: cfg.sources.len(),
            reloads_ok: self.metrics.config_reloads_ok.load(Ordering::Relaxed),
            reloads_rejected: self.metrics.config_reloads_failed.load(Ordering::Relaxed),
        });
        s.rate_limit = self.rate_limit(&cfg);
        s.jwks = self.jwt.as_ref().map(|j| {
            let h = j.health();
            JwksStatus {
                source: if j.settings().jwks.is_some() {
                    "url"
                } else {
                    "static"
                }
                .into(),
                loaded: h.loaded,
                keys: h.keys as u64,
                age_s: h.age.map(|a| a.as_secs()),
                stale: h.stale,
                fetches: h.fetches,
                failures: h.failures,
                last_error: h.last_error,
            }
        });
        s.audit = self.audit.as_ref().map(|a| {
            let st = a.status();
            AuditView {
                records: st.records,
                head_hash: st.head_hash,
                checkpoint_size: st.checkpoint_size,
                checkpoint_ts: st.checkpoint_ts,
                queue_depth: st.queue_depth,
                queue_capacity: st.queue_capacity as u64,
                failing: st.failing,
                last_error: st.last_error,
            }
        });
        s.signing = self.keyring.as_ref().map(|k| {
            let now = now_s();
            let file = k.file();
            SigningStatus {
                active_key_id: file.active_id().map(str::to_owned),
                keys: file
                    .entries()
                    .iter()
                    .rev()
                    .map(|e| KeyStatus {
                        key_id: e.key_id.clone(),
                        fingerprint: e.fingerprint.clone(),
                        status: match e.status {
                            rampart_crypto::KeyStatus::Active => "active",
                            rampart_crypto::KeyStatus::Retired => "retired",
                        }
                        .into(),
                        created_unix: e.created,
                        age_s: now.saturating_sub(e.created),
                    })
                    .collect(),
            }
        });
        s.revocations = self.revocations.as_ref().map(|r| RevocationsStatus {
            entries: r.len() as u64,
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_hides_secrets_and_follows_changes() {
        let toml = |pw: &str, burst: u32| {
            format!(
                "profile = \"dev\"\n[server]\nlisten = \"127.0.0.1:0\"\ntrusted_hosts = [\"a\"]\n\
                 [upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nid = \"r\"\npath = \"/\"\nupstream = \"app\"\npublic = true\n\
                 [rate_limit]\nredis_url = \"redis://:{pw}@127.0.0.1:6379\"\ntiers.default = {{ per_minute = 60, burst = {burst} }}\n"
            )
        };
        let load = |s: String| rampart_config::load_from_strs(&[("c.toml", &s)], &[]).unwrap();
        let a = load(toml("hunter2", 10));
        let b = load(toml("swordfish", 10));
        let c = load(toml("hunter2", 11));
        let (da, db, dc) = (config_digest(&a), config_digest(&b), config_digest(&c));
        assert!(da.starts_with("sha256:") && da.len() == 7 + 64);
        // The password is not part of the digest; the limits are.
        assert_eq!(da, db);
        assert_ne!(da, dc);
        let mut dbg = a.clone();
        dbg.warnings.clear();
        assert!(
            format!("{dbg:?}").contains("hunter2"),
            "the test must exercise a literal password"
        );
    }
}
