//! `rampart evidence pack|verify`: signed evidence bundles.
//!
//! A bundle is a `.tar.gz` holding `files/<path>` (the evidence, paths relative to the
//! packed directory), `statement.json` (an in-toto Statement v1 whose subjects are the
//! files with their SHA-256) and `envelope.dsse.json` (a DSSE envelope of that statement,
//! signed with the active Ed25519 signing key; `keyid` = the key's `SHA256:` fingerprint).
//!
//! `verify` trusts only the keyring it is given (never a key inside the bundle), checks
//! every digest both ways (no file without a subject, no subject without its file) and
//! reads the bundle in memory within fixed bounds; it never extracts to disk.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use aws_lc_rs::digest::{SHA256, digest};
use clap::Subcommand;
use flate2::Compression;
use flate2::write::GzEncoder;
use rampart_crypto::TrustedKeys;
use rampart_crypto::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1};
use serde_json::json;

/// The in-toto predicate type of a rampart evidence bundle.
pub const PREDICATE_TYPE: &str = "https://rampart.dev/evidence-bundle/v1";
/// The reader's bounds (`rampart_crypto::bundle`), which `pack` keeps to as well.
use rampart_crypto::bundle::{MAX_FILES, MAX_TOTAL_BYTES};

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Pack DIR into a signed bundle (.tar.gz), written under an allowed_data_roots entry.
    #[command(
        after_help = "Example:\n  rampart evidence pack --config /etc/rampart/rampart.toml ./evidence-2026Q4 --out /var/lib/rampart/evidence/2026Q4.tar.gz\n\nThe bundle holds files/…, statement.json (in-toto Statement v1) and envelope.dsse.json (DSSE, signed with the active signing key). Mode 0640."
    )]
    Pack {
        #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// The directory to pack (regular files; symlinks are refused).
        dir: PathBuf,
        /// The bundle to write; must lie under an allowed_data_roots entry.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check every digest and the signature against the keyring. Exit 1 on any mismatch.
    #[command(
        after_help = "Examples:\n  rampart evidence verify --keyring keyring.json 2026Q4.tar.gz\n  rampart evidence verify --config /etc/rampart/rampart.toml 2026Q4.tar.gz\n\nBundles signed before a key rotation still verify: the keyring keeps every public key."
    )]
    Verify {
        /// The keyring to trust (a copy of <data_dir>/keys/keyring.json).
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
        /// Or the configuration whose keyring to trust.
        #[arg(long = "config", short = 'c', value_name = "FILE")]
        config: Vec<PathBuf>,
        bundle: PathBuf,
    },
}

pub fn run(cmd: EvidenceCommand) -> u8 {
    match cmd {
        EvidenceCommand::Pack { config, dir, out } => pack(&config, &dir, &out),
        EvidenceCommand::Verify {
            keyring,
            config,
            bundle,
        } => verify(keyring, &config, &bundle),
    }
    .unwrap_or_else(|c| c)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Relative paths of every regular file under `dir`, sorted. Symlinks and special files
/// are refused (a bundle says exactly what was there).
fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in rd {
            let e = e.map_err(|e| format!("{}: {e}", d.display()))?;
            let p = e.path();
            let ft = e.file_type().map_err(|e| format!("{}: {e}", p.display()))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(dir)
                    .ok()
                    .and_then(Path::to_str)
                    .ok_or_else(|| format!("{}: the path is not UTF-8", p.display()))?
                    .to_owned();
                out.push((rel, p));
                if out.len() > MAX_FILES {
                    return Err(format!("more than {MAX_FILES} files"));
                }
            } else {
                return Err(format!(
                    "{}: not a regular file or directory (symlinks are refused)",
                    p.display()
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `--out` must lie in an existing directory under an `allowed_data_roots` entry that
/// passes the data-root checks (DESIGN.md §6).
fn check_out(cfg: &rampart_config::Config, out: &Path) -> Result<(), String> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or("--out needs a directory")?;
    if !out.is_absolute() || out.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("--out must be an absolute path without `..`".into());
    }
    // Compared after resolving symlinks too: a link inside a root must not lead out.
    let real = parent
        .canonicalize()
        .map_err(|e| format!("--out directory {}: {e}", parent.display()))?;
    if !cfg
        .server
        .allowed_data_roots
        .iter()
        .any(|r| parent.starts_with(r) && r.canonicalize().is_ok_and(|rr| real.starts_with(rr)))
    {
        return Err(format!(
            "--out {} is not under an allowed_data_roots entry",
            out.display()
        ));
    }
    for f in rampart_config::check_data_roots(cfg) {
        if f.severity == rampart_config::Severity::Error {
            return Err(format!("[{}] {}: {}", f.code, f.path, f.message));
        }
    }
    rampart_config::check_data_root(parent).map_err(|e| e.to_string())?;
    Ok(())
}

fn append(
    tar: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    name: &str,
    data: &[u8],
) -> Result<(), String> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, name, data)
        .map_err(|e| format!("{name}: {e}"))
}

fn pack(config: &[PathBuf], dir: &Path, out: &Path) -> Result<u8, u8> {
    let cfg = crate::keys::load_config(config)?;
    let usage = |m: String| {
        eprintln!("error: {m}");
        2u8
    };
    check_out(&cfg, out).map_err(usage)?;
    let paths = rampart_audit::Paths::from_config(&cfg).map_err(|e| usage(e.to_string()))?;
    let keyring = rampart_audit::open_keyring(&cfg, &paths).map_err(|e| usage(e.to_string()))?;
    let files = walk(dir).map_err(usage)?;
    let gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut subjects = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for (rel, p) in &files {
        let data = std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())))?;
        total += data.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(usage(format!("more than {MAX_TOTAL_BYTES} bytes of files")));
        }
        subjects.push(json!({
            "name": rel,
            "digest": { "sha256": hex(digest(&SHA256, &data).as_ref()) },
        }));
        append(&mut tar, &format!("files/{rel}"), &data).map_err(|e| {
            eprintln!("error: {e}");
            1u8
        })?;
    }
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let statement = json!({
        "_type": STATEMENT_V1,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "created": created,
            "generator": format!("rampart {}", env!("CARGO_PKG_VERSION")),
            "files": files.len(),
        },
    });
    let statement = serde_json::to_vec_pretty(&statement).map_err(|e| usage(e.to_string()))?;
    let env = Envelope::sign(keyring.active(), IN_TOTO_PAYLOAD_TYPE, &statement);
    let env_json = serde_json::to_vec_pretty(&env).map_err(|e| usage(e.to_string()))?;
    let io = |e: String| {
        eprintln!("error: {e}");
        1u8
    };
    append(&mut tar, "statement.json", &statement).map_err(io)?;
    append(&mut tar, "envelope.dsse.json", &env_json).map_err(io)?;
    let gz = tar.into_inner().map_err(|e| io(e.to_string()))?;
    let bytes = gz.finish().map_err(|e| io(e.to_string()))?;
    write_0640(out, &bytes).map_err(io)?;
    let k = keyring.active().public();
    println!(
        "packed {} files into {} (signed by {} {})",
        files.len(),
        out.display(),
        k.key_id(),
        k.fingerprint()
    );
    Ok(0)
}

/// Temporary file (created new, mode exactly 0640), fsync, rename: a reader never sees half a bundle.
fn write_0640(out: &Path, bytes: &[u8]) -> Result<(), String> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("--out needs a file name")?;
    let tmp = out.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    // Exactly 0640, whatever the umask narrowed at creation (the bundle is meant to be
    // readable by the operator's group, as documented).
    f.set_permissions(std::fs::Permissions::from_mode(0o640))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))
}

fn trusted(keyring: Option<PathBuf>, config: &[PathBuf]) -> Result<TrustedKeys, u8> {
    let path = match keyring {
        Some(p) => p,
        None if !config.is_empty() => {
            let cfg = crate::keys::load_config(config)?;
            rampart_audit::Paths::from_config(&cfg)
                .map_err(|e| {
                    eprintln!("error: {e}");
                    2u8
                })?
                .keyring
        }
        None => {
            eprintln!("error: give --keyring FILE (or --config FILE) to say which keys to trust");
            return Err(2);
        }
    };
    TrustedKeys::from_file(&path).map_err(|e| {
        eprintln!("error: {e}");
        2
    })
}

fn verify(keyring: Option<PathBuf>, config: &[PathBuf], bundle: &Path) -> Result<u8, u8> {
    let keys = trusted(keyring, config)?;
    let fail = |m: String| {
        eprintln!("FAIL: {m}");
        1u8
    };
    let f = std::fs::File::open(bundle).map_err(|e| fail(format!("{}: {e}", bundle.display())))?;
    let b = rampart_crypto::bundle::read_bundle(f).map_err(fail)?;
    let env_bytes = b
        .envelope
        .ok_or_else(|| fail("no envelope.dsse.json".into()))?;
    let env: Envelope = serde_json::from_slice(&env_bytes)
        .map_err(|_| fail("envelope.dsse.json is not a DSSE envelope".into()))?;
    let (payload, key) = env
        .verify(IN_TOTO_PAYLOAD_TYPE, &keys)
        .map_err(|e| fail(e.to_string()))?;
    if b.statement.as_deref() != Some(payload.as_slice()) {
        return Err(fail(
            "statement.json differs from the signed payload of the envelope".into(),
        ));
    }
    let st: serde_json::Value = serde_json::from_slice(&payload)
        .map_err(|_| fail("the signed statement is not JSON".into()))?;
    if st.get("_type").and_then(|v| v.as_str()) != Some(STATEMENT_V1) {
        return Err(fail("the statement is not an in-toto Statement v1".into()));
    }
    let subjects = st
        .get("subject")
        .and_then(|v| v.as_array())
        .ok_or_else(|| fail("the statement has no subject list".into()))?;
    let mut listed = BTreeMap::new();
    for s in subjects {
        let (Some(name), Some(d)) = (
            s.get("name").and_then(|v| v.as_str()),
            s.pointer("/digest/sha256").and_then(|v| v.as_str()),
        ) else {
            return Err(fail("a subject lacks a name or a sha256 digest".into()));
        };
        if listed.insert(name.to_owned(), d.to_owned()).is_some() {
            return Err(fail(format!("subject `{name}` is listed twice")));
        }
    }
    let mut bad = 0usize;
    for (name, want) in &listed {
        match b.files.get(name) {
            Some(got) if got == want => {}
            Some(_) => {
                eprintln!("FAIL: files/{name}: sha256 does not match the statement");
                bad += 1;
            }
            None => {
                eprintln!("FAIL: files/{name}: listed in the statement but missing");
                bad += 1;
            }
        }
    }
    for name in b.files.keys().filter(|n| !listed.contains_key(*n)) {
        eprintln!("FAIL: files/{name}: in the bundle but not in the signed statement");
        bad += 1;
    }
    if bad > 0 {
        return Err(1);
    }
    println!(
        "OK: {} files, signed by {} {}",
        listed.len(),
        key.key_id(),
        key.fingerprint()
    );
    Ok(0)
}
