//! `rampart device create|rotate|revoke|list`: device credentials for signed requests
//! (RFC 9421, `auth.modes` entry `signature`).
//!
//! Guards against: HMAC secrets at rest in clear (they go only encrypted through the
//! vault, so an HMAC device needs `crypto.kek`: exit 2 naming it), secrets in listings
//! (`list` never shows one; `create`/`rotate` print a new HMAC secret once, on stdout
//! alone), private keys handed to rampart (`--public-key` takes public keys only).
//!
//! Exit codes (DESIGN.md §2): 0 done; 1 the store failed or the device does not exist;
//! 2 usage or configuration (bad flags, bad key file, no `crypto.kek` for HMAC).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use rampart_store::{
    DeviceAlg, DeviceRecord, DeviceSecret, Devices, NewDevice, RateLimitOverride, Store,
    StoreError, Vault, when,
};

use crate::apikey::{ConfigArgs, Format, fail, load_config, runtime};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Alg {
    #[value(name = "hmac-sha256")]
    HmacSha256,
    #[value(name = "ed25519")]
    Ed25519,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Create a device; an hmac-sha256 secret is printed once (stored only encrypted).
    #[command(
        after_help = "Examples:\n  rampart device create --config /etc/rampart/rampart.toml --name sensor-7 --tenant acme \\\n      --scopes \"telemetry\" --alg hmac-sha256\n  rampart device create --config rampart.toml --name cam-2 --tenant acme --scopes telemetry \\\n      --alg ed25519 --public-key cam-2.pub --format json\n\nThe HMAC secret (32 random bytes, base64url without padding; the HMAC key is the decoded\nbytes) goes to stdout alone (or as \"secret\" with --format json): store it now.\n--public-key takes an OpenSSH `ssh-ed25519 …` line or a PEM SubjectPublicKeyInfo.\nExit status: 0 created, 1 the store failed, 2 usage or configuration error (an hmac-sha256\ndevice needs crypto.kek)."
    )]
    Create {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The device name: the signatures' keyid (letters, digits, `.`, `_`, `-`).
        #[arg(long)]
        name: String,
        /// The tenant the device acts for.
        #[arg(long)]
        tenant: String,
        /// Space-separated scopes, e.g. "telemetry jobs".
        #[arg(long, default_value = "")]
        scopes: String,
        /// Space-separated roles.
        #[arg(long, default_value = "")]
        roles: String,
        /// The algorithm every signature of this device must use.
        #[arg(long, value_enum)]
        alg: Alg,
        /// Ed25519 public key file (OpenSSH line or PEM SPKI); ed25519 only.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Per-device rate-limit override: requests per minute.
        #[arg(long, value_name = "N")]
        rate_per_minute: Option<u64>,
        /// Per-device rate-limit override: burst.
        #[arg(long, value_name = "N")]
        rate_burst: Option<u64>,
        /// Per-device rate-limit override: a `rate_limit.tiers` name.
        #[arg(long, value_name = "TIER")]
        rate_tier: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Replace a device's credential; the old one stays valid for --overlap.
    #[command(
        after_help = "Examples:\n  rampart device rotate --config rampart.toml sensor-7\n  rampart device rotate --config rampart.toml cam-2 --public-key cam-2-new.pub --overlap 0s\n\nDuring the overlap (default 24h) old and new both verify, then only the new; --overlap 0s\nstops the old at once. Running gateways apply it within 5 s.\nExit status: 0 rotated, 1 no such device or the store failed, 2 usage or configuration error."
    )]
    Rotate {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The device name.
        name: String,
        /// The new Ed25519 public key file (ed25519 devices).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// How long the previous credential stays valid (0s, 30m, 24h, 7d).
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        overlap: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Revoke a device: none of its credentials verify any more (within 5 s).
    #[command(
        after_help = "Example:\n  rampart device revoke --config rampart.toml sensor-7\n\nExit status: 0 revoked (or already revoked), 1 no such device, 2 usage or configuration error."
    )]
    Revoke {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The device name.
        name: String,
    },
    /// List devices: metadata only, never a secret.
    #[command(after_help = "Example:\n  rampart device list --config rampart.toml --format json")]
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// `0s`/`0` or a duration of `when::parse_duration`, in seconds.
pub(crate) fn parse_overlap(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let digits = t.strip_suffix(['s', 'm', 'h', 'd', 'w']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
        return Ok(0);
    }
    when::parse_duration(t)
}

/// The raw Ed25519 public key in a file (OpenSSH line or PEM SPKI).
pub(crate) fn read_public_key(path: &Path) -> Result<[u8; 32], String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("--public-key {}: {e}", path.display()))?;
    if meta.len() > 16 * 1024 {
        return Err(format!(
            "--public-key {}: too large for a public key",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--public-key {}: {e}", path.display()))?;
    if text.contains("PRIVATE KEY") {
        return Err(format!(
            "--public-key {}: this is a private key; give rampart the public key only",
            path.display()
        ));
    }
    public_key_from_text(&text).map_err(|e| format!("--public-key {}: {e}", path.display()))
}

/// The raw Ed25519 public key of an OpenSSH line or a PEM SPKI block.
pub(crate) fn public_key_from_text(text: &str) -> Result<[u8; 32], String> {
    rampart_sig::DeviceKey::ed25519_from_text(text)
        .ok()
        .and_then(|k| k.ed25519_public())
        .ok_or_else(|| {
            "expected an OpenSSH `ssh-ed25519 AAAA…` line or a PEM `PUBLIC KEY` block holding an Ed25519 key"
                .to_owned()
        })
}

/// Opens the vault when `crypto.kek` is set (`Ok(None)` when it is not).
pub(crate) async fn open_vault(
    cfg: &rampart_config::Config,
    store: &Store,
) -> Result<Option<Vault>, u8> {
    let kms = match crate::crypto::kms_from_config(cfg) {
        Ok(Some(k)) => k,
        Ok(None) => return Ok(None),
        Err(e) => {
            eprintln!("error: crypto.kek: {e}");
            return Err(2);
        }
    };
    match Vault::open(store.clone(), Arc::clone(&kms), true).await {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Crypto(_)) => {
            eprintln!(
                "error: crypto.kek cannot unwrap the data keys in the credential store (wrong key-encryption key?)"
            );
            Err(2)
        }
        Err(e) => Err(fail(&e)),
    }
}

pub(crate) fn record_json(r: &DeviceRecord) -> serde_json::Value {
    serde_json::json!({
        "name": r.name,
        "tenant": r.tenant,
        "scopes": r.scopes,
        "roles": r.roles,
        "alg": r.alg.as_str(),
        "generation": r.generation,
        "public_key": r.public_key,
        "previous_valid_until": r.previous_valid_until.map(when::rfc3339),
        "created": when::rfc3339(r.created),
        "rotated": r.rotated.map(when::rfc3339),
        "revoked": r.revoked.map(when::rfc3339),
        "status": if r.revoked.is_some() { "revoked" } else { "active" },
        "rate_limit": {
            "per_minute": r.rate_limit.per_minute,
            "burst": r.rate_limit.burst,
            "tier": r.rate_limit.tier,
        },
    })
}

fn words(s: &str) -> Vec<String> {
    s.split_ascii_whitespace().map(str::to_owned).collect()
}

fn print_created(rec: &DeviceRecord, secret: Option<&DeviceSecret>, format: Format, verb: &str) {
    match format {
        Format::Json => {
            let mut v = record_json(rec);
            if let (Some(o), Some(s)) = (v.as_object_mut(), secret) {
                o.insert(
                    "secret".into(),
                    serde_json::Value::String(s.expose().to_owned()),
                );
            }
            println!("{v}");
        }
        Format::Text => {
            if let Some(s) = secret {
                println!("{}", s.expose());
            }
            eprintln!(
                "{verb} device {} ({}) for tenant {}; scopes: {}; generation {}",
                rec.name,
                rec.alg.as_str(),
                rec.tenant,
                if rec.scopes.is_empty() {
                    "-".into()
                } else {
                    rec.scopes.join(" ")
                },
                rec.generation,
            );
            if let Some(u) = rec.previous_valid_until.filter(|_| verb == "rotated") {
                eprintln!(
                    "the previous credential stays valid until {}",
                    when::rfc3339(u)
                );
            }
            if secret.is_some() {
                eprintln!(
                    "the secret above is shown once: store it now (only a ciphertext is kept)"
                );
            }
        }
    }
}

pub fn run(cmd: DeviceCommand) -> u8 {
    let paths = match &cmd {
        DeviceCommand::Create { cfg, .. }
        | DeviceCommand::Rotate { cfg, .. }
        | DeviceCommand::Revoke { cfg, .. }
        | DeviceCommand::List { cfg, .. } => cfg.config.clone(),
    };
    let cfg = match load_config(&paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Usage checks that need no store.
    let public_key = match &cmd {
        DeviceCommand::Create {
            public_key: Some(p),
            ..
        }
        | DeviceCommand::Rotate {
            public_key: Some(p),
            ..
        } => match read_public_key(p) {
            Ok(k) => Some(k),
            Err(m) => {
                eprintln!("error: {m}");
                return 2;
            }
        },
        _ => None,
    };
    if let DeviceCommand::Create {
        alg: Alg::HmacSha256,
        ..
    } = &cmd
    {
        if public_key.is_some() {
            eprintln!(
                "error: --public-key is for ed25519 devices; rampart generates an hmac-sha256 secret"
            );
            return 2;
        }
        if cfg
            .later
            .crypto
            .as_ref()
            .and_then(|c| c.kek.as_ref())
            .is_none()
        {
            eprintln!(
                "error: crypto.kek is not set: an hmac-sha256 device's secret is stored only encrypted; set [crypto] kek = \"env:RAMPART_KEK\" (32 bytes, base64) or use --alg ed25519"
            );
            return 2;
        }
    }
    if let DeviceCommand::Create {
        alg: Alg::Ed25519,
        public_key: None,
        ..
    } = &cmd
    {
        eprintln!("error: an ed25519 device needs --public-key FILE");
        return 2;
    }
    let overlap = match &cmd {
        DeviceCommand::Rotate { overlap, .. } => match parse_overlap(overlap) {
            Ok(v) => v,
            Err(m) => {
                eprintln!("error: --overlap {m}");
                return 2;
            }
        },
        _ => 0,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        let store = match Store::open(&cfg).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let needs_vault = matches!(
            &cmd,
            DeviceCommand::Create {
                alg: Alg::HmacSha256,
                ..
            } | DeviceCommand::Rotate {
                public_key: None,
                ..
            }
        );
        let vault = if needs_vault {
            match open_vault(&cfg, &store).await {
                Ok(v) => v,
                Err(code) => return code,
            }
        } else {
            None
        };
        let devices = Devices::new(&store, vault.as_ref());
        let code = match cmd {
            DeviceCommand::Create {
                name,
                tenant,
                scopes,
                roles,
                alg,
                rate_per_minute,
                rate_burst,
                rate_tier,
                format,
                ..
            } => {
                let req = NewDevice {
                    name,
                    tenant,
                    scopes: words(&scopes),
                    roles: words(&roles),
                    alg: match alg {
                        Alg::HmacSha256 => DeviceAlg::HmacSha256,
                        Alg::Ed25519 => DeviceAlg::Ed25519,
                    },
                    public_key,
                    rate_limit: RateLimitOverride {
                        per_minute: rate_per_minute,
                        burst: rate_burst,
                        tier: rate_tier,
                    },
                };
                match devices.create(req).await {
                    Ok((rec, secret)) => {
                        print_created(&rec, secret.as_ref(), format, "created");
                        0
                    }
                    Err(e) => fail(&e),
                }
            }
            DeviceCommand::Rotate { name, format, .. } => {
                match devices.rotate(&name, public_key, overlap).await {
                    Ok(Some((rec, secret))) => {
                        print_created(&rec, secret.as_ref(), format, "rotated");
                        0
                    }
                    Ok(None) => {
                        eprintln!("error: no device named `{}`", name.escape_debug());
                        1
                    }
                    Err(e) => fail(&e),
                }
            }
            DeviceCommand::Revoke { name, .. } => match devices.revoke(&name).await {
                Ok(Some(rec)) => {
                    println!(
                        "revoked device {}{}",
                        rec.name,
                        rec.revoked
                            .map(|t| format!(" at {}", when::rfc3339(t)))
                            .unwrap_or_default()
                    );
                    0
                }
                Ok(None) => {
                    eprintln!("error: no device named `{}`", name.escape_debug());
                    1
                }
                Err(e) => fail(&e),
            },
            DeviceCommand::List { format, .. } => match devices.list().await {
                Ok(rows) => {
                    match format {
                        Format::Json => {
                            let v: Vec<serde_json::Value> = rows.iter().map(record_json).collect();
                            println!("{}", serde_json::Value::Array(v));
                        }
                        Format::Text => {
                            println!(
                                "{:<24}  {:<8}  {:<12}  {:<12}  {:<24}  {:<4}  {:<20}",
                                "NAME", "STATUS", "ALG", "TENANT", "SCOPES", "GEN", "CREATED"
                            );
                            for r in &rows {
                                println!(
                                    "{:<24}  {:<8}  {:<12}  {:<12}  {:<24}  {:<4}  {:<20}",
                                    r.name,
                                    if r.revoked.is_some() {
                                        "revoked"
                                    } else {
                                        "active"
                                    },
                                    r.alg.as_str(),
                                    r.tenant,
                                    r.scopes.join(" "),
                                    r.generation,
                                    when::rfc3339(r.created),
                                );
                            }
                        }
                    }
                    0
                }
                Err(e) => fail(&e),
            },
        };
        store.close().await;
        code
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn overlaps() {
        assert_eq!(parse_overlap("0s").unwrap(), 0);
        assert_eq!(parse_overlap("0").unwrap(), 0);
        assert_eq!(parse_overlap("24h").unwrap(), 86_400);
        assert!(parse_overlap("").is_err());
        assert!(parse_overlap("-1s").is_err());
        assert!(parse_overlap("s").is_err());
    }
}
