//! HS256 development tokens (`rampart token mint`). Only with the dev profile and an
//! `auth.jwt.hs256_secret`: prod never holds a signing secret for JWTs.

use aws_lc_rs::hmac;
use rampart_config::Profile;
use serde_json::{Map, Value};

use crate::b64;
use crate::settings::JwtSettings;

/// What a minted token says.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub ttl_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("token mint needs profile = \"dev\" (HS256 tokens are refused in prod)")]
    NotDev,
    #[error("token mint needs auth.jwt.hs256_secret (dev profile only)")]
    NoSecret,
    #[error("auth.jwt.allowed_algs does not allow HS256, so a minted token would be refused")]
    Hs256NotAllowed,
    #[error("--sub must not be empty")]
    EmptySubject,
    #[error("--ttl must be at least one second")]
    ZeroTtl,
}

/// Signs an HS256 JWT carrying `iss`/`aud` from the settings (when set) so the
/// gateway configured by the same file accepts it.
pub fn mint_hs256(s: &JwtSettings, req: &MintRequest, now: u64) -> Result<String, MintError> {
    if s.profile != Profile::Dev {
        return Err(MintError::NotDev);
    }
    let key = s.hs256_secret.as_ref().ok_or(MintError::NoSecret)?;
    if !s.allowed_algs.contains(&crate::Alg::HS256) {
        return Err(MintError::Hs256NotAllowed);
    }
    if req.subject.is_empty() {
        return Err(MintError::EmptySubject);
    }
    if req.ttl_s == 0 {
        return Err(MintError::ZeroTtl);
    }
    let mut c = Map::new();
    if let Some(iss) = &s.claims.issuer {
        c.insert("iss".into(), Value::String(iss.clone()));
    }
    match s.claims.audience.as_slice() {
        [] => {}
        [one] => {
            c.insert("aud".into(), Value::String(one.clone()));
        }
        many => {
            c.insert(
                "aud".into(),
                many.iter().cloned().map(Value::String).collect(),
            );
        }
    }
    c.insert(
        s.claims.subject_claim.clone(),
        Value::String(req.subject.clone()),
    );
    if let Some(t) = &req.tenant {
        c.insert(s.claims.tenant_claim.clone(), Value::String(t.clone()));
    }
    if !req.scopes.is_empty() {
        c.insert(
            s.claims.scopes_claim.clone(),
            Value::String(req.scopes.join(" ")),
        );
    }
    if !req.roles.is_empty() {
        c.insert(
            s.claims.roles_claim.clone(),
            req.roles.iter().cloned().map(Value::String).collect(),
        );
    }
    c.insert("iat".into(), now.into());
    c.insert("exp".into(), now.saturating_add(req.ttl_s).into());
    let mut jti = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut jti).is_ok() {
        c.insert("jti".into(), Value::String(b64::encode(&jti)));
    }
    let header = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64::encode(Value::Object(c).to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key.expose()),
        input.as_bytes(),
    );
    Ok(format!("{input}.{}", b64::encode(tag.as_ref())))
}

/// Parses a duration like `90s`, `15m`, `1h`, `7d` (or plain seconds).
pub fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 's') => (s.get(..i)?, 1),
        (i, 'm') => (s.get(..i)?, 60),
        (i, 'h') => (s.get(..i)?, 3600),
        (i, 'd') => (s.get(..i)?, 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::settings::Hs256Key;
    use crate::{Alg, JwtVerifier, ManualClock};

    fn dev() -> JwtSettings {
        let mut s = JwtSettings::new(Profile::Dev, None);
        s.hs256_secret = Some(Hs256Key::new(b"0123456789abcdef0123456789abcdef".to_vec()));
        s.allowed_algs = vec![Alg::HS256];
        s.claims.issuer = Some("rampart-dev".into());
        s.claims.audience = vec!["rampart".into()];
        s
    }

    #[test]
    fn minted_token_verifies() {
        let s = dev();
        let req = MintRequest {
            subject: "alice".into(),
            tenant: Some("t1".into()),
            scopes: vec!["jobs".into(), "metrics".into()],
            roles: vec!["reader".into()],
            ttl_s: 3600,
        };
        let t = mint_hs256(&s, &req, 1_000_000).unwrap();
        let clock = Arc::new(ManualClock::new(1_000_010));
        let v = JwtVerifier::start(s, clock.clone());
        // HS256 only: no key set is needed, so health has nothing to warn about.
        assert_eq!(v.health().reason(), None);
        let got = v.verify(&t).unwrap();
        assert_eq!(got.subject, "alice");
        assert_eq!(got.tenant.as_deref(), Some("t1"));
        assert_eq!(got.scopes, vec!["jobs", "metrics"]);
        assert_eq!(got.roles, vec!["reader"]);
        assert_eq!(got.exp, 1_003_600);
        assert_eq!(got.alg, "HS256");
        clock.set(1_003_600 + 60);
        assert_eq!(v.verify(&t), Err(crate::JwtFailure::Invalid("expired")));
    }

    #[test]
    fn refusals() {
        let req = MintRequest {
            subject: "a".into(),
            ttl_s: 60,
            ..MintRequest::default()
        };
        let mut s = dev();
        s.profile = Profile::Prod;
        assert_eq!(mint_hs256(&s, &req, 0), Err(MintError::NotDev));
        let mut s = dev();
        s.hs256_secret = None;
        assert_eq!(mint_hs256(&s, &req, 0), Err(MintError::NoSecret));
        let mut s = dev();
        s.allowed_algs = vec![Alg::RS256];
        assert_eq!(mint_hs256(&s, &req, 0), Err(MintError::Hs256NotAllowed));
        assert_eq!(
            mint_hs256(
                &dev(),
                &MintRequest {
                    subject: String::new(),
                    ttl_s: 1,
                    ..req.clone()
                },
                0
            ),
            Err(MintError::EmptySubject)
        );
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("15m"), Some(900));
        assert_eq!(parse_ttl("2d"), Some(172_800));
        assert_eq!(parse_ttl("42"), Some(42));
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("-1h"), None);
        assert_eq!(parse_ttl(""), None);
    }
}
