//! `rampart apikey create|list|revoke`: API keys in the credential store.
//!
//! Exit codes (DESIGN.md §2): 0 done; 1 the store failed or the key to revoke does not
//! exist; 2 usage or configuration (bad flags, no pepper, a store file or URL the rules
//! refuse).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use rampart_store::{ApiKeyRecord, ApiKeys, NewApiKey, RateLimitOverride, Store, StoreError, when};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file; repeat to overlay (later files win).
    #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it once (it is stored only as a keyed hash).
    #[command(
        after_help = "Example:\n  rampart apikey create --config /etc/rampart/rampart.toml --name ci-deploy --tenant acme \\\n      --scopes \"jobs metrics\" --roles reader --expires 90d\n\nThe key (rpk_…) goes to stdout alone (or as \"key\" with --format json); store it now, it cannot be shown again."
    )]
    Create {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// What the key is for (shown by `list`).
        #[arg(long)]
        name: String,
        /// The tenant the key acts for.
        #[arg(long)]
        tenant: String,
        /// Space-separated scopes, e.g. "jobs metrics".
        #[arg(long, default_value = "")]
        scopes: String,
        /// Space-separated roles, e.g. "reader".
        #[arg(long, default_value = "")]
        roles: String,
        /// Lifetime (90d, 12h, 2w) or an RFC 3339 time; default: no expiry.
        #[arg(long, value_name = "DURATION|RFC3339")]
        expires: Option<String>,
        /// Per-key rate-limit override: requests per minute.
        #[arg(long, value_name = "N")]
        rate_per_minute: Option<u64>,
        /// Per-key rate-limit override: burst.
        #[arg(long, value_name = "N")]
        rate_burst: Option<u64>,
        /// Per-key rate-limit override: a `rate_limit.tiers` name.
        #[arg(long, value_name = "TIER")]
        rate_tier: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List keys: metadata only, never a key or its hash.
    #[command(
        after_help = "Example:\n  rampart apikey list --config /etc/rampart/rampart.toml --format json"
    )]
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Revoke a key by id (the 12 characters after `rpk_`); running gateways refuse it
    /// within 5 s (at once through Redis when `[redis] url` is set).
    #[command(
        after_help = "Example:\n  rampart apikey revoke --config /etc/rampart/rampart.toml 4fGh7Kq2LmN9\n\nExit status: 0 revoked (or already revoked), 1 no such key, 2 usage or configuration error."
    )]
    Revoke {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The key id.
        id: String,
    },
}

/// Prints a store error and returns its exit code.
pub(crate) fn fail(e: &StoreError) -> u8 {
    eprintln!("error: {e}");
    if e.is_usage() { 2 } else { 1 }
}

/// Loads the configuration (errors are printed; exit 2).
pub(crate) fn load_config(paths: &[PathBuf]) -> Result<rampart_config::Config, u8> {
    match rampart_config::load(paths) {
        Ok(c) => Ok(c),
        Err(e) => {
            for d in &e.errors {
                eprintln!("error: {d}");
            }
            Err(2)
        }
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            1
        })
}

/// Reports a failed Redis publish (the store write stood).
pub(crate) fn note_publish(published: Option<&Result<(), StoreError>>) {
    if let Some(Err(e)) = published {
        eprintln!(
            "warning: stored, but not published to Redis ({e}); running gateways pick it up from the store within 5 s"
        );
    }
}

pub fn run(cmd: ApiKeyCommand) -> u8 {
    let paths = match &cmd {
        ApiKeyCommand::Create { cfg, .. }
        | ApiKeyCommand::List { cfg, .. }
        | ApiKeyCommand::Revoke { cfg, .. } => cfg.config.clone(),
    };
    let cfg = match load_config(&paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        // Refuse early, before touching the store, when create cannot work.
        if matches!(cmd, ApiKeyCommand::Create { .. })
            && let Err(e) = rampart_store::pepper_from_config(&cfg)
        {
            return fail(&e);
        }
        let store = match Store::open(&cfg).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let code = match cmd {
            ApiKeyCommand::Create {
                cfg: _,
                name,
                tenant,
                scopes,
                roles,
                expires,
                rate_per_minute,
                rate_burst,
                rate_tier,
                format,
            } => {
                let expires = match expires
                    .as_deref()
                    .map(|s| when::parse_until(s, when::now_unix()))
                {
                    None => None,
                    Some(Ok(t)) => Some(t),
                    Some(Err(m)) => {
                        eprintln!("error: --expires {m}");
                        return 2;
                    }
                };
                let req = NewApiKey {
                    name,
                    tenant,
                    scopes: words(&scopes),
                    roles: words(&roles),
                    expires,
                    rate_limit: RateLimitOverride {
                        per_minute: rate_per_minute,
                        burst: rate_burst,
                        tier: rate_tier,
                    },
                };
                create(&store, &cfg, req, format).await
            }
            ApiKeyCommand::List { format, .. } => list(&store, format).await,
            ApiKeyCommand::Revoke { id, .. } => revoke(&store, &id).await,
        };
        store.close().await;
        code
    })
}

fn words(s: &str) -> Vec<String> {
    s.split_ascii_whitespace().map(str::to_owned).collect()
}

pub(crate) fn record_json(r: &ApiKeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "name": r.name,
        "tenant": r.tenant,
        "scopes": r.scopes,
        "roles": r.roles,
        "created": when::rfc3339(r.created),
        "expires": r.expires.map(when::rfc3339),
        "revoked": r.revoked.map(when::rfc3339),
        "status": status(r),
        "rate_limit": {
            "per_minute": r.rate_limit.per_minute,
            "burst": r.rate_limit.burst,
            "tier": r.rate_limit.tier,
        },
    })
}

fn status(r: &ApiKeyRecord) -> &'static str {
    if r.revoked.is_some() {
        "revoked"
    } else if r.is_expired_at(when::now_unix()) {
        "expired"
    } else {
        "active"
    }
}

async fn create(store: &Store, cfg: &rampart_config::Config, req: NewApiKey, format: Format) -> u8 {
    let keys = match ApiKeys::from_config(store.clone(), cfg) {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    let (rec, secret) = match keys.create(req).await {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    match format {
        Format::Text => {
            println!("{}", secret.expose());
            eprintln!(
                "created API key {} ({}) for tenant {}; scopes: {}; expires: {}",
                rec.id,
                rec.name,
                rec.tenant,
                if rec.scopes.is_empty() {
                    "-".into()
                } else {
                    rec.scopes.join(" ")
                },
                rec.expires.map_or_else(|| "never".into(), when::rfc3339),
            );
            eprintln!("the key above is shown once: store it now (only a keyed hash is kept)");
        }
        Format::Json => {
            let mut v = record_json(&rec);
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "key".into(),
                    serde_json::Value::String(secret.expose().to_owned()),
                );
            }
            println!("{v}");
        }
    }
    0
}

async fn list(store: &Store, format: Format) -> u8 {
    let rows = match rampart_store::list_api_keys(store).await {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows.iter().map(record_json).collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Text => {
            println!(
                "{:<12}  {:<8}  {:<20}  {:<12}  {:<24}  {:<12}  {:<20}  {:<20}",
                "ID", "STATUS", "NAME", "TENANT", "SCOPES", "ROLES", "CREATED", "EXPIRES"
            );
            for r in &rows {
                println!(
                    "{:<12}  {:<8}  {:<20}  {:<12}  {:<24}  {:<12}  {:<20}  {:<20}",
                    r.id,
                    status(r),
                    r.name,
                    r.tenant,
                    r.scopes.join(" "),
                    r.roles.join(" "),
                    when::rfc3339(r.created),
                    r.expires.map_or_else(|| "never".into(), when::rfc3339),
                );
            }
        }
    }
    0
}

async fn revoke(store: &Store, id: &str) -> u8 {
    match rampart_store::Revocations::new(store.clone())
        .revoke_api_key(id)
        .await
    {
        Ok(Some((rev, published))) => {
            note_publish(published.as_ref());
            println!(
                "revoked API key {id}{}",
                rev.until
                    .map(|u| format!(
                        " (revocation entry lapses {} with the key)",
                        when::rfc3339(u)
                    ))
                    .unwrap_or_default()
            );
            0
        }
        Ok(None) => {
            eprintln!("error: no API key with id `{}`", id.escape_debug());
            1
        }
        Err(e) => fail(&e),
    }
}
