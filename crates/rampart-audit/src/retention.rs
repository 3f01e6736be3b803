//! Retention: closed hot segments older than `hot_days` are compressed (warm, gzip);
//! segments older than `cold_days` are deleted after a signed prune statement records
//! where the retained log starts: the first kept `seq`, the chain hash before it and the
//! Merkle compact range of everything deleted, so the chain and the tree of the retained
//! part still verify.
//!
//! Statement body (a signed note like a checkpoint):
//! `rampart-audit-prune/v1\n<origin>\n<below>\n<prev hex>\n<range: hex hashes, comma
//! separated, or ->\n`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rampart_crypto::{Keyring, TrustedKeys};

use crate::AuditError;
use crate::merkle::{CompactRange, leaf_hash};
use crate::note::{self, Note};
use crate::record::{self, GENESIS, Hash, hex, unhex};
use crate::segment::{self, LineReader, PruneEntry, SegmentFile, Tier};
use crate::writer::{append_json_line, now_rfc3339};

const MAGIC: &str = "rampart-audit-prune/v1";

/// Where the retained log starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneStatement {
    pub origin: String,
    /// The first retained seq (every record below it was deleted).
    pub below: u64,
    /// The hash of record `below - 1`.
    pub prev: Hash,
    /// The compact range of the tree of size `below`.
    pub range: CompactRange,
}

impl PruneStatement {
    pub fn body(&self) -> String {
        let range = if self.range.hashes().is_empty() {
            "-".to_owned()
        } else {
            self.range
                .hashes()
                .iter()
                .map(|h| hex(h))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{MAGIC}\n{}\n{}\n{}\n{range}\n",
            self.origin,
            self.below,
            hex(&self.prev)
        )
    }

    pub fn parse_body(body: &str) -> Option<Self> {
        let mut l = body.strip_suffix('\n')?.split('\n');
        if l.next()? != MAGIC {
            return None;
        }
        let origin = l.next()?.to_owned();
        let below: u64 = l.next()?.parse().ok()?;
        let prev = unhex(l.next()?)?;
        let r = l.next()?;
        let hashes = if r == "-" {
            Vec::new()
        } else {
            r.split(',').map(unhex).collect::<Option<Vec<_>>>()?
        };
        if l.next().is_some() {
            return None;
        }
        let range = CompactRange::from_parts(below, hashes)?;
        Some(Self {
            origin,
            below,
            prev,
            range,
        })
    }
}

/// The latest prune statement, signature unchecked (the writer's start-up; `verify`
/// checks signatures with [`latest_prune_verified`]).
pub fn latest_prune(dir: &Path) -> Result<Option<PruneStatement>, AuditError> {
    let mut best: Option<PruneStatement> = None;
    for (line, e) in segment::read_json_lines::<PruneEntry>(&dir.join(segment::PRUNED))
        .map_err(|e| AuditError::io(dir, e))?
    {
        let e = e.map_err(|m| AuditError::Broken {
            seq: 0,
            what: format!("{} line {line}: {m}", segment::PRUNED),
        })?;
        let n = Note::parse(&e.note).map_err(|m| AuditError::Broken {
            seq: e.below,
            what: format!("{} line {line}: {m}", segment::PRUNED),
        })?;
        let s = PruneStatement::parse_body(&n.body).ok_or_else(|| AuditError::Broken {
            seq: e.below,
            what: format!("{} line {line}: malformed prune statement", segment::PRUNED),
        })?;
        if best.as_ref().is_none_or(|b| s.below > b.below) {
            best = Some(s);
        }
    }
    Ok(best)
}

/// Like [`latest_prune`], with every statement's signature checked against `trusted`.
pub fn latest_prune_verified(
    dir: &Path,
    trusted: &TrustedKeys,
) -> Result<Option<PruneStatement>, String> {
    let mut best: Option<PruneStatement> = None;
    let entries = segment::read_json_lines::<PruneEntry>(&dir.join(segment::PRUNED))
        .map_err(|e| e.to_string())?;
    for (line, e) in entries {
        let e = e.map_err(|m| format!("{} line {line}: {m}", segment::PRUNED))?;
        let n =
            Note::parse(&e.note).map_err(|m| format!("{} line {line}: {m}", segment::PRUNED))?;
        n.verify(trusted)
            .map_err(|m| format!("prune statement ({} line {line}): {m}", segment::PRUNED))?;
        let s = PruneStatement::parse_body(&n.body)
            .filter(|s| s.below == e.below)
            .ok_or_else(|| format!("{} line {line}: malformed prune statement", segment::PRUNED))?;
        if best.as_ref().is_none_or(|b| s.below > b.below) {
            best = Some(s);
        }
    }
    Ok(best)
}

/// Retention settings, in days.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub hot: Duration,
    pub cold: Duration,
}

/// What one run of retention did.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub compressed: Vec<String>,
    pub deleted: Vec<String>,
    pub pruned_below: Option<u64>,
}

fn age(seg: &SegmentFile, now: SystemTime) -> Duration {
    std::fs::metadata(&seg.path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .unwrap_or_default()
}

/// Applies retention to `dir`. The newest segment (the writer's) is never touched.
pub fn apply(
    dir: &Path,
    keyring: &Keyring,
    origin: &str,
    ret: Retention,
    now: SystemTime,
) -> Result<PruneReport, AuditError> {
    let mut report = PruneReport::default();
    let segs = segment::list_segments(dir).map_err(|e| AuditError::io(dir, e))?;
    let closed = segs.len().saturating_sub(1);
    // Deletion first: the oldest closed segments past cold_days, in order.
    let (mut below, mut prev, mut range) = match latest_prune(dir)? {
        Some(p) => (p.below, p.prev, p.range),
        None => (0, GENESIS, CompactRange::new()),
    };
    let mut doomed = Vec::new();
    for seg in segs.iter().take(closed) {
        if age(seg, now) < ret.cold {
            break;
        }
        let mut r = LineReader::open(seg).map_err(|e| AuditError::io(&seg.path, e))?;
        while let Some(line) = r.next_line() {
            let line = line.map_err(|e| AuditError::io(&seg.path, e))?;
            let p = record::parse(&line.bytes).map_err(|e| AuditError::Broken {
                seq: below,
                what: format!("{}: {e}", seg.path.display()),
            })?;
            if p.record.seq < below {
                continue;
            }
            if p.record.seq != below || p.prev != prev || p.computed_hash != p.stated_hash {
                return Err(AuditError::Broken {
                    seq: below,
                    what: format!(
                        "{}: chain broken; run `rampart audit verify`",
                        seg.path.display()
                    ),
                });
            }
            prev = p.stated_hash;
            range.push(leaf_hash(&line.bytes));
            below += 1;
        }
        doomed.push(seg.clone());
    }
    if !doomed.is_empty() {
        let st = PruneStatement {
            origin: origin.to_owned(),
            below,
            prev,
            range,
        };
        let active = keyring.active();
        let text = note::sign(&st.body(), active.public(), |m| keyring.sign(m));
        append_json_line(
            &dir.join(segment::PRUNED),
            &PruneEntry {
                below,
                ts: now_rfc3339(),
                key_id: active.key_id().to_owned(),
                fingerprint: active.public().fingerprint().to_owned(),
                note: text,
            },
        )
        .map_err(|e| AuditError::io(dir, e))?;
        for seg in &doomed {
            std::fs::remove_file(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
            report.deleted.push(
                seg.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        report.pruned_below = Some(below);
    }
    for seg in segs.iter().take(closed).skip(doomed.len()) {
        if seg.tier == Tier::Hot && age(seg, now) >= ret.hot {
            compress(seg)?;
            report.compressed.push(
                seg.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    Ok(report)
}

/// Hot → warm: gzip to a temporary file, fsync, rename, then remove the plain file. A
/// crash in between leaves both, and readers prefer the plain one.
pub fn compress(seg: &SegmentFile) -> Result<(), AuditError> {
    let gz_path = seg.path.with_extension("jsonl.gz");
    let tmp = seg.path.with_extension("jsonl.gz.tmp");
    let _ = std::fs::remove_file(&tmp);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(|e| AuditError::io(&tmp, e))?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut input = std::fs::File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
    std::io::copy(&mut input, &mut enc).map_err(|e| AuditError::io(&tmp, e))?;
    let mut out = enc.finish().map_err(|e| AuditError::io(&tmp, e))?;
    out.flush().map_err(|e| AuditError::io(&tmp, e))?;
    out.sync_all().map_err(|e| AuditError::io(&tmp, e))?;
    std::fs::rename(&tmp, &gz_path).map_err(|e| AuditError::io(&gz_path, e))?;
    std::fs::remove_file(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
    if let Some(d) = seg.path.parent()
        && let Ok(d) = std::fs::File::open(d)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
