//! `rampart audit verify|tail|prune|prove`: the audit trail, offline.

use std::io::{IsTerminal as _, Read as _, Seek as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use rampart_audit::Paths;
use rampart_crypto::TrustedKeys;

use crate::keys::load_config;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Replay the chain and the Merkle tree, check every checkpoint signature; name the
    /// first broken record. Exit 1 on any break.
    #[command(
        after_help = "Examples:\n  rampart audit verify --config /etc/rampart/rampart.toml\n  rampart audit verify /backup/audit --keyring auditor-copy-of-keyring.json\n  rampart audit verify --postgres env:AUDIT_DB_URL --keyring auditor-copy-of-keyring.json\n  rampart audit verify --postgres --config /etc/rampart/rampart.toml --node gw-1\n\nExit status: 0 verified, 1 a break was found, 2 usage or configuration error."
    )]
    Verify {
        /// The audit directory (default: <data_dir>/<audit.dir> of --config).
        path: Option<PathBuf>,
        #[arg(long = "config", short = 'c', value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Trusted public keys (default: <data_dir>/keys/keyring.json).
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
        /// Verify the chains in the PostgreSQL sink instead of the files: `env:NAME`,
        /// `file:PATH` or a postgres:// URL; alone, audit.postgres_url of --config.
        #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", conflicts_with = "path")]
        postgres: Option<String>,
        /// The node whose chain to verify (default: audit.node_id of --config with
        /// --postgres alone, else every node in the database).
        #[arg(long, value_name = "ID", requires = "postgres")]
        node: Option<String>,
    },
    /// Print the last records; with -f keep following new ones.
    #[command(after_help = "Example:\n  rampart audit tail -f --config /etc/rampart/rampart.toml")]
    Tail {
        path: Option<PathBuf>,
        #[arg(long = "config", short = 'c', value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Follow: print records as they are written.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Records to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
    },
    /// Apply retention: compress segments past hot_days, delete segments past cold_days
    /// after a signed prune statement.
    #[command(after_help = "Example:\n  rampart audit prune --config /etc/rampart/rampart.toml")]
    Prune {
        #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
    },
    /// Print an inclusion proof (--seq) or a consistency proof (--from/--to) as JSON,
    /// with the signed checkpoints they refer to.
    #[command(
        after_help = "Examples:\n  rampart audit prove --config rampart.toml --seq 1234\n  rampart audit prove --config rampart.toml --from 1000 --to 2000"
    )]
    Prove {
        path: Option<PathBuf>,
        #[arg(long = "config", short = 'c', value_name = "FILE")]
        config: Vec<PathBuf>,
        /// The record to prove (its leaf index).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        seq: Option<u64>,
        /// Tree size for --seq (default: the latest checkpoint covering it).
        #[arg(long, requires = "seq")]
        size: Option<u64>,
        #[arg(long, requires = "to")]
        from: Option<u64>,
        #[arg(long, requires = "from")]
        to: Option<u64>,
    },
}

pub fn run(cmd: AuditCommand) -> u8 {
    let r = match cmd {
        AuditCommand::Verify {
            path,
            config,
            keyring,
            postgres: Some(url),
            node,
        } => {
            let _ = path;
            verify_postgres(&url, &config, keyring, node)
        }
        AuditCommand::Verify {
            path,
            config,
            keyring,
            postgres: None,
            node: _,
        } => verify(path, &config, keyring),
        AuditCommand::Tail {
            path,
            config,
            follow,
            lines,
        } => tail(path, &config, follow, lines),
        AuditCommand::Prune { config } => prune(&config),
        AuditCommand::Prove {
            path,
            config,
            seq,
            size,
            from,
            to,
        } => prove(path, &config, seq, size, from.zip(to)),
    };
    r.unwrap_or_else(|c| c)
}

fn paths(config: &[PathBuf]) -> Result<Option<Paths>, u8> {
    if config.is_empty() {
        return Ok(None);
    }
    let cfg = load_config(config)?;
    Paths::from_config(&cfg).map(Some).map_err(|e| {
        eprintln!("error: {e}");
        2
    })
}

fn audit_dir(path: Option<PathBuf>, p: Option<&Paths>) -> Result<PathBuf, u8> {
    match (path, p) {
        (Some(d), _) => Ok(d),
        (None, Some(p)) => Ok(p.audit_dir.clone()),
        (None, None) => {
            eprintln!("error: give the audit directory or --config FILE");
            Err(2)
        }
    }
}

fn verify(path: Option<PathBuf>, config: &[PathBuf], keyring: Option<PathBuf>) -> Result<u8, u8> {
    let p = paths(config)?;
    let dir = audit_dir(path, p.as_ref())?;
    let keyring = match (keyring, &p) {
        (Some(k), _) => k,
        (None, Some(p)) => p.keyring.clone(),
        (None, None) => dir
            .parent()
            .map(rampart_audit::verify::default_keyring)
            .unwrap_or_default(),
    };
    if !dir.is_dir() {
        eprintln!("error: {}: no audit directory here", dir.display());
        return Err(2);
    }
    let trusted = TrustedKeys::from_file(&keyring).map_err(|e| {
        eprintln!("error: {e} (give --keyring FILE)");
        2
    })?;
    let tty = std::io::stderr().is_terminal();
    let mut progress = |n: u64| {
        if tty {
            eprint!("\rverified {n} records");
        }
    };
    let result = rampart_audit::verify::verify(&dir, &trusted, &mut progress);
    if tty {
        eprintln!();
    }
    match result {
        Ok(r) => {
            let last = (r.first_seq + r.records).saturating_sub(1);
            println!(
                "ok: {} records (seq {}..={last}) in {} segment(s), {} checkpoint(s) verified",
                r.records, r.first_seq, r.segments, r.checkpoints
            );
            print_report(&r);
            Ok(0)
        }
        Err(b) => {
            println!("FAIL: {b}");
            Ok(1)
        }
    }
}

fn print_report(r: &rampart_audit::verify::Report) {
    if let Some((size, key, fp)) = &r.latest {
        println!("latest checkpoint: size {size}, signed by {key} ({fp})");
    }
    if r.uncovered > 0 {
        println!(
            "note: {} record(s) after the latest checkpoint are chained but not yet signed",
            r.uncovered
        );
    }
}

/// `verify --postgres`: every node's chain (or one) in the PostgreSQL sink.
fn verify_postgres(
    url: &str,
    config: &[PathBuf],
    keyring: Option<PathBuf>,
    node: Option<String>,
) -> Result<u8, u8> {
    let usage = |m: String| {
        eprintln!("error: {m}");
        2
    };
    let cfg = if config.is_empty() {
        None
    } else {
        Some(load_config(config)?)
    };
    let audit = cfg.as_ref().and_then(|c| c.later.audit.clone());
    let secret = if url.is_empty() {
        audit
            .as_ref()
            .and_then(|a| a.postgres_url.clone())
            .ok_or_else(|| usage("--postgres alone takes audit.postgres_url from --config FILE; give one, or --postgres URL".into()))?
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        rampart_config::secret::Secret::with_source(url.as_bytes().to_vec(), "literal")
    } else {
        rampart_config::secret::resolve_reference(url)
            .map_err(|m| usage(format!("--postgres: {m}")))?
    };
    let node = match node {
        Some(n) => Some(n),
        None if url.is_empty() => audit.as_ref().and_then(|a| a.node_id.clone()),
        None => None,
    };
    if let Some(n) = &node
        && !rampart_config::raw::valid_node_id(n)
    {
        return Err(usage(format!(
            "--node `{n}`: 1 to 64 characters of A-Z a-z 0-9 . _ -"
        )));
    }
    let keyring = match (keyring, &cfg) {
        (Some(k), _) => k,
        (None, Some(c)) => {
            Paths::from_config(c)
                .map_err(|e| usage(e.to_string()))?
                .keyring
        }
        (None, None) => return Err(usage("give --keyring FILE (or --config FILE)".into())),
    };
    let trusted = TrustedKeys::from_file(&keyring)
        .map_err(|e| usage(format!("{e} (give --keyring FILE)")))?;
    let mut db = rampart_audit::pg::PgReader::connect(&secret).map_err(|e| usage(e.to_string()))?;
    let nodes = match node {
        Some(n) => vec![n],
        None => db.nodes().map_err(|e| usage(e.to_string()))?,
    };
    if nodes.is_empty() {
        println!("FAIL: no audit records in the database");
        return Ok(1);
    }
    let mut failed = false;
    for n in &nodes {
        match rampart_audit::verify::verify_postgres(&mut db, n, &trusted, &mut |_| {}) {
            Ok(r) if r.records == 0 && r.checkpoints == 0 => {
                println!("FAIL: node {n}: no records in the database");
                failed = true;
            }
            Ok(r) => {
                println!(
                    "ok: node {n}: {} records (seq 0..={}), {} checkpoint(s) verified",
                    r.records,
                    r.records.saturating_sub(1),
                    r.checkpoints
                );
                print_report(&r);
            }
            Err(b) => {
                println!("FAIL: node {n}: {b}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

fn prune(config: &[PathBuf]) -> Result<u8, u8> {
    let cfg = load_config(config)?;
    let p = Paths::from_config(&cfg).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    let ring = rampart_audit::open_keyring(&cfg, &p).map_err(|e| {
        eprintln!("error: {e}");
        2
    })?;
    let a = cfg.later.audit.clone().unwrap_or_default();
    let ret = a.retention.unwrap_or_default();
    let day = 86_400;
    let r = rampart_audit::retention::Retention {
        hot: Duration::from_secs(ret.hot_days.unwrap_or(7) * day),
        cold: Duration::from_secs(ret.cold_days.unwrap_or(180) * day),
    };
    let origin = a
        .origin
        .clone()
        .unwrap_or_else(|| rampart_audit::DEFAULT_ORIGIN.into());
    match rampart_audit::retention::apply(
        &p.audit_dir,
        &ring,
        &origin,
        r,
        std::time::SystemTime::now(),
    ) {
        Ok(rep) => {
            for f in &rep.compressed {
                println!("compressed {f}");
            }
            for f in &rep.deleted {
                println!("deleted {f}");
            }
            if let Some(b) = rep.pruned_below {
                println!("signed prune statement: the retained log starts at seq {b}");
            }
            if rep.compressed.is_empty() && rep.deleted.is_empty() {
                println!("nothing to do");
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}

fn prove(
    path: Option<PathBuf>,
    config: &[PathBuf],
    seq: Option<u64>,
    size: Option<u64>,
    range: Option<(u64, u64)>,
) -> Result<u8, u8> {
    let p = paths(config)?;
    let dir = audit_dir(path, p.as_ref())?;
    let out = match (seq, range) {
        (Some(s), None) => rampart_audit::prove::inclusion(&dir, s, size)
            .and_then(|p| serde_json::to_string_pretty(&p).map_err(|e| e.to_string())),
        (None, Some((a, b))) => rampart_audit::prove::consistency(&dir, a, b)
            .and_then(|p| serde_json::to_string_pretty(&p).map_err(|e| e.to_string())),
        _ => {
            eprintln!("error: give --seq N or --from A --to B");
            return Err(2);
        }
    };
    match out {
        Ok(s) => {
            println!("{s}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}

fn tail(path: Option<PathBuf>, config: &[PathBuf], follow: bool, n: usize) -> Result<u8, u8> {
    let p = paths(config)?;
    let dir = audit_dir(path, p.as_ref())?;
    let newest = || {
        rampart_audit::segment::list_segments(&dir)
            .ok()
            .and_then(|s| {
                s.into_iter()
                    .rev()
                    .find(|s| s.tier == rampart_audit::segment::Tier::Hot)
            })
    };
    let Some(mut seg) = newest() else {
        eprintln!("error: {}: no hot segment", dir.display());
        return Err(2);
    };
    let text = std::fs::read_to_string(&seg.path).map_err(|e| {
        eprintln!("error: {}: {e}", seg.path.display());
        1
    })?;
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let shown: Vec<&str> = text.get(..complete).unwrap_or("").lines().collect();
    let mut stdout = std::io::stdout().lock();
    for l in shown.iter().skip(shown.len().saturating_sub(n)) {
        let _ = writeln!(stdout, "{l}");
    }
    let _ = stdout.flush();
    if !follow {
        return Ok(0);
    }
    let mut pos = complete as u64;
    let mut pending = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        // Checked before reading: once a newer segment exists, this one is final, so
        // the read below gets its last records before we move on.
        // The segment right after this one (several may have appeared since the last
        // poll: each is read in turn).
        let next = rampart_audit::segment::list_segments(&dir)
            .ok()
            .and_then(|s| s.into_iter().find(|n| n.first_seq > seg.first_seq));
        if drain(&seg.path, &mut pos, &mut pending, &mut stdout).is_err() {
            return Ok(0);
        }
        if let Some(next) = next {
            seg = next;
            pos = 0;
            pending.clear();
        }
    }
}

/// Prints the complete lines written to `path` since `pos`.
fn drain(
    path: &std::path::Path,
    pos: &mut u64,
    pending: &mut Vec<u8>,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(());
    };
    f.seek(std::io::SeekFrom::Start(*pos))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    *pos += buf.len() as u64;
    pending.extend_from_slice(&buf);
    if let Some(i) = pending.iter().rposition(|b| *b == b'\n') {
        let rest = pending.split_off(i + 1);
        out.write_all(pending)?;
        out.flush()?;
        *pending = rest;
    }
    Ok(())
}
