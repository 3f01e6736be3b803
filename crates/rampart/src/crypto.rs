//! `rampart crypto status|encrypt|decrypt|rotate-dek|rewrap|put|verify`: envelope
//! encryption of secrets at rest, and its wiring into `serve` (a wrong `crypto.kek`
//! refuses the start; no KEK is an `info` reason; the `crypto_*` metrics).
//!
//! Exit codes (DESIGN.md §2): 0 done; 1 a ciphertext or secret does not decrypt (tampered,
//! wrong key) or the store failed; 2 usage or configuration (no KEK, a malformed KEK, a
//! KEK that cannot unwrap the stored data keys).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use rampart_admin::{Health, MetricsSource, Reason, Severity};
use rampart_config::Config;
use rampart_crypto::envelope::EnvelopeError;
use rampart_crypto::{Kek, Kms, LocalKms};
use rampart_http::metrics::{counter, gauge};
use rampart_store::{Store, StoreError, Vault};
use zeroize::Zeroizing;

use crate::apikey::{ConfigArgs, Format, load_config, runtime};

/// Largest input `encrypt`/`decrypt`/`put` read.
const MAX_INPUT: u64 = 64 << 20;
/// Context bound into operator ciphertexts (`crypto encrypt`), so they cannot be
/// swapped with a stored secret's ciphertext.
const CLI_CONTEXT: &[u8] = b"rampart-cli-v1";

#[derive(Debug, Subcommand)]
pub enum CryptoCommand {
    /// Mode, data-key count, active key age, stored secrets (never key material).
    #[command(
        after_help = "Example:\n  rampart crypto status --config /etc/rampart/rampart.toml --format json\n\nWithout crypto.kek it prints `disabled` (exit 0)."
    )]
    Status {
        #[command(flatten)]
        cfg: ConfigArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Encrypt a file (or stdin) under the primary data key; base64 text out.
    #[command(
        after_help = "Example:\n  rampart crypto encrypt --config rampart.toml db-password.txt --out db-password.enc\n  echo -n hunter2 | rampart crypto encrypt --config rampart.toml > secret.enc"
    )]
    Encrypt {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Input file; `-` or absent = stdin.
        input: Option<PathBuf>,
        /// Output file (created 0600); absent = stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Decrypt what `encrypt` wrote. Exit 1, printing nothing of the plaintext, on a
    /// tampered ciphertext or a wrong key.
    #[command(
        after_help = "Example:\n  rampart crypto decrypt --config rampart.toml db-password.enc --out db-password.txt"
    )]
    Decrypt {
        #[command(flatten)]
        cfg: ConfigArgs,
        input: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make a new primary data key; old keys are kept and still decrypt.
    #[command(
        after_help = "Example:\n  rampart crypto rotate-dek --config rampart.toml --reencrypt"
    )]
    RotateDek {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Re-encrypt every stored secret under the new key (same transaction).
        #[arg(long)]
        reencrypt: bool,
    },
    /// Rewrap every data key under a new KEK in one transaction (no secret re-encrypted).
    /// Then point crypto.kek at the new KEK and restart.
    #[command(
        after_help = "Example:\n  RAMPART_KEK_NEW=$(head -c32 /dev/urandom | base64) rampart crypto rewrap --config rampart.toml --new-kek env:RAMPART_KEK_NEW"
    )]
    Rewrap {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// `env:NAME` or `file:PATH` (mode 0600) holding 32 bytes, base64.
        #[arg(long, value_name = "env:NAME|file:PATH")]
        new_kek: String,
    },
    /// Store a secret (from a file or stdin) encrypted in the credential store.
    #[command(
        after_help = "Example:\n  rampart crypto put --config rampart.toml --kind operator smtp-password < pw.txt"
    )]
    Put {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Secret name (letters, digits, `_.-:/@`).
        name: String,
        input: Option<PathBuf>,
        #[arg(long, default_value = "operator")]
        kind: String,
    },
    /// Decrypt every stored secret; exit 1 if one does not.
    #[command(after_help = "Example:\n  rampart crypto verify --config rampart.toml")]
    Verify {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

pub fn run(cmd: CryptoCommand) -> u8 {
    let Ok(rt) = runtime() else { return 1 };
    rt.block_on(async {
        match cmd {
            CryptoCommand::Status { cfg, format } => status(&cfg.config, format).await,
            CryptoCommand::Encrypt { cfg, input, out } => {
                encrypt(&cfg.config, input.as_deref(), out.as_deref()).await
            }
            CryptoCommand::Decrypt { cfg, input, out } => {
                decrypt(&cfg.config, input.as_deref(), out.as_deref()).await
            }
            CryptoCommand::RotateDek { cfg, reencrypt } => rotate(&cfg.config, reencrypt).await,
            CryptoCommand::Rewrap { cfg, new_kek } => rewrap(&cfg.config, &new_kek).await,
            CryptoCommand::Put {
                cfg,
                name,
                input,
                kind,
            } => put(&cfg.config, &name, &kind, input.as_deref()).await,
            CryptoCommand::Verify { cfg } => verify(&cfg.config).await,
        }
        .unwrap_or_else(|c| c)
    })
}

/// The KEK of `crypto.kek`; `None` when crypto is disabled.
pub fn kms_from_config(cfg: &Config) -> Result<Option<Arc<dyn Kms>>, String> {
    let Some(secret) = cfg.later.crypto.as_ref().and_then(|c| c.kek.as_ref()) else {
        return Ok(None);
    };
    let kek = Kek::from_base64(secret.expose()).map_err(|e| e.to_string())?;
    let kms = LocalKms::new(&kek).map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(kms)))
}

fn store_fail(e: &StoreError) -> u8 {
    store_fail_with(e, 2)
}

/// `wrong_kek`: the exit code when crypto.kek does not unwrap the stored data keys (2, a
/// configuration error, except for `decrypt`, where a wrong key is a failed decryption).
fn store_fail_with(e: &StoreError, wrong_kek: u8) -> u8 {
    match e {
        StoreError::Crypto(EnvelopeError::Unwrap { .. } | EnvelopeError::Kek(_)) => {
            eprintln!(
                "error: crypto.kek cannot unwrap the data keys in the credential store (wrong key-encryption key?)"
            );
            wrong_kek
        }
        StoreError::Crypto(_) => {
            eprintln!("error: {e}");
            1
        }
        _ => crate::apikey::fail(e),
    }
}

async fn open_vault(paths: &[PathBuf], create: bool) -> Result<Vault, u8> {
    open_vault_with(paths, create, 2).await
}

async fn open_vault_with(paths: &[PathBuf], create: bool, wrong_kek: u8) -> Result<Vault, u8> {
    let cfg = load_config(paths)?;
    let kms = match kms_from_config(&cfg) {
        Ok(Some(k)) => k,
        Ok(None) => {
            eprintln!(
                "error: crypto.kek is not set: envelope encryption is disabled (set [crypto] kek = \"env:RAMPART_KEK\", 32 bytes base64)"
            );
            return Err(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Err(2);
        }
    };
    let store = Store::open(&cfg).await.map_err(|e| store_fail(&e))?;
    Vault::open(store, kms, create)
        .await
        .map_err(|e| store_fail_with(&e, wrong_kek))
}

fn read_input(input: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, u8> {
    let mut buf = Zeroizing::new(Vec::new());
    let r = match input {
        None => std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut buf),
        Some(p) if p == Path::new("-") => {
            std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut buf)
        }
        Some(p) => std::fs::File::open(p).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut buf)),
    };
    if let Err(e) = r {
        eprintln!("error: cannot read the input: {e}");
        return Err(2);
    }
    if buf.len() as u64 > MAX_INPUT {
        eprintln!("error: the input is larger than {MAX_INPUT} bytes");
        return Err(2);
    }
    Ok(buf)
}

fn write_output(out: Option<&Path>, bytes: &[u8]) -> Result<(), u8> {
    let r = match out {
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(bytes).and_then(|()| o.flush())
        }
        Some(p) => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(p)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all())),
    };
    r.map_err(|e| {
        eprintln!("error: cannot write the output: {e}");
        1
    })
}

async fn status(paths: &[PathBuf], format: Format) -> Result<u8, u8> {
    let cfg = load_config(paths)?;
    let kms = kms_from_config(&cfg).map_err(|e| {
        eprintln!("error: {e}");
        2u8
    })?;
    let Some(kms) = kms else {
        match format {
            Format::Text => println!("crypto: disabled (crypto.kek is not set)"),
            Format::Json => println!("{}", serde_json::json!({ "mode": "disabled" })),
        }
        return Ok(0);
    };
    let store = Store::open(&cfg).await.map_err(|e| store_fail(&e))?;
    // Prove the KEK opens every stored key, without creating one.
    let vault = Vault::open(store, kms, false)
        .await
        .map_err(|e| store_fail(&e))?;
    let stats = vault
        .store()
        .key_stats()
        .await
        .map_err(|e| store_fail(&e))?;
    let age = stats
        .primary_created
        .map(|c| (rampart_store::when::now_unix() - c).max(0));
    match format {
        Format::Text => {
            println!("crypto: enabled (kms {})", vault.kms_name());
            println!("data keys: {}", stats.data_keys);
            match (&stats.primary_id, age) {
                (Some(id), Some(a)) => println!("active data key: {id} (age {a} s)"),
                _ => println!("active data key: none yet (made on first use)"),
            }
            println!("secrets: {}", stats.secrets);
        }
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "mode": "enabled",
                "kms": vault.kms_name(),
                "data_keys": stats.data_keys,
                "active_key_id": stats.primary_id,
                "active_key_age_seconds": age,
                "secrets": stats.secrets,
            })
        ),
    }
    Ok(0)
}

async fn encrypt(paths: &[PathBuf], input: Option<&Path>, out: Option<&Path>) -> Result<u8, u8> {
    let vault = open_vault(paths, true).await?;
    let plain = read_input(input)?;
    let ct = vault
        .encrypt(&plain, CLI_CONTEXT)
        .map_err(|e| store_fail(&e))?;
    let mut text = STANDARD.encode(ct);
    text.push('\n');
    write_output(out, text.as_bytes())?;
    Ok(0)
}

async fn decrypt(paths: &[PathBuf], input: Option<&Path>, out: Option<&Path>) -> Result<u8, u8> {
    // A wrong key is a decryption failure for this command (exit 1).
    let vault = open_vault_with(paths, false, 1).await?;
    let text = read_input(input)?;
    let Ok(ct) = STANDARD.decode(text.trim_ascii()) else {
        eprintln!("error: the input is not a rampart ciphertext (base64 expected)");
        return Err(1);
    };
    // Decrypted in memory in full before a byte is written: a tampered input prints nothing.
    match vault.decrypt(&ct, CLI_CONTEXT) {
        Ok(plain) => {
            write_output(out, &plain)?;
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: decryption failed: {e}");
            Err(1)
        }
    }
}

async fn rotate(paths: &[PathBuf], reencrypt: bool) -> Result<u8, u8> {
    let mut vault = open_vault(paths, true).await?;
    let (id, n) = vault.rotate(reencrypt).await.map_err(|e| store_fail(&e))?;
    println!("new primary data key {id}");
    if reencrypt {
        println!("re-encrypted {n} secrets");
    }
    Ok(0)
}

async fn rewrap(paths: &[PathBuf], new_kek: &str) -> Result<u8, u8> {
    if !(new_kek.starts_with("env:") || new_kek.starts_with("file:")) {
        eprintln!("error: --new-kek must be env:NAME or file:PATH, never the key itself");
        return Err(2);
    }
    let secret = rampart_config::secret::resolve_reference(new_kek).map_err(|e| {
        eprintln!("error: --new-kek: {e}");
        2u8
    })?;
    let kek = Kek::from_base64(secret.expose()).map_err(|e| {
        eprintln!(
            "error: --new-kek: {}",
            e.to_string().replace("crypto.kek: ", "")
        );
        2u8
    })?;
    let kms: Arc<dyn Kms> = Arc::new(LocalKms::new(&kek).map_err(|e| {
        eprintln!("error: {e}");
        1u8
    })?);
    let mut vault = open_vault(paths, false).await?;
    let n = vault.rewrap(kms).await.map_err(|e| store_fail(&e))?;
    println!(
        "rewrapped {n} data keys under the new key-encryption key; set crypto.kek to {new_kek} and restart the gateways"
    );
    Ok(0)
}

async fn put(paths: &[PathBuf], name: &str, kind: &str, input: Option<&Path>) -> Result<u8, u8> {
    let vault = open_vault(paths, true).await?;
    let plain = read_input(input)?;
    vault
        .put_secret(name, kind, &plain)
        .await
        .map_err(|e| store_fail(&e))?;
    println!("stored secret {name}");
    Ok(0)
}

async fn verify(paths: &[PathBuf]) -> Result<u8, u8> {
    let vault = open_vault(paths, false).await?;
    let (ok, bad) = vault.verify_all().await.map_err(|e| store_fail(&e))?;
    for b in &bad {
        eprintln!("error: secret {b} does not decrypt");
    }
    println!("{ok} secrets decrypt, {} do not", bad.len());
    Ok(u8::from(!bad.is_empty()))
}

/// `crypto_*` metrics, refreshed from the store every few seconds (a `rotate-dek` run
/// from the command line shows up without a restart).
#[derive(Default)]
pub struct CryptoMetrics {
    ready: AtomicBool,
    /// The running KEK no longer unwraps the stored data keys.
    kek_mismatch: AtomicBool,
    keys: AtomicI64,
    primary_created: AtomicI64,
}

impl MetricsSource for CryptoMetrics {
    fn encode(&self, out: &mut String) {
        gauge(
            out,
            "crypto_ready",
            "1 when envelope encryption is enabled and every data key unwrapped, else 0.",
            i64::from(self.ready.load(Ordering::Relaxed)),
        );
        counter(
            out,
            "crypto_keys_total",
            "Data keys created (rotation keeps old keys, so this never decreases).",
            u64::try_from(self.keys.load(Ordering::Relaxed)).unwrap_or(0),
        );
        let created = self.primary_created.load(Ordering::Relaxed);
        let age = if created > 0 {
            (rampart_store::when::now_unix() - created).max(0)
        } else {
            0
        };
        gauge(
            out,
            "crypto_active_label_age_seconds",
            "Seconds since the active (primary) data key was created; 0 when disabled.",
            age,
        );
    }
}

/// The `crypto_disabled` health reason (info, not a failure).
pub fn health_reasons(cfg: &Config, out: &mut Vec<Reason>) {
    if cfg
        .later
        .crypto
        .as_ref()
        .and_then(|c| c.kek.as_ref())
        .is_none()
    {
        out.push(Reason::new(
            "crypto_disabled",
            Severity::Info,
            "crypto.kek is not set: envelope encryption is disabled (no stored device secrets)",
        ));
    }
}

/// Opens the vault at start. With a KEK, every stored data key must unwrap (else `Err`:
/// `serve` exits 2 naming `crypto.kek`); the first data key is made when there is none.
/// Every 5 s after that, the key statistics are refreshed and the KEK checked again: once
/// it no longer unwraps the stored data keys (`crypto rewrap` ran against this store), a
/// `warn` reason `crypto_kek_mismatch` and `crypto_ready 0` say so until it does again
/// (a restart with the new `crypto.kek`); device changes cannot be loaded meanwhile.
pub async fn start(cfg: &Config, health: &Arc<Health>) -> Result<Arc<CryptoMetrics>, ()> {
    let metrics = Arc::new(CryptoMetrics::default());
    let kms = match kms_from_config(cfg) {
        Ok(Some(k)) => k,
        Ok(None) => return Ok(metrics),
        Err(e) => {
            tracing::error!(key = "crypto.kek", "{e}");
            return Err(());
        }
    };
    let store = Store::open(cfg).await.map_err(|e| {
        tracing::error!(error = %e, "crypto: the credential store cannot be opened");
    })?;
    let vault = Vault::open(store.clone(), Arc::clone(&kms), true)
        .await
        .map_err(|e| match e {
            StoreError::Crypto(EnvelopeError::Unwrap { .. }) => tracing::error!(
                key = "crypto.kek",
                "crypto.kek cannot unwrap the data keys in the credential store: wrong key-encryption key; not starting"
            ),
            other => tracing::error!(error = %other, "crypto: data keys cannot be loaded"),
        })?;
    tracing::info!(
        data_keys = vault.keyset().len(),
        kms = vault.kms_name(),
        "envelope encryption ready"
    );
    drop(vault);
    metrics.ready.store(true, Ordering::Relaxed);
    let probe = Arc::clone(&metrics);
    health.add_probe(Arc::new(move || {
        probe.kek_mismatch.load(Ordering::Relaxed).then(|| {
            Reason::new(
                "crypto_kek_mismatch",
                Severity::Warn,
                "crypto.kek no longer unwraps the data keys in the credential store (rewrapped under a new key-encryption key?): restart with the new crypto.kek; device changes are not loaded until then",
            )
        })
    }));
    refresh(&store, &metrics).await;
    let m = Arc::clone(&metrics);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            refresh(&store, &m).await;
            check_kek(&store, &kms, &m).await;
        }
    });
    Ok(metrics)
}

/// Whether the running KEK still unwraps every stored data key (see [`start`]). A store
/// that cannot be read says nothing about the KEK: the state is left as it was.
async fn check_kek(store: &Store, kms: &Arc<dyn Kms>, m: &CryptoMetrics) {
    let mismatch = match Vault::open(store.clone(), Arc::clone(kms), false).await {
        Ok(_) => false,
        Err(StoreError::Crypto(EnvelopeError::Unwrap { .. } | EnvelopeError::Kek(_))) => true,
        Err(e) => {
            tracing::debug!(error = %e, "crypto: KEK check skipped");
            return;
        }
    };
    if m.kek_mismatch.swap(mismatch, Ordering::Relaxed) != mismatch && mismatch {
        tracing::warn!(
            key = "crypto.kek",
            "crypto.kek no longer unwraps the data keys in the credential store; restart with the new crypto.kek"
        );
    }
    m.ready.store(!mismatch, Ordering::Relaxed);
}

async fn refresh(store: &Store, m: &CryptoMetrics) {
    match store.key_stats().await {
        Ok(s) => {
            m.keys.store(s.data_keys, Ordering::Relaxed);
            m.primary_created
                .store(s.primary_created.unwrap_or(0), Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(error = %e, "crypto: key statistics not refreshed"),
    }
}
