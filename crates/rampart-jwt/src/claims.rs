//! JWT claims checks (RFC 7519 §4.1), run only after the signature holds.
//!
//! - `exp` is required and must be a JSON number (a string `"9999999999"` is refused,
//!   not coerced); the token is expired once `now >= exp + clock_skew`.
//! - `nbf`, when present, must be a number and `nbf <= now + clock_skew`.
//! - `iat`, when present, must be a number and not lie beyond `now + clock_skew`: a
//!   token "issued in the future" comes from a wrong clock or a forger.
//! - `iss` must equal the configured issuer, and `aud` (a string or an array of strings)
//!   must contain one of the configured audiences, whenever those are configured; a
//!   missing claim is then refused too.
//! - the subject claim must be a non-empty string; tenant, scopes (a space-delimited
//!   string or an array of strings) and roles (array or space-delimited string) are
//!   read from the configured claim names and must have those types when present.

use serde_json::{Map, Value};

use crate::json::{self, JsonError};
use crate::reason::{self, Reason};

/// Longest subject, tenant, scope or role string accepted (they go into headers and logs).
pub const MAX_CLAIM_STRING: usize = 1024;
/// Most scopes or roles accepted.
pub const MAX_LIST: usize = 256;

/// What the claims checks need from the settings.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub clock_skew_s: u64,
    pub subject_claim: String,
    pub scopes_claim: String,
    pub roles_claim: String,
    pub tenant_claim: String,
}

/// The claims rampart hands on, after every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub jti: Option<String>,
    pub exp: u64,
    pub nbf: Option<u64>,
}

/// A NumericDate: a non-negative JSON number, fractions truncated.
fn numeric_date(v: Option<&Value>, bad: Reason) -> Result<Option<u64>, Reason> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(f) = n.as_f64()
                && f.is_finite()
                && f >= 0.0
            {
                // `as` saturates at u64::MAX: a far-future float is merely "far future".
                Ok(Some(f as u64))
            } else {
                Err(bad)
            }
        }
        Some(_) => Err(bad),
    }
}

fn short_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_CLAIM_STRING => Some(s.clone()),
        _ => None,
    }
}

/// Space-delimited string or array of strings.
fn string_list(v: Option<&Value>) -> Result<Vec<String>, Reason> {
    let out: Vec<String> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => {
            if s.len() > MAX_CLAIM_STRING * 16 {
                return Err(reason::BAD_CLAIM);
            }
            s.split_ascii_whitespace().map(str::to_owned).collect()
        }
        Some(Value::Array(a)) => {
            if a.len() > MAX_LIST {
                return Err(reason::BAD_CLAIM);
            }
            a.iter()
                .map(|x| short_string(x).ok_or(reason::BAD_CLAIM))
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(reason::BAD_CLAIM),
    };
    if out.len() > MAX_LIST || out.iter().any(|s| s.len() > MAX_CLAIM_STRING) {
        return Err(reason::BAD_CLAIM);
    }
    Ok(out)
}

/// Time checks alone: also run on a verified-token cache hit.
pub fn check_times(exp: u64, nbf: Option<u64>, now: u64, skew: u64) -> Result<(), Reason> {
    if now >= exp.saturating_add(skew) {
        return Err(reason::EXPIRED);
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(skew)
    {
        return Err(reason::NOT_YET_VALID);
    }
    Ok(())
}

/// Checks a claims set (the JWS payload) at time `now` (Unix seconds).
pub fn check(payload: &[u8], rules: &ClaimRules, now: u64) -> Result<Claims, Reason> {
    let c: Map<String, Value> = json::parse_object(payload).map_err(|e| match e {
        JsonError::Duplicate => reason::DUPLICATE_MEMBER,
        _ => reason::BAD_JSON,
    })?;
    let exp = numeric_date(c.get("exp"), reason::BAD_EXP)?.ok_or(reason::MISSING_EXP)?;
    let nbf = numeric_date(c.get("nbf"), reason::BAD_NBF)?;
    let iat = numeric_date(c.get("iat"), reason::BAD_IAT)?;
    let skew = rules.clock_skew_s;
    check_times(exp, nbf, now, skew)?;
    if let Some(iat) = iat
        && iat > now.saturating_add(skew)
    {
        return Err(reason::IAT_IN_FUTURE);
    }
    if let Some(want) = &rules.issuer {
        match c.get("iss") {
            None => return Err(reason::MISSING_ISSUER),
            Some(Value::String(s)) if s == want => {}
            Some(_) => return Err(reason::BAD_ISSUER),
        }
    }
    if !rules.audience.is_empty() {
        let ok = match c.get("aud") {
            None => return Err(reason::MISSING_AUDIENCE),
            Some(Value::String(s)) => rules.audience.iter().any(|a| a == s),
            Some(Value::Array(list)) => {
                if list.iter().any(|v| !v.is_string()) || list.len() > MAX_LIST {
                    return Err(reason::BAD_AUDIENCE);
                }
                list.iter()
                    .filter_map(Value::as_str)
                    .any(|s| rules.audience.iter().any(|a| a == s))
            }
            Some(_) => false,
        };
        if !ok {
            return Err(reason::BAD_AUDIENCE);
        }
    }
    let subject = match c.get(&rules.subject_claim) {
        None => return Err(reason::MISSING_SUBJECT),
        Some(v) => short_string(v).ok_or(reason::MISSING_SUBJECT)?,
    };
    let tenant = match c.get(&rules.tenant_claim) {
        None | Some(Value::Null) => None,
        Some(v) => Some(short_string(v).ok_or(reason::BAD_CLAIM)?),
    };
    let jti = match c.get("jti") {
        None => None,
        Some(v) => Some(short_string(v).ok_or(reason::BAD_CLAIM)?),
    };
    let scopes = string_list(c.get(&rules.scopes_claim))?;
    let roles = string_list(c.get(&rules.roles_claim))?;
    Ok(Claims {
        subject,
        tenant,
        scopes,
        roles,
        jti,
        exp,
        nbf,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://id.example.com/".into()),
            audience: vec!["rampart".into(), "other".into()],
            clock_skew_s: 60,
            subject_claim: "sub".into(),
            scopes_claim: "scope".into(),
            roles_claim: "roles".into(),
            tenant_claim: "tenant".into(),
        }
    }
    const NOW: u64 = 1_800_000_000;

    fn run(claims: &str) -> Result<Claims, Reason> {
        check(claims.as_bytes(), &rules(), NOW)
    }

    fn with(extra: &str) -> String {
        format!(
            r#"{{"iss":"https://id.example.com/","aud":"rampart","sub":"alice","exp":{}{extra}}}"#,
            NOW + 300
        )
    }

    #[test]
    fn accepts_and_extracts() {
        let c = run(&with(
            r#","tenant":"t1","scope":"read  write","roles":["admin"],"jti":"j1""#,
        ))
        .unwrap();
        assert_eq!(c.subject, "alice");
        assert_eq!(c.tenant.as_deref(), Some("t1"));
        assert_eq!(c.scopes, vec!["read", "write"]);
        assert_eq!(c.roles, vec!["admin"]);
        assert_eq!(c.jti.as_deref(), Some("j1"));
        let c = run(&with(r#","scope":["a","b"],"roles":"r1 r2""#)).unwrap();
        assert_eq!(c.scopes, vec!["a", "b"]);
        assert_eq!(c.roles, vec!["r1", "r2"]);
    }

    #[test]
    fn time_rules() {
        let base = r#""iss":"https://id.example.com/","aud":"rampart","sub":"a""#;
        let t = |s: String| run(&format!("{{{base},{s}}}"));
        assert_eq!(t(format!(r#""exp":{}"#, NOW - 61)), Err(reason::EXPIRED));
        assert_eq!(t(format!(r#""exp":{}"#, NOW - 60)), Err(reason::EXPIRED));
        assert!(t(format!(r#""exp":{}"#, NOW - 59)).is_ok(), "within skew");
        assert!(
            t(format!(r#""exp":{}.5"#, NOW + 10)).is_ok(),
            "fractional exp"
        );
        assert_eq!(t(format!(r#""exp":"{}""#, NOW + 100)), Err(reason::BAD_EXP));
        assert_eq!(t(r#""exp":-5"#.into()), Err(reason::BAD_EXP));
        assert_eq!(t(r#""exp":null"#.into()), Err(reason::BAD_EXP));
        assert_eq!(t(r#""nbf":1"#.into()), Err(reason::MISSING_EXP));
        let exp = NOW + 600;
        assert_eq!(
            t(format!(r#""exp":{exp},"nbf":{}"#, NOW + 61)),
            Err(reason::NOT_YET_VALID)
        );
        assert!(t(format!(r#""exp":{exp},"nbf":{}"#, NOW + 60)).is_ok());
        assert_eq!(t(format!(r#""exp":{exp},"nbf":"1""#)), Err(reason::BAD_NBF));
        assert_eq!(
            t(format!(r#""exp":{exp},"iat":{}"#, NOW + 61)),
            Err(reason::IAT_IN_FUTURE)
        );
        assert!(t(format!(r#""exp":{exp},"iat":{}"#, NOW + 60)).is_ok());
        assert_eq!(
            t(format!(r#""exp":{exp},"iat":true"#)),
            Err(reason::BAD_IAT)
        );
    }

    #[test]
    fn issuer_and_audience() {
        let exp = NOW + 100;
        assert_eq!(
            run(&format!(r#"{{"aud":"rampart","sub":"a","exp":{exp}}}"#)),
            Err(reason::MISSING_ISSUER)
        );
        assert_eq!(
            run(&format!(
                r#"{{"iss":"https://evil/","aud":"rampart","sub":"a","exp":{exp}}}"#
            )),
            Err(reason::BAD_ISSUER)
        );
        assert_eq!(
            run(&format!(
                r#"{{"iss":["https://id.example.com/"],"aud":"rampart","sub":"a","exp":{exp}}}"#
            )),
            Err(reason::BAD_ISSUER)
        );
        let iss = r#""iss":"https://id.example.com/""#;
        assert_eq!(
            run(&format!(r#"{{{iss},"sub":"a","exp":{exp}}}"#)),
            Err(reason::MISSING_AUDIENCE)
        );
        assert_eq!(
            run(&format!(r#"{{{iss},"aud":"x","sub":"a","exp":{exp}}}"#)),
            Err(reason::BAD_AUDIENCE)
        );
        assert_eq!(
            run(&format!(
                r#"{{{iss},"aud":["x","y"],"sub":"a","exp":{exp}}}"#
            )),
            Err(reason::BAD_AUDIENCE)
        );
        assert_eq!(
            run(&format!(r#"{{{iss},"aud":[],"sub":"a","exp":{exp}}}"#)),
            Err(reason::BAD_AUDIENCE)
        );
        assert_eq!(
            run(&format!(r#"{{{iss},"aud":["x",1],"sub":"a","exp":{exp}}}"#)),
            Err(reason::BAD_AUDIENCE)
        );
        assert!(
            run(&format!(
                r#"{{{iss},"aud":["x","other"],"sub":"a","exp":{exp}}}"#
            ))
            .is_ok()
        );
        // Neither configured: neither required.
        let mut r = rules();
        r.issuer = None;
        r.audience.clear();
        assert!(check(format!(r#"{{"sub":"a","exp":{exp}}}"#).as_bytes(), &r, NOW).is_ok());
    }

    #[test]
    fn subject_types_and_duplicates() {
        assert_eq!(run(&with(r#","sub":"b""#)), Err(reason::DUPLICATE_MEMBER));
        let exp = NOW + 100;
        let iss = r#""iss":"https://id.example.com/","aud":"rampart""#;
        assert_eq!(
            run(&format!(r#"{{{iss},"exp":{exp}}}"#)),
            Err(reason::MISSING_SUBJECT)
        );
        assert_eq!(
            run(&format!(r#"{{{iss},"sub":"","exp":{exp}}}"#)),
            Err(reason::MISSING_SUBJECT)
        );
        assert_eq!(
            run(&format!(r#"{{{iss},"sub":7,"exp":{exp}}}"#)),
            Err(reason::MISSING_SUBJECT)
        );
        assert_eq!(run(&with(r#","tenant":5"#)), Err(reason::BAD_CLAIM));
        assert_eq!(run(&with(r#","scope":{"a":1}"#)), Err(reason::BAD_CLAIM));
        assert_eq!(run(&with(r#","roles":[1]"#)), Err(reason::BAD_CLAIM));
        assert_eq!(run("[]"), Err(reason::BAD_JSON));
        assert_eq!(run("{"), Err(reason::BAD_JSON));
    }

    #[test]
    fn custom_claim_names() {
        let mut r = rules();
        r.subject_claim = "email".into();
        r.scopes_claim = "scp".into();
        r.tenant_claim = "org".into();
        let p = format!(
            r#"{{"iss":"https://id.example.com/","aud":"rampart","email":"a@x","scp":["s"],"org":"o","exp":{}}}"#,
            NOW + 10
        );
        let c = check(p.as_bytes(), &r, NOW).unwrap();
        assert_eq!(
            (c.subject.as_str(), c.tenant.as_deref(), c.scopes.len()),
            ("a@x", Some("o"), 1)
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = check(&bytes, &rules(), NOW);
        }

        #[test]
        fn exp_boundary(exp in 0u64..u64::MAX, now in 0u64..u64::MAX, skew in 0u64..600) {
            let r = check_times(exp, None, now, skew);
            prop_assert_eq!(r.is_ok(), (now as u128) < (exp as u128 + skew as u128));
        }
    }
}
