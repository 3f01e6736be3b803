//! `rampart token mint`: a dev-only HS256 token for trying the gateway out. Refused
//! (exit 2) unless the configuration has profile "dev" and `auth.jwt.hs256_secret`:
//! production tokens come from the identity provider, never from the gateway.

use std::path::PathBuf;

use rampart_jwt::{Clock as _, JwtSettings, MintRequest, SystemClock};

/// The arguments of `rampart token mint`.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    /// Configuration file(s) with [auth.jwt] hs256_secret, profile "dev".
    #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Subject (the `sub` claim, or the configured subject_claim).
    #[arg(long)]
    pub sub: String,
    /// Tenant claim.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Space-separated scopes, e.g. "jobs metrics".
    #[arg(long, default_value = "")]
    pub scopes: String,
    /// Space- or comma-separated roles.
    #[arg(long, default_value = "")]
    pub roles: String,
    /// Lifetime: 90s, 15m, 1h, 7d (or seconds).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: u64,
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    rampart_jwt::parse_ttl(s)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("`{s}` is not a duration like 90s, 15m, 1h or 7d"))
}

fn split(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn mint(args: &MintArgs) -> u8 {
    let cfg = match rampart_config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let settings = match JwtSettings::from_config(&cfg) {
        None => {
            eprintln!(
                "error: token mint needs an [auth.jwt] section with hs256_secret (profile \"dev\")"
            );
            return 2;
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
        Some(Ok(s)) => s,
    };
    let req = MintRequest {
        subject: args.sub.clone(),
        tenant: args.tenant.clone(),
        scopes: split(&args.scopes),
        roles: split(&args.roles),
        ttl_s: args.ttl,
    };
    match rampart_jwt::mint_hs256(&settings, &req, SystemClock.now_unix()) {
        Ok(t) => {
            println!("{t}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
