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
use crate::segment::{self, LineReader};

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

/// Checks every checkpoint's note and returns them by size.
fn load_checkpoints(dir: &Path, trusted: &TrustedKeys) -> Result<BTreeMap<u64, Vec<Cp>>, Break> {
    let mut out: BTreeMap<u64, Vec<Cp>> = BTreeMap::new();
    let entries = segment::read_checkpoints(dir).map_err(|e| Break::Other(e.to_string()))?;
    let mut origin: Option<String> = None;
    for (line, e) in entries {
        let e =
            e.map_err(|m| Break::Other(format!("{} line {line}: {m}", segment::CHECKPOINTS)))?;
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

/// Verifies the audit directory `dir`. `progress` is called with the number of records
/// replayed so far (about every 64k records).
pub fn verify(
    dir: &Path,
    trusted: &TrustedKeys,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, Break> {
    let cps = load_checkpoints(dir, trusted)?;
    let prune = retention::latest_prune_verified(dir, trusted).map_err(Break::Other)?;
    let (mut next, mut prev, mut tree) = match &prune {
        Some(p) => (p.below, p.prev, p.range.clone()),
        None => (0, GENESIS, CompactRange::new()),
    };
    let first_seq = next;
    let check_root = |size: u64, root: &Hash| -> Result<(), Break> {
        for cp in cps.get(&size).into_iter().flatten() {
            if &cp.root != root {
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
    };
    if prune.is_some() {
        check_root(next, &tree.root())?;
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
                seq: next,
                file: file.clone(),
                line: line_no,
                what,
            };
            let line = line.map_err(|e| at(e.to_string()))?;
            if !line.complete {
                return Err(at("torn record (no newline)".into()));
            }
            let p =
                record::parse(&line.bytes).map_err(|e| at(format!("not a valid record: {e}")))?;
            let seq = p.record.seq;
            if seq < first_seq {
                // Left behind by a prune interrupted before it deleted the file.
                continue;
            }
            if first_in_file && seq != seg.first_seq {
                return Err(at(format!(
                    "the segment is named for seq {} but starts with seq {seq}",
                    seg.first_seq
                )));
            }
            first_in_file = false;
            if seq > next {
                return Err(at(format!("missing: the next record is seq {seq}")));
            }
            if seq < next {
                // Named by the seq it claims: a second record with that seq was inserted.
                return Err(Break::Record {
                    seq,
                    file: file.clone(),
                    line: line_no,
                    what: format!(
                        "appears again where seq {next} belongs (a record was inserted or moved)"
                    ),
                });
            }
            if p.prev != prev {
                return Err(at(
                    "`prev` is not the hash of the record before (a record was inserted, removed or reordered)"
                        .into(),
                ));
            }
            if p.computed_hash != p.stated_hash {
                return Err(at("the contents were changed (hash mismatch)".into()));
            }
            prev = p.stated_hash;
            tree.push(leaf_hash(&line.bytes));
            next += 1;
            check_root(next, &tree.root())?;
            if next % 65_536 == 0 {
                progress(next);
            }
        }
    }
    progress(next);
    if let Some((size, list)) = cps.iter().next_back()
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
    let latest = cps
        .iter()
        .next_back()
        .and_then(|(_, l)| l.last())
        .map(|c| (c.size, c.key_id.clone(), c.fingerprint.clone()));
    Ok(Report {
        records: next - first_seq,
        first_seq,
        segments: segs.len(),
        checkpoints: cps.values().map(Vec::len).sum(),
        uncovered: next - latest.as_ref().map_or(0, |l| l.0.min(next)),
        latest,
    })
}

/// The keyring a verifier should use for `dir` when none is given: `<data_dir>/keys/
/// keyring.json`, `dir` being `<data_dir>/<audit.dir>`.
pub fn default_keyring(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("keyring.json")
}
