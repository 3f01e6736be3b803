//! Inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4) over the records of an
//! audit directory, printed as JSON with the signed checkpoints they refer to, so any
//! RFC 9162 / C2SP implementation can check them.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::merkle::{self, leaf_hash};
use crate::record::Hash;
use crate::segment::{self, LineReader};

/// Every leaf hash of the log (and the line of one record), read from the segments.
struct Leaves {
    hashes: Vec<Hash>,
    wanted: Option<String>,
}

fn read_leaves(dir: &Path, want: Option<u64>) -> Result<Leaves, String> {
    if let Some(p) = crate::retention::latest_prune(dir).map_err(|e| e.to_string())?
        && p.below > 0
    {
        return Err(format!(
            "records below seq {} were pruned by retention; proofs need the whole log",
            p.below
        ));
    }
    let mut hashes = Vec::new();
    let mut wanted = None;
    for seg in segment::list_segments(dir).map_err(|e| e.to_string())? {
        let mut r = LineReader::open(&seg).map_err(|e| e.to_string())?;
        while let Some(line) = r.next_line() {
            let line = line.map_err(|e| e.to_string())?;
            if !line.complete {
                break;
            }
            if want == Some(hashes.len() as u64) {
                wanted = Some(String::from_utf8_lossy(&line.bytes).into_owned());
            }
            hashes.push(leaf_hash(&line.bytes));
        }
    }
    Ok(Leaves { hashes, wanted })
}

/// Latest signed note per tree size, from `checkpoints.jsonl` (signatures are the
/// reader's to check: the point of printing them).
fn notes(dir: &Path) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for (_, e) in segment::read_checkpoints(dir).map_err(|e| e.to_string())? {
        if let Ok(e) = e {
            out.insert(e.size, e.note);
        }
    }
    Ok(out)
}

fn b64(h: &Hash) -> String {
    STANDARD.encode(h)
}

#[derive(Debug, Serialize)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    /// The record line (the leaf data).
    pub leaf_data: String,
    pub leaf_hash: String,
    pub root: String,
    pub proof: Vec<String>,
    /// The signed checkpoint of `tree_size`, when one was published.
    pub checkpoint: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: String,
    pub new_root: String,
    pub proof: Vec<String>,
    pub old_checkpoint: Option<String>,
    pub new_checkpoint: Option<String>,
}

/// Proves record `seq` is in the tree of `size` records (default: the latest
/// checkpoint that covers it, else all records).
pub fn inclusion(dir: &Path, seq: u64, size: Option<u64>) -> Result<InclusionProof, String> {
    let leaves = read_leaves(dir, Some(seq))?;
    let notes = notes(dir)?;
    let n = leaves.hashes.len() as u64;
    let size = size
        .or_else(|| notes.range(seq + 1..=n).next_back().map(|(s, _)| *s))
        .unwrap_or(n);
    if seq >= size || size > n {
        return Err(format!(
            "seq {seq} is not in a tree of size {size} (the log has {n} records)"
        ));
    }
    let part = leaves
        .hashes
        .get(..usize::try_from(size).map_err(|e| e.to_string())?)
        .ok_or("size out of range")?;
    let idx = usize::try_from(seq).map_err(|e| e.to_string())?;
    let proof = merkle::inclusion_proof(part, idx).ok_or("index out of range")?;
    let leaf = *part.get(idx).ok_or("index out of range")?;
    Ok(InclusionProof {
        index: seq,
        tree_size: size,
        leaf_data: leaves.wanted.unwrap_or_default(),
        leaf_hash: b64(&leaf),
        root: b64(&merkle::root_of(part)),
        proof: proof.iter().map(b64).collect(),
        checkpoint: notes.get(&size).cloned(),
    })
}

/// Proves the tree of `old` records is a prefix of the tree of `new` records.
pub fn consistency(dir: &Path, old: u64, new: u64) -> Result<ConsistencyProof, String> {
    let leaves = read_leaves(dir, None)?;
    let notes = notes(dir)?;
    let n = leaves.hashes.len() as u64;
    if old == 0 || old > new || new > n {
        return Err(format!(
            "need 0 < from ≤ to ≤ {n} (the log has {n} records)"
        ));
    }
    let part = leaves
        .hashes
        .get(..usize::try_from(new).map_err(|e| e.to_string())?)
        .ok_or("size out of range")?;
    let old_u = usize::try_from(old).map_err(|e| e.to_string())?;
    let proof = merkle::consistency_proof(part, old_u).ok_or("size out of range")?;
    Ok(ConsistencyProof {
        old_size: old,
        new_size: new,
        old_root: b64(&merkle::root_of(part.get(..old_u).unwrap_or(&[]))),
        new_root: b64(&merkle::root_of(part)),
        proof: proof.iter().map(b64).collect(),
        old_checkpoint: notes.get(&old).cloned(),
        new_checkpoint: notes.get(&new).cloned(),
    })
}
