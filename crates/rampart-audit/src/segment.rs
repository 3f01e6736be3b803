//! The audit directory: segment files (hot `segment-<first seq>.jsonl`, warm
//! `segment-<first seq>.jsonl.gz`), `checkpoints.jsonl` (every signed checkpoint with the
//! signing key's id and fingerprint), `checkpoint` (the latest note, for external tools)
//! and `pruned.jsonl` (signed statements of what retention deleted).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::MAX_LINE;

pub const CHECKPOINTS: &str = "checkpoints.jsonl";
pub const LATEST: &str = "checkpoint";
pub const PRUNED: &str = "pruned.jsonl";

/// Where a segment sits in the retention tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Plain JSON Lines, the writer may append.
    Hot,
    /// gzip-compressed, closed.
    Warm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_seq: u64,
    pub path: PathBuf,
    pub tier: Tier,
}

pub fn segment_name(first_seq: u64) -> String {
    format!("segment-{first_seq:020}.jsonl")
}

fn parse_name(name: &str) -> Option<(u64, Tier)> {
    let rest = name.strip_prefix("segment-")?;
    let (num, tier) = if let Some(n) = rest.strip_suffix(".jsonl.gz") {
        (n, Tier::Warm)
    } else {
        (rest.strip_suffix(".jsonl")?, Tier::Hot)
    };
    if num.len() != 20 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((num.parse().ok()?, tier))
}

/// Segments in `dir`, by first seq. Two files for one first seq (a crash during
/// compression) keep the hot one.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<SegmentFile>> {
    let mut out: Vec<SegmentFile> = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some((first_seq, tier)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        out.push(SegmentFile {
            first_seq,
            path: e.path(),
            tier,
        });
    }
    out.sort_by_key(|s| (s.first_seq, s.tier == Tier::Warm));
    out.dedup_by_key(|s| s.first_seq);
    Ok(out)
}

/// One line of a segment.
#[derive(Debug)]
pub struct Line {
    pub bytes: Vec<u8>,
    /// Ended with `\n` (a line without one is a torn write).
    pub complete: bool,
    /// Byte offset of the line in the (uncompressed) segment.
    pub offset: u64,
}

/// Reads lines of at most [`MAX_LINE`] bytes.
pub struct LineReader {
    inner: Box<dyn BufRead + Send>,
    offset: u64,
}

impl LineReader {
    pub fn open(seg: &SegmentFile) -> std::io::Result<Self> {
        let f = File::open(&seg.path)?;
        let inner: Box<dyn BufRead + Send> = match seg.tier {
            Tier::Hot => Box::new(BufReader::with_capacity(256 * 1024, f)),
            Tier::Warm => Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::read::GzDecoder::new(BufReader::new(f)),
            )),
        };
        Ok(Self { inner, offset: 0 })
    }

    pub fn from_reader(r: impl Read + Send + 'static) -> Self {
        Self {
            inner: Box::new(BufReader::new(r)),
            offset: 0,
        }
    }

    /// The next line; an `Err` of kind `InvalidData` for a line over the limit.
    pub fn next_line(&mut self) -> Option<std::io::Result<Line>> {
        let mut bytes = Vec::with_capacity(512);
        let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
        let n = match (&mut self.inner).take(limit).read_until(b'\n', &mut bytes) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let offset = self.offset;
        self.offset += n as u64;
        let complete = bytes.last() == Some(&b'\n');
        if complete {
            bytes.pop();
        } else if bytes.len() > MAX_LINE {
            return Some(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line at byte {offset} is longer than {MAX_LINE} bytes"),
            )));
        }
        Some(Ok(Line {
            bytes,
            complete,
            offset,
        }))
    }
}

/// One line of `checkpoints.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointEntry {
    pub size: u64,
    pub ts: String,
    pub key_id: String,
    pub fingerprint: String,
    /// `shutdown`, `records`, `interval`, `prune`, `rotate`, `manual`.
    pub why: String,
    pub note: String,
}

/// Every entry of `checkpoints.jsonl`, with the line number of each; unparsable lines
/// are returned as errors naming the line.
pub fn read_checkpoints(
    dir: &Path,
) -> std::io::Result<Vec<(u64, Result<CheckpointEntry, String>)>> {
    read_json_lines(&dir.join(CHECKPOINTS))
}

pub(crate) fn read_json_lines<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> std::io::Result<Vec<(u64, Result<T, String>)>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut r = LineReader::from_reader(f);
    let mut out = Vec::new();
    let mut no = 0u64;
    while let Some(line) = r.next_line() {
        no += 1;
        let parsed = match line {
            Ok(l) if l.complete => serde_json::from_slice(&l.bytes).map_err(|e| e.to_string()),
            Ok(_) => Err("torn line (no newline)".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        out.push((no, parsed));
    }
    Ok(out)
}

/// One line of `pruned.jsonl`: a signed note stating what was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneEntry {
    pub below: u64,
    pub ts: String,
    pub key_id: String,
    pub fingerprint: String,
    pub note: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name(&segment_name(42)), Some((42, Tier::Hot)));
        assert_eq!(
            parse_name(&format!("{}.gz", segment_name(7))),
            Some((7, Tier::Warm))
        );
        assert_eq!(parse_name("segment-1.jsonl"), None);
        assert_eq!(parse_name("checkpoints.jsonl"), None);
    }

    #[test]
    fn long_lines_are_refused() {
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.push(b'\n');
        data.extend_from_slice(b"ok\nx");
        let mut r = LineReader::from_reader(std::io::Cursor::new(data));
        assert!(r.next_line().unwrap().is_err());
    }
}
