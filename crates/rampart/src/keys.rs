//! `rampart keys generate|rotate|list|public`: the Ed25519 signing keyring.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rampart_audit::Paths;
use rampart_config::raw::SigningProvider;
use rampart_crypto::{FileProvider, KeyringFile, PublicKey, SigningKey};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make the first signing key (refused when one is active: use rotate).
    #[command(
        after_help = "Example:\n  rampart keys generate --config /etc/rampart/rampart.toml --key-id audit-2026\n\nWith signing.provider = \"file\" the private key is written to <data_dir>/keys/<key-id>.pem (0600). With \"env\" it is printed to stdout for your secret manager (SIGNING_PRIVATE_KEY, SIGNING_PUBLIC_KEY, KEY_ID); store it there and clear your terminal."
    )]
    Generate {
        #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Key id (default: signing.key_id, else `audit-<unix time>`).
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Make a new active key; earlier public keys stay in the keyring so old
    /// checkpoints and bundles still verify.
    #[command(
        after_help = "Example:\n  rampart keys rotate --config /etc/rampart/rampart.toml --key-id audit-2027\n\nThe running gateway signs with the new key after a restart."
    )]
    Rotate {
        #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Key id of the new key (default `audit-<unix time>`).
        #[arg(long)]
        key_id: Option<String>,
    },
    /// List every key of the keyring with status and fingerprint.
    #[command(after_help = "Example:\n  rampart keys list --config /etc/rampart/rampart.toml")]
    List {
        #[arg(long = "config", short = 'c', value_name = "FILE")]
        config: Vec<PathBuf>,
        /// A keyring file instead of the one under the configured data_dir.
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
    },
    /// Print public keys: PEM, OpenSSH, signed-note verifier keys or a JWKS.
    #[command(
        after_help = "Example:\n  rampart keys public --config /etc/rampart/rampart.toml --format note\n  rampart keys public --keyring keyring.json --format jwks --all"
    )]
    Public {
        #[arg(long = "config", short = 'c', value_name = "FILE")]
        config: Vec<PathBuf>,
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = PublicFormat::Pem)]
        format: PublicFormat,
        /// Every key, not only the active one.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PublicFormat {
    Pem,
    Openssh,
    /// `<name>+<hash>+<key>` verifier keys of C2SP signed-note / Go sumdb/note.
    Note,
    Jwks,
}

/// Loads the configuration for a CLI command; prints why not and returns exit code 2.
pub fn load_config(paths: &[PathBuf]) -> Result<rampart_config::Config, u8> {
    match rampart_config::load(paths) {
        Ok(c) => Ok(c),
        Err(e) => {
            for d in &e.errors {
                let line = d.line.map(|l| format!(":{l}")).unwrap_or_default();
                eprintln!("error: {}{line}: {}: {}", d.file, d.key, d.message);
            }
            Err(2)
        }
    }
}

fn paths_of(cfg: &rampart_config::Config) -> Result<Paths, u8> {
    Paths::from_config(cfg).map_err(|e| {
        eprintln!("error: {e}");
        2
    })
}

fn default_id() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("audit-{t}")
}

pub fn run(cmd: KeysCommand) -> u8 {
    let r = match cmd {
        KeysCommand::Generate { config, key_id } => make(&config, key_id, false),
        KeysCommand::Rotate { config, key_id } => make(&config, key_id, true),
        KeysCommand::List { config, keyring } => list(&config, keyring),
        KeysCommand::Public {
            config,
            keyring,
            format,
            all,
        } => public(&config, keyring, format, all),
    };
    r.unwrap_or_else(|c| c)
}

fn make(config: &[PathBuf], key_id: Option<String>, rotate: bool) -> Result<u8, u8> {
    let cfg = load_config(config)?;
    let paths = paths_of(&cfg)?;
    let bad_root = rampart_config::check_data_roots(&cfg)
        .into_iter()
        .filter(|f| f.severity == rampart_config::Severity::Error)
        .map(|f| eprintln!("error: [{}] {}: {}", f.code, f.path, f.message))
        .count();
    if bad_root > 0 {
        return Err(2);
    }
    rampart_audit::ensure_private_dir(&paths.keys_dir).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    let signing = cfg.later.signing.clone().unwrap_or_default();
    let id = key_id
        .or(if rotate { None } else { signing.key_id.clone() })
        .unwrap_or_else(default_id);
    let fail = |e: rampart_crypto::KeyError| {
        eprintln!("error: {e}");
        match e {
            rampart_crypto::KeyError::Io { .. } | rampart_crypto::KeyError::Crypto(_) => 1,
            _ => 2,
        }
    };
    match signing.provider.unwrap_or(SigningProvider::Env) {
        SigningProvider::File => {
            let p = FileProvider::new(&paths.keys_dir);
            let ring = if rotate {
                rampart_crypto::Keyring::rotate(&p, &paths.keyring, &id)
            } else {
                rampart_crypto::Keyring::generate(&p, &paths.keyring, &id)
            }
            .map_err(fail)?;
            let k = ring.active().public();
            println!(
                "{} key {} {} (private key {}, mode 0600)",
                if rotate { "rotated to" } else { "generated" },
                k.key_id(),
                k.fingerprint(),
                p.key_path(k.key_id()).display()
            );
        }
        SigningProvider::Env => {
            let mut file = KeyringFile::load(&paths.keyring).map_err(fail)?;
            if !rotate && let Some(a) = file.active_id() {
                eprintln!(
                    "error: {} already has an active key (`{a}`): use `rampart keys rotate`",
                    paths.keyring.display()
                );
                return Err(2);
            }
            let key = SigningKey::generate(&id).map_err(fail)?;
            file.add_active(key.public()).map_err(fail)?;
            file.save().map_err(fail)?;
            eprintln!(
                "signing.provider = \"env\": store these in your secret manager as KEY_ID, SIGNING_PRIVATE_KEY and SIGNING_PUBLIC_KEY; the gateway signs with it after a restart. Fingerprint {}",
                key.public().fingerprint()
            );
            println!("KEY_ID={id}");
            println!("SIGNING_PRIVATE_KEY=\"{}\"", key.to_pem().as_str());
            println!("SIGNING_PUBLIC_KEY=\"{}\"", key.public().to_pem());
        }
    }
    Ok(0)
}

fn keyring_file(config: &[PathBuf], keyring: Option<PathBuf>) -> Result<KeyringFile, u8> {
    let path = match keyring {
        Some(p) => p,
        None if !config.is_empty() => paths_of(&load_config(config)?)?.keyring,
        None => {
            eprintln!("error: give --config FILE or --keyring FILE");
            return Err(2);
        }
    };
    let f = KeyringFile::load(&path).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    if f.entries().is_empty() {
        eprintln!(
            "error: {}: no keys (run `rampart keys generate`)",
            path.display()
        );
        return Err(1);
    }
    Ok(f)
}

fn list(config: &[PathBuf], keyring: Option<PathBuf>) -> Result<u8, u8> {
    let f = keyring_file(config, keyring)?;
    println!(
        "{:<24} {:<8} {:<12} FINGERPRINT",
        "KEY ID", "STATUS", "CREATED"
    );
    for k in f.entries() {
        let status = match k.status {
            rampart_crypto::KeyStatus::Active => "active",
            rampart_crypto::KeyStatus::Retired => "retired",
        };
        println!(
            "{:<24} {:<8} {:<12} {}",
            k.key_id, status, k.created, k.fingerprint
        );
    }
    Ok(0)
}

fn public(
    config: &[PathBuf],
    keyring: Option<PathBuf>,
    format: PublicFormat,
    all: bool,
) -> Result<u8, u8> {
    let f = keyring_file(config, keyring)?;
    let active = f.active_id().map(str::to_owned);
    let keys: Vec<PublicKey> = f
        .public_keys()
        .into_iter()
        .filter(|k| all || Some(k.key_id()) == active.as_deref())
        .collect();
    match format {
        PublicFormat::Pem => keys.iter().for_each(|k| print!("{}", k.to_pem())),
        PublicFormat::Openssh => keys.iter().for_each(|k| println!("{}", k.to_openssh())),
        PublicFormat::Note => keys
            .iter()
            .for_each(|k| println!("{}", rampart_audit::note::verifier_key(k))),
        PublicFormat::Jwks => {
            let v: Vec<serde_json::Value> = keys
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                        "kid": k.key_id(), "x": URL_SAFE_NO_PAD.encode(k.raw()),
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "keys": v }));
        }
    }
    Ok(0)
}
