//! Helpers: a keyring in a temporary directory, a writer, a filled log.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_audit::{AuditHandle, Entry, WriterConfig};
use rampart_crypto::{FileProvider, Keyring, TrustedKeys};
use rampart_http::GatewayMetrics;

pub struct Log {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
    pub keys: PathBuf,
}

impl Log {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let keys = root.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        Keyring::generate(&FileProvider::new(&keys), &keys.join("keyring.json"), "k1").unwrap();
        Self {
            dir: root.path().join("audit"),
            keys,
            root,
        }
    }

    pub fn keyring_path(&self) -> PathBuf {
        self.keys.join("keyring.json")
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        Arc::new(Keyring::open(&FileProvider::new(&self.keys), &self.keyring_path()).unwrap())
    }

    pub fn rotate(&self, id: &str) {
        Keyring::rotate(&FileProvider::new(&self.keys), &self.keyring_path(), id).unwrap();
    }

    pub fn trusted(&self) -> TrustedKeys {
        TrustedKeys::from_file(&self.keyring_path()).unwrap()
    }

    pub fn config(&self) -> WriterConfig {
        let mut c = WriterConfig::new(&self.dir, "example.com/rampart-test");
        c.checkpoint_every_records = 10;
        c.segment_max_bytes = 8 * 1024;
        c
    }

    pub fn start(&self, cfg: WriterConfig) -> AuditHandle {
        AuditHandle::start(cfg, self.keyring(), GatewayMetrics::new())
            .unwrap()
            .0
    }

    /// Writes `n` records (seq continues from what is there) and stops cleanly.
    pub fn fill(&self, n: u64) {
        let h = self.start(self.config());
        // In small batches: segments rotate between batches.
        for chunk in 0..n.div_ceil(10) {
            append(&h, 10.min(n - chunk * 10));
        }
        h.shutdown().unwrap();
    }

    pub fn verify(&self) -> Result<rampart_audit::verify::Report, rampart_audit::verify::Break> {
        rampart_audit::verify::verify(&self.dir, &self.trusted(), &mut |_| {})
    }

    pub fn segments(&self) -> Vec<rampart_audit::segment::SegmentFile> {
        rampart_audit::segment::list_segments(&self.dir).unwrap()
    }
}

pub fn entry(i: u64) -> Entry {
    Entry {
        request_id: Some(format!("req-{i}")),
        subject: Some("alice".into()),
        tenant: Some("acme".into()),
        auth: "jwt".into(),
        client_ip: Some("127.0.0.1".into()),
        method: "GET".into(),
        route: Some("jobs".into()),
        path: format!("/tenants/acme/jobs/{i}"),
        status: 200,
        decision: "allow".into(),
        reason: "forwarded".into(),
        latency_us: 100 + i,
    }
}

pub fn append(h: &AuditHandle, n: u64) -> Vec<u64> {
    let rxs: Vec<_> = (0..n)
        .map(|i| h.submit(entry(i)).map_err(|e| e.1).unwrap())
        .collect();
    rxs.into_iter()
        .map(|r| r.blocking_recv().unwrap().unwrap())
        .collect()
}

/// Lines of a plain segment.
pub fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn write_lines(p: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(p, s).unwrap();
}

pub fn seq_of(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["seq"].as_u64().unwrap()
}
