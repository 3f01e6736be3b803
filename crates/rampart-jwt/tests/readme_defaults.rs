//! The README's `[auth.jwt]` reference block shows the code's defaults.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rampart_config::Profile;
use rampart_jwt::{JwksSource, JwtSettings};

#[test]
fn readme_auth_jwt_block_matches_the_defaults() {
    let readme = include_str!("../../../README.md");
    let start = readme.find("```toml reference\n").unwrap() + "```toml reference\n".len();
    let len = readme[start..].find("```").unwrap();
    let block = &readme[start..start + len];
    assert!(block.contains("[auth.jwt]"));
    let cfg = rampart_config::load_from_strs(&[("README.md", block)], &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let s = JwtSettings::from_config(&cfg).unwrap().unwrap();
    let d = JwtSettings::new(Profile::Dev, None);
    assert_eq!(s.allowed_algs, d.allowed_algs);
    assert_eq!(s.claims.clock_skew_s, d.claims.clock_skew_s);
    assert_eq!(s.claims.subject_claim, d.claims.subject_claim);
    assert_eq!(s.claims.scopes_claim, d.claims.scopes_claim);
    assert_eq!(s.claims.roles_claim, d.claims.roles_claim);
    assert_eq!(s.claims.tenant_claim, d.claims.tenant_claim);
    assert_eq!(s.jwks_ttl, d.jwks_ttl);
    assert_eq!(s.jwks_timeout, d.jwks_timeout);
    assert_eq!(s.jwks_max_attempts, d.jwks_max_attempts);
    assert_eq!(s.jwks_backoff, d.jwks_backoff);
    assert_eq!(s.jwks_max_backoff, d.jwks_max_backoff);
    assert_eq!(s.jwks_max_stale, d.jwks_max_stale);
    assert_eq!(s.max_token_bytes, d.max_token_bytes);
    assert_eq!(s.cache_entries, d.cache_entries);
    assert!(matches!(s.jwks, Some(JwksSource::Url(_))));
    assert_eq!(s.claims.audience, vec!["rampart".to_owned()]);
}
