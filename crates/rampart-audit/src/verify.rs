//! The offline verifier: replays every record of every segment (hot and warm) through
//! the chain and the Merkle tree, checks every checkpoint's signature against the
//! keyring and its root against the records, and names the first break by `seq`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rampart_crypto::TrustedKeys;

use crate::merkle::{CompactRange, leaf_hash};
use crate::note::{Checkpoint, Note};
use crate::record::{self, GENESIS, Hash};
use crate::retention;
use crate::segment::{self, CheckpointEntry, LineReader};

/// A verified log.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Records replayed (the retained part).
    pub records: u64,
    /// The first retained seq (0 unless retention pruned).
    pub first_seq: u64,
    pub segments: usize,
    pub checkpoints: usize,
    /// Size, key id and fingerprint of the latest checkpoint.
    pub latest: Option<(u64, String, String)>,
    /// Records after the latest checkpoint (not yet covered by a signature).
    pub uncovered: u64,
}

/// The first thing that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error("seq {seq}: {what} ({file} line {line})")]
    Record {
        seq: u64,
        file: String,
        line: u64,
        what: String,
    },
    #[error("checkpoint at size {size}: {what}")]
    Checkpoint { size: u64, what: String },
    #[error("seq {seq}: {what}")]
    Tail { seq: u64, what: String },
    #[error("{0}")]
    Other(String),
}

impl Break {
    /// The seq this break names, when it names one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Record { seq, .. } | Self::Tail { seq, .. } => Some(*seq),
            Self::Checkpoint { .. } | Self::Other(_) => None,
        }
    }
}

struct Cp {
    size: u64,
    root: Hash,
    key_id: String,
    fingerprint: String,
}

/// Checks every checkpoint's note and returns them by size. `what` names where the
/// entries come from.
fn load_checkpoints(
    entries: Vec<(u64, Result<CheckpointEntry, String>)>,
    what: &str,
    trusted: &TrustedKeys,
) -> Result<BTreeMap<u64, Vec<Cp>>, Break> {
    let mut out: BTreeMap<u64, Vec<Cp>> = BTreeMap::new();
    let mut origin: Option<String> = None;
    for (line, e) in entries {
        let e = e.map_err(|m| Break::Other(format!("{what} line {line}: {m}")))?;
        let bad = |what: String| Break::Checkpoint { size: e.size, what };
        let note = Note::parse(&e.note).map_err(|m| bad(m.to_string()))?;
        let key = note.verify(trusted).map_err(|m| bad(m.to_string()))?;
        let cp = Checkpoint::parse_body(&note.body).map_err(|m| bad(m.to_string()))?;
        if cp.size != e.size {
            return Err(bad(format!("the signed note says size {}", cp.size)));
        }
        if key.fingerprint() != e.fingerprint || key.key_id() != e.key_id {
            return Err(bad(
                "listed key id or fingerprint differs from the signer".into()
            ));
        }
        match &origin {
            Some(o) if *o != cp.origin => {
                return Err(bad(format!("origin `{}` differs from `{o}`", cp.origin)));
            }
            None => origin = Some(cp.origin.clone()),
            _ => {}
        }
        out.entry(cp.size).or_default().push(Cp {
            size: cp.size,
            root: cp.root,
            key_id: e.key_id,
            fingerprint: e.fingerprint,
        });
    }
    Ok(out)
}

/// The replay shared by the files and the PostgreSQL sink: chain, tree and checkpoint
/// roots, record by record.
struct Replay {
    cps: BTreeMap<u64, Vec<Cp>>,
    first_seq: u64,
    next: u64,
    prev: Hash,
    tree: CompactRange,
}

impl Replay {
    fn new(cps: BTreeMap<u64, Vec<Cp>>, start: Option<(u64, Hash, CompactRange)>) -> Self {
        let (next, prev, tree) = start.unwrap_or((0, GENESIS, CompactRange::new()));
        Self {
            cps,
            first_seq: next,
            next,
            prev,
            tree,
        }
    }

    fn check_root(&self) -> Result<(), Break> {
        let (size, root) = (self.next, self.tree.root());
        for cp in self.cps.get(&size).into_iter().flatten() {
            if cp.root != root {
                return Err(Break::Checkpoint {
                    size: cp.size,
                    what: format!(
                        "its root differs from the records' (a record below seq {} was changed, or the checkpoint forged)",
                        cp.size
                    ),
                });
            }
        }
        Ok(())
    }

    /// Replays one line. `seg_first`: the first seq the line's segment is named for,
    /// when the line is the first of its segment. Returns the parsed record, or `None`
    /// for a line below the retained part (left by an interrupted prune).
    fn push(
        &mut self,
        file: &str,
        line_no: u64,
        bytes: &[u8],
        seg_first: Option<u64>,
    ) -> Result<Option<record::Record>, Break> {
        let at = |seq: u64, what: String| Break::Record {
            seq,
            file: file.to_owned(),
            line: line_no,
            what,
        };
        let next = self.next;
        let p = record::parse(bytes).map_err(|e| at(next, format!("not a valid record: {e}")))?;
        let seq = p.record.seq;
        if seq < self.first_seq {
            return Ok(None);
        }
        if let Some(first) = seg_first
            && seq != first
        {
            return Err(at(
                next,
                format!("the segment is named for seq {first} but starts with seq {seq}"),
            ));
        }
        if seq > next {
            return Err(at(next, format!("missing: the next record is seq {seq}")));
        }
        if seq < next {
            // Named by the seq it claims: a second record with that seq was inserted.
            return Err(at(
                seq,
                format!("appears again where seq {next} belongs (a record was inserted or moved)"),
            ));
        }
        if p.prev != self.prev {
            return Err(at(
                next,
                "`prev` is not the hash of the record before (a record was inserted, removed or reordered)"
                    .into(),
            ));
        }
        if p.computed_hash != p.stated_hash {
            return Err(at(next, "the contents were changed (hash mismatch)".into()));
        }
        self.prev = p.stated_hash;
        self.tree.push(leaf_hash(bytes));
        self.next += 1;
        self.check_root()?;
        Ok(Some(p.record))
    }

    fn finish(self, segments: usize) -> Result<Report, Break> {
        let next = self.next;
        if let Some((size, list)) = self.cps.iter().next_back()
            && *size > next
        {
            let who = list.first().map(|c| c.key_id.clone()).unwrap_or_default();
            return Err(Break::Tail {
                seq: next,
                what: format!(
                    "missing: the log ends before seq {next}, but a checkpoint signed by `{who}` covers {size} records (the tail was dropped)"
                ),
            });
        }
        let latest = self
            .cps
            .iter()
            .next_back()
            .and_then(|(_, l)| l.last())
            .map(|c| (c.size, c.key_id.clone(), c.fingerprint.clone()));
        Ok(Report {
            records: next - self.first_seq,
            first_seq: self.first_seq,
            segments,
            checkpoints: self.cps.values().map(Vec::len).sum(),
            uncovered: next - latest.as_ref().map_or(0, |l| l.0.min(next)),
            latest,
        })
    }
}

/// Verifies the audit directory `dir`. `progress` is called with the number of records
/// replayed so far (about every 64k records).
pub fn verify(
    dir: &Path,
    trusted: &TrustedKeys,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, Break> {
    let entries = segment::read_checkpoints(dir).map_err(|e| Break::Other(e.to_string()))?;
    let cps = load_checkpoints(entries, segment::CHECKPOINTS, trusted)?;
    let prune = retention::latest_prune_verified(dir, trusted).map_err(Break::Other)?;
    let pruned = prune.is_some();
    let mut replay = Replay::new(cps, prune.map(|p| (p.below, p.prev, p.range)));
    if pruned {
        replay.check_root()?;
    }
    let segs = segment::list_segments(dir).map_err(|e| Break::Other(e.to_string()))?;
    for seg in &segs {
        let file = seg
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut r = LineReader::open(seg).map_err(|e| Break::Other(format!("{file}: {e}")))?;
        let mut line_no = 0u64;
        let mut first_in_file = true;
        while let Some(line) = r.next_line() {
            line_no += 1;
            let at = |what: String| Break::Record {
                seq: replay.next,
                file: file.clone(),
                line: line_no,
                what,
            };
            let line = line.map_err(|e| at(e.to_string()))?;
            if !line.complete {
                return Err(at("torn record (no newline)".into()));
            }
            let first = first_in_file.then_some(seg.first_seq);
            if replay.push(&file, line_no, &line.bytes, first)?.is_some() {
                first_in_file = false;
                if replay.next.is_multiple_of(65_536) {
                    progress(replay.next);
                }
            }
        }
    }
    progress(replay.next);
    replay.finish(segs.len())
}

/// Verifies the chain and checkpoints of `node` in the PostgreSQL sink, the same way as
/// the files (the database holds the whole chain: retention never prunes it). A row
/// whose `seq`, `prev` or `hash` column disagrees with its record is a break too.
pub fn verify_postgres(
    db: &mut crate::pg::PgReader,
    node: &str,
    trusted: &TrustedKeys,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, Break> {
    let entries = db
        .checkpoints(node)
        .map_err(|e| Break::Other(e.to_string()))?
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, Ok(e)))
        .collect();
    let cps = load_checkpoints(entries, "rampart_audit_checkpoints", trusted)?;
    let mut replay = Replay::new(cps, None);
    let file = format!("rampart_audit_records node `{node}`");
    let mut after = -1i64;
    let mut row_no = 0u64;
    loop {
        let rows = db
            .records_after(node, after)
            .map_err(|e| Break::Other(e.to_string()))?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.seq;
        for row in rows {
            row_no += 1;
            let rec = replay.push(&file, row_no, row.record.as_bytes(), None)?;
            if let Some(rec) = rec
                && (i64::try_from(rec.seq).ok() != Some(row.seq)
                    || rec.prev != row.prev
                    || rec.hash != row.hash)
            {
                return Err(Break::Record {
                    seq: rec.seq,
                    file: file.clone(),
                    line: row_no,
                    what: "the row's seq, prev or hash column differs from its record".into(),
                });
            }
            if replay.next.is_multiple_of(65_536) {
                progress(replay.next);
            }
        }
    }
    progress(replay.next);
    replay.finish(0)
}

/// The keyring a verifier should use for `dir` when none is given: `<data_dir>/keys/
/// keyring.json`, `dir` being `<data_dir>/<audit.dir>`.
pub fn default_keyring(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("keyring.json")
}
