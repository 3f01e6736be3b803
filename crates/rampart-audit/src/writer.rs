//! The writer: one dedicated thread owns the segment file, the chain and the Merkle
//! tree. Requests hand it an [`Entry`] through a bounded queue and wait for its ack.
//!
//! Group commit: the thread takes everything queued (up to `max_batch`; once woken it
//! yields the CPU for up to `linger` while records keep arriving, so a busy gateway on
//! few cores gets real batches), encodes it, writes it with one `write(2)` and acks every
//! record of the batch. A record is therefore in the file (safe from a killed process)
//! before its response leaves. A failed write is rolled back (the file is cut to its last
//! good length) and every record of the batch is answered with an error, so nothing is
//! half-chained.
//!
//! Durability against power loss is a second thread's job (`rampart-audit-sync`): it
//! `fdatasync`s whatever was written since its last sync (one sync covers every batch
//! written meanwhile) and publishes the durable record count. The writer never waits for
//! it unless more than `max_unsynced` records are written but not yet durable (a slow
//! disk then slows the writer, so the power-loss window stays bounded); while syncs fail
//! and that bound is reached, batches are refused (`on_failure` applies).
//!
//! Checkpoints are signed only over durable records (the writer fdatasyncs first when
//! the sync thread has not yet covered them), every `checkpoint_every_records` records
//! or `checkpoint_every` (when records arrived), and at shutdown.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rampart_crypto::Keyring;
use rampart_http::GatewayMetrics;
use tokio::sync::oneshot;

use crate::merkle::{CompactRange, leaf_hash};
use crate::note::{self, Checkpoint};
use crate::record::{self, Entry, GENESIS, Hash};
use crate::segment::{self, CheckpointEntry, LineReader, Tier};
use crate::{AuditError, danger};

/// Writer settings (from `[audit]`).
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The audit directory (created 0750 under the data root when missing).
    pub dir: PathBuf,
    /// The checkpoint origin line.
    pub origin: String,
    pub checkpoint_every_records: u64,
    pub checkpoint_every: Duration,
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
    /// Bound on queued records; a full queue past the request's deadline is a failure.
    pub queue_capacity: usize,
    pub max_batch: usize,
    /// How long the writer, once woken, keeps gathering records that are still
    /// arriving before it writes them (it yields the CPU meanwhile and stops early when
    /// nothing new came): the bound on what batching adds to a record's latency.
    pub linger: Duration,
    /// Records written but not yet fdatasynced past which the writer waits for the sync
    /// thread: the bound on what a power loss can cost.
    pub max_unsynced: u64,
    /// Least time between the starts of two fdatasyncs of the sync thread (zero, the
    /// default: the next one starts as soon as the previous one ended and something was
    /// written). A longer interval makes each sync cover more records, so fewer syncs
    /// (each costs the kernel a writeback and, for a growing file, an inode write) at the
    /// price of a wider power-loss window: the records of the last interval plus one
    /// sync, never more than `max_unsynced` (a writer waiting for room cuts the interval
    /// short). Acknowledgements never wait for it.
    pub sync_interval: Duration,
    /// Test-only failure injection.
    pub fault: Option<danger::FaultInjection>,
    /// The PostgreSQL sink: every batch is committed there too before it is acknowledged.
    pub postgres: Option<crate::pg::PgSinkConfig>,
}

impl WriterConfig {
    pub fn new(dir: impl Into<PathBuf>, origin: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            origin: origin.into(),
            checkpoint_every_records: 1000,
            checkpoint_every: Duration::from_secs(10),
            segment_max_bytes: 64 * 1024 * 1024,
            segment_max_age: Duration::from_secs(86_400),
            queue_capacity: 65_536,
            max_batch: 4096,
            linger: Duration::from_micros(500),
            max_unsynced: 8192,
            sync_interval: Duration::ZERO,
            fault: None,
            postgres: None,
        }
    }
}

/// Why a record was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("the audit queue stayed full past the deadline")]
    QueueFull,
    #[error("the audit write failed: {0}")]
    Io(String),
    #[error("no ack from the audit writer before the deadline")]
    Timeout,
    #[error("the audit writer has stopped")]
    Closed,
}

type Ack = oneshot::Sender<Result<u64, AppendError>>;

/// The answers of one batch.
type AckBatch = Vec<(Ack, Result<u64, AppendError>)>;

/// Delivers a batch's answers. Waking each waiting request from the writer thread costs
/// one cross-thread wake-up per record, and on a gateway with one core each of them
/// switches to the runtime's thread and back; so when the writer starts inside a
/// runtime, a task of that runtime receives the whole batch in one message and answers
/// each request itself. At most one answer per record written is ever in that channel
/// (each comes from the bounded queue). Without a runtime, or once that task is gone,
/// the writer answers directly.
struct Acker {
    tx: Option<tokio::sync::mpsc::UnboundedSender<AckBatch>>,
}

impl Acker {
    fn new() -> Self {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Self { tx: None };
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<AckBatch>();
        rt.spawn(async move {
            while let Some(batch) = rx.recv().await {
                for (ack, r) in batch {
                    let _ = ack.send(r);
                }
            }
        });
        Self { tx: Some(tx) }
    }

    fn deliver(&self, batch: AckBatch) {
        let batch = match &self.tx {
            Some(tx) => match tx.send(batch) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => batch,
        };
        for (ack, r) in batch {
            let _ = ack.send(r);
        }
    }
}

// Records go by value through the queue: boxing them would add an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(Entry, Ack),
    Checkpoint(std::sync::mpsc::Sender<Result<Option<Checkpoint>, String>>),
    Shutdown(std::sync::mpsc::Sender<Result<Option<Checkpoint>, String>>),
}

struct Shared {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    join: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The chain head and last checkpoint as the writer thread last published them.
    head: Mutex<Head>,
    /// Records queued and records the writer took off the queue: their difference is
    /// the queue depth.
    submitted: AtomicU64,
    taken: AtomicU64,
    queue_capacity: usize,
    durable: Arc<Durable>,
}

#[derive(Debug, Clone, Default)]
struct Head {
    records: u64,
    hash: Hash,
    checkpoint_size: u64,
    checkpoint_ts: Option<String>,
}

/// What the writer and the sync thread share: the current segment, how many records
/// are written to the files, and how many of them are durable.
struct Durable {
    state: Mutex<SyncState>,
    /// Wakes the sync thread (records written, or stop).
    wake: Condvar,
    /// Wakes whoever waits for `durable` to advance (or for a sync error).
    progress: Condvar,
}

struct SyncState {
    /// The segment the writer appends to (earlier segments were synced at rotation).
    file: Arc<File>,
    /// Records written to the files (the writer's next `seq`).
    written: u64,
    /// Records known to be on disk (a successful fdatasync covered them).
    durable: u64,
    /// The last fdatasync failure, cleared by the next success.
    error: Option<String>,
    stop: bool,
    /// The sync thread waits on `wake` (nothing to sync): only then does a write need
    /// to wake it. A notification costs a system call even when nobody waits, and the
    /// writer would otherwise make one per batch.
    sync_idle: bool,
    /// Threads waiting on `progress` (the same saving for the sync thread).
    progress_waiters: u32,
}

impl Durable {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        // The state stays consistent whatever a panicking holder did (plain counters).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// fdatasync, after the injected delay of a test.
fn sync_file(file: &File, fault: Option<&danger::FaultInjection>) -> std::io::Result<()> {
    if let Some(f) = fault
        && !f.sync_delay.is_zero()
    {
        std::thread::sleep(f.sync_delay);
    }
    file.sync_data()
}

/// The sync thread: fdatasyncs the current segment whenever records were written since
/// the last sync (so one sync covers every batch written while the previous one ran)
/// and publishes the durable count.
fn sync_loop(
    d: &Durable,
    shared: &Shared,
    metrics: &GatewayMetrics,
    fault: Option<danger::FaultInjection>,
    interval: Duration,
) {
    let mut last_start: Option<Instant> = None;
    loop {
        let (file, target) = {
            let mut s = d.lock();
            while s.written <= s.durable && !s.stop {
                s.sync_idle = true;
                s = d
                    .wake
                    .wait(s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            s.sync_idle = false;
            // Let more batches join this sync, unless the writer waits for room.
            if let Some(next) = last_start.and_then(|t| t.checked_add(interval)) {
                while !s.stop && s.progress_waiters == 0 {
                    let left = next.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s = d
                        .wake
                        .wait_timeout(s, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            }
            if s.stop {
                // The writer synced everything itself before stopping.
                return;
            }
            (Arc::clone(&s.file), s.written)
        };
        if !interval.is_zero() {
            last_start = Some(Instant::now());
        }
        let r = sync_file(&file, fault.as_ref());
        let failed = {
            let mut s = d.lock();
            let failed = match r {
                Ok(()) => {
                    s.durable = s.durable.max(target);
                    s.error = None;
                    false
                }
                Err(e) => {
                    let msg = format!("fdatasync: {e}");
                    tracing::error!(error = %msg, "audit: fdatasync failed");
                    metrics.audit.fsync_errors.fetch_add(1, Ordering::Relaxed);
                    shared.failing.store(true, Ordering::Relaxed);
                    if let Ok(mut l) = shared.last_error.lock() {
                        *l = Some(msg.clone());
                    }
                    s.error = Some(msg);
                    true
                }
            };
            if s.progress_waiters > 0 {
                d.progress.notify_all();
            }
            failed
        };
        if failed {
            // Retry, but not in a hot loop.
            let s = d.lock();
            if !s.stop {
                let _ = d.wake.wait_timeout(s, Duration::from_millis(100));
            }
        }
    }
}

/// What the status page shows of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditStatus {
    /// Records in the chain (the next record's `seq`).
    pub records: u64,
    /// `hash` of the last record (hex; the genesis value before the first record).
    pub head_hash: String,
    /// Records known to be on disk (fdatasynced); `records` minus this is what a power
    /// loss could cost now.
    pub durable: u64,
    /// Records covered by the last signed checkpoint.
    pub checkpoint_size: u64,
    /// When the last checkpoint was signed (RFC 3339), if one is known.
    pub checkpoint_ts: Option<String>,
    /// Records waiting for the writer thread.
    pub queue_depth: u64,
    pub queue_capacity: usize,
    pub failing: bool,
    pub last_error: Option<String>,
}

/// A cheap handle to the writer thread (clone it into every pipeline).
#[derive(Clone)]
pub struct AuditHandle {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHandle").finish_non_exhaustive()
    }
}

/// What start-up found.
#[derive(Debug, Clone, Default)]
pub struct StartReport {
    pub records: u64,
    pub segments: usize,
    /// Bytes of a torn last record that were cut off.
    pub truncated_bytes: u64,
}

impl AuditHandle {
    /// Recovers the log in `cfg.dir` (replays the chain and the tree, cuts a torn last
    /// line) and starts the writer thread. A broken chain refuses the start: run
    /// `rampart audit verify` to find the break.
    pub fn start(
        cfg: WriterConfig,
        keyring: Arc<Keyring>,
        metrics: Arc<GatewayMetrics>,
    ) -> Result<(Self, StartReport), AuditError> {
        // Recovery runs on a thread of its own: the PostgreSQL sink drives its own small
        // runtime, which must not be entered from the caller's async context.
        let (state, report) = std::thread::scope(|s| {
            s.spawn(|| State::recover(cfg, keyring, metrics))
                .join()
                .unwrap_or_else(|_| {
                    Err(AuditError::Config(
                        "the audit recovery thread panicked".into(),
                    ))
                })
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel(state.cfg.queue_capacity);
        let shared = Arc::new(Shared {
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            join: Mutex::new(None),
            head: Mutex::new(state.head()),
            submitted: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            queue_capacity: state.cfg.queue_capacity,
            durable: Arc::clone(&state.durable),
        });
        let mut state = state;
        state.acker = Acker::new();
        let (d, s2, m2, fault, interval) = (
            Arc::clone(&state.durable),
            Arc::clone(&shared),
            Arc::clone(&state.metrics),
            state.cfg.fault,
            state.cfg.sync_interval,
        );
        let sync_join = std::thread::Builder::new()
            .name("rampart-audit-sync".into())
            .spawn(move || sync_loop(&d, &s2, &m2, fault, interval))
            .map_err(|e| AuditError::Io {
                path: "audit sync thread".into(),
                source: e,
            })?;
        state.sync_join = Some(sync_join);
        let s2 = Arc::clone(&shared);
        let join = std::thread::Builder::new()
            .name("rampart-audit".into())
            .spawn(move || state.run(&rx, &s2))
            .map_err(|e| AuditError::Io {
                path: "audit writer thread".into(),
                source: e,
            })?;
        if let Ok(mut j) = shared.join.lock() {
            *j = Some(join);
        }
        Ok((Self { tx, shared }, report))
    }

    /// Queues `e` without waiting; the receiver yields its `seq` once it is in the file.
    /// A full queue hands `e` back (no allocation) so the caller can retry.
    #[allow(clippy::result_large_err)]
    pub fn submit(
        &self,
        e: Entry,
    ) -> Result<oneshot::Receiver<Result<u64, AppendError>>, (Entry, AppendError)> {
        let (ack, rx) = oneshot::channel();
        match self.tx.try_send(Msg::Record(e, ack)) {
            Ok(()) => {
                self.shared.submitted.fetch_add(1, Ordering::Relaxed);
                Ok(rx)
            }
            Err(TrySendError::Full(Msg::Record(e, _))) => Err((e, AppendError::QueueFull)),
            Err(TrySendError::Disconnected(Msg::Record(e, _))) => Err((e, AppendError::Closed)),
            Err(_) => Err((Entry::default(), AppendError::Closed)),
        }
    }

    /// Appends `e` and waits until it is in the file, at most `timeout` in all.
    pub async fn append(&self, e: Entry, timeout: Duration) -> Result<u64, AppendError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut e = e;
        let rx = loop {
            match self.submit(e) {
                Ok(rx) => break rx,
                Err((back, AppendError::QueueFull)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(AppendError::QueueFull);
                    }
                    e = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((_, err)) => return Err(err),
            }
        };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(AppendError::Closed),
            Err(_) => Err(AppendError::Timeout),
        }
    }

    /// Whether the last write failed (a `warn` health reason).
    pub fn is_failing(&self) -> bool {
        self.shared.failing.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Chain head, last checkpoint and queue depth (status page).
    pub fn status(&self) -> AuditStatus {
        let head = self
            .shared
            .head
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        let submitted = self.shared.submitted.load(Ordering::Relaxed);
        let taken = self.shared.taken.load(Ordering::Relaxed);
        AuditStatus {
            records: head.records,
            head_hash: record::hex(&head.hash),
            durable: self.shared.durable.lock().durable,
            checkpoint_size: head.checkpoint_size,
            checkpoint_ts: head.checkpoint_ts,
            queue_depth: submitted.saturating_sub(taken),
            queue_capacity: self.shared.queue_capacity,
            failing: self.is_failing(),
            last_error: self.last_error(),
        }
    }

    /// Signs a checkpoint now (if records arrived since the last one).
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Msg::Checkpoint(tx))
            .map_err(|_| "writer stopped".to_owned())?;
        rx.recv().map_err(|_| "writer stopped".to_owned())?
    }

    /// Writes what is queued, fsyncs, signs the shutdown checkpoint and stops the
    /// thread. Blocking: call it from a blocking context.
    pub fn shutdown(&self) -> Result<Option<Checkpoint>, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Msg::Shutdown(tx))
            .map_err(|_| "writer already stopped".to_owned())?;
        let r = rx.recv().map_err(|_| "writer stopped".to_owned())?;
        if let Ok(mut j) = self.shared.join.lock()
            && let Some(j) = j.take()
        {
            let _ = j.join();
        }
        r
    }
}

struct State {
    cfg: WriterConfig,
    keyring: Arc<Keyring>,
    metrics: Arc<GatewayMetrics>,
    /// The current segment (shared with the sync thread through `durable`).
    file: Arc<File>,
    durable: Arc<Durable>,
    sync_join: Option<std::thread::JoinHandle<()>>,
    seg_first: u64,
    /// Length of the segment up to the last good write.
    seg_len: u64,
    seg_opened: Instant,
    /// A failed write may have left bytes past `seg_len`.
    dirty: bool,
    next_seq: u64,
    prev: Hash,
    tree: CompactRange,
    last_cp_size: u64,
    last_cp_at: Instant,
    /// `ts` of the last checkpoint entry (status page).
    last_cp_ts: Option<String>,
    fault_bytes: u64,
    buf: Vec<u8>,
    /// The Merkle leaves of the batch being written (kept to reuse its allocation).
    leaves: Vec<Hash>,
    encoder: record::Encoder,
    ts: String,
    pg: Option<crate::pg::PgSink>,
    acker: Acker,
}

pub(crate) fn create_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(false)
            .mode(0o750)
            .create(dir)?;
    }
    Ok(())
}

fn open_segment(dir: &Path, first: u64) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o640)
        .open(dir.join(segment::segment_name(first)))?;
    sync_dir(dir);
    Ok(f)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn io_err(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl State {
    fn recover(
        cfg: WriterConfig,
        keyring: Arc<Keyring>,
        metrics: Arc<GatewayMetrics>,
    ) -> Result<(Self, StartReport), AuditError> {
        let dir = cfg.dir.clone();
        create_dir(&dir).map_err(|e| io_err(&dir, e))?;
        let segs = segment::list_segments(&dir).map_err(|e| io_err(&dir, e))?;
        let mut report = StartReport {
            segments: segs.len(),
            ..StartReport::default()
        };
        let (mut next_seq, mut prev, mut tree) = match crate::retention::latest_prune(&dir)? {
            Some(p) => (p.below, p.prev, p.range),
            None => (0, GENESIS, CompactRange::new()),
        };
        let first_retained = next_seq;
        let mut sync = match &cfg.postgres {
            Some(p) => Some(PgCatchUp::start(p, first_retained, &prev)?),
            None => None,
        };
        let last_idx = segs.len().saturating_sub(1);
        for (i, seg) in segs.iter().enumerate() {
            let mut r = LineReader::open(seg).map_err(|e| io_err(&seg.path, e))?;
            let mut good_len = 0u64;
            while let Some(line) = r.next_line() {
                let line = line.map_err(|e| io_err(&seg.path, e))?;
                if !line.complete {
                    if i == last_idx && seg.tier == Tier::Hot {
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&seg.path)
                            .map_err(|e| io_err(&seg.path, e))?;
                        f.set_len(good_len).map_err(|e| io_err(&seg.path, e))?;
                        f.sync_all().map_err(|e| io_err(&seg.path, e))?;
                        report.truncated_bytes = line.bytes.len() as u64;
                        tracing::warn!(
                            segment = %seg.path.display(),
                            bytes = line.bytes.len(),
                            "audit: cut a torn last record (a crash during its write; it was never acknowledged)"
                        );
                        break;
                    }
                    return Err(AuditError::Broken {
                        seq: next_seq,
                        what: format!("{}: torn record inside the log", seg.path.display()),
                    });
                }
                let p = record::parse(&line.bytes).map_err(|e| AuditError::Broken {
                    seq: next_seq,
                    what: format!("{}: {e}", seg.path.display()),
                })?;
                if p.record.seq != next_seq || p.prev != prev || p.computed_hash != p.stated_hash {
                    return Err(AuditError::Broken {
                        seq: next_seq,
                        what: format!("{}: the chain does not continue here", seg.path.display()),
                    });
                }
                prev = p.stated_hash;
                tree.push(leaf_hash(&line.bytes));
                if let Some(s) = &mut sync {
                    s.replayed(&p.record, &line.bytes)?;
                }
                next_seq += 1;
                good_len = line.offset + line.bytes.len() as u64 + 1;
            }
        }
        report.records = next_seq;
        let pg = match sync {
            Some(s) => Some(s.finish(next_seq)?),
            None => None,
        };
        let mut last_cp_size = 0;
        let mut last_cp_ts = None;
        for (_, e) in segment::read_checkpoints(&dir).map_err(|e| io_err(&dir, e))? {
            if let Ok(e) = e
                && e.size >= last_cp_size
            {
                last_cp_size = e.size;
                last_cp_ts = Some(e.ts);
            }
        }
        if last_cp_size > next_seq {
            return Err(AuditError::Broken {
                seq: next_seq,
                what: format!(
                    "a signed checkpoint covers {last_cp_size} records but only {next_seq} are present"
                ),
            });
        }
        let (file, seg_first, seg_len) = match segs.last() {
            Some(s) if s.tier == Tier::Hot => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&s.path)
                    .map_err(|e| io_err(&s.path, e))?;
                let len = f.metadata().map_err(|e| io_err(&s.path, e))?.len();
                (f, s.first_seq, len)
            }
            _ => (
                open_segment(&dir, next_seq).map_err(|e| io_err(&dir, e))?,
                next_seq,
                0,
            ),
        };
        let file = Arc::new(file);
        let durable = Arc::new(Durable {
            state: Mutex::new(SyncState {
                file: Arc::clone(&file),
                written: next_seq,
                // Recovery read these from the file; whether they are on disk is what
                // the first sync settles.
                durable: 0,
                error: None,
                stop: false,
                sync_idle: false,
                progress_waiters: 0,
            }),
            wake: Condvar::new(),
            progress: Condvar::new(),
        });
        Ok((
            Self {
                cfg,
                keyring,
                metrics,
                file,
                durable,
                sync_join: None,
                seg_first,
                seg_len,
                seg_opened: Instant::now(),
                dirty: false,
                next_seq,
                prev,
                tree,
                last_cp_size,
                last_cp_at: Instant::now(),
                last_cp_ts,
                fault_bytes: 0,
                buf: Vec::with_capacity(1 << 20),
                leaves: Vec::new(),
                encoder: record::Encoder::default(),
                ts: String::with_capacity(32),
                pg,
                acker: Acker { tx: None },
            },
            report,
        ))
    }

    fn head(&self) -> Head {
        Head {
            records: self.next_seq,
            hash: self.prev,
            checkpoint_size: self.last_cp_size,
            checkpoint_ts: self.last_cp_ts.clone(),
        }
    }

    fn publish(&self, shared: &Shared) {
        if let Ok(mut h) = shared.head.lock() {
            *h = self.head();
        }
    }

    fn run(mut self, rx: &Receiver<Msg>, shared: &Shared) {
        let mut batch: Vec<(Entry, Ack)> = Vec::with_capacity(self.cfg.max_batch);
        loop {
            let wait = self
                .cfg
                .checkpoint_every
                .saturating_sub(self.last_cp_at.elapsed())
                .max(Duration::from_millis(5));
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.finish();
                    self.stop_sync();
                    return;
                }
            };
            let mut control = None;
            if let Some(m) = first {
                match m {
                    Msg::Record(e, a) => batch.push((e, a)),
                    other => control = Some(other),
                }
            }
            self.gather(rx, &mut batch, &mut control);
            if !batch.is_empty() {
                shared
                    .taken
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let r = self.write_batch(&mut batch).and_then(|()| {
                    // A failing sync keeps the writer flagged until a sync succeeds.
                    match &self.durable.lock().error {
                        Some(e) => Err(e.clone()),
                        None => Ok(()),
                    }
                });
                shared.failing.store(r.is_err(), Ordering::Relaxed);
                if let Err(e) = r
                    && let Ok(mut l) = shared.last_error.lock()
                {
                    *l = Some(e);
                }
            }
            let pending = self.tree.size().saturating_sub(self.last_cp_size);
            let why = if pending >= self.cfg.checkpoint_every_records {
                Some("records")
            } else if pending > 0 && self.last_cp_at.elapsed() >= self.cfg.checkpoint_every {
                Some("interval")
            } else {
                None
            };
            if let Some(why) = why
                && let Err(e) = self.checkpoint(why)
            {
                tracing::error!(error = %e, "audit: cannot write a checkpoint");
            }
            self.publish(shared);
            match control {
                Some(Msg::Checkpoint(reply)) => {
                    let r = self.checkpoint("manual");
                    self.publish(shared);
                    let _ = reply.send(r);
                }
                Some(Msg::Shutdown(reply)) => {
                    // Records queued behind the shutdown message are written too.
                    while let Ok(Msg::Record(e, a)) = rx.try_recv() {
                        batch.push((e, a));
                    }
                    if !batch.is_empty() {
                        shared
                            .taken
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let _ = self.write_batch(&mut batch);
                    }
                    let r = self.finish();
                    self.stop_sync();
                    self.publish(shared);
                    let _ = reply.send(r);
                    return;
                }
                _ => {}
            }
        }
    }

    /// Takes what is queued behind the first record (up to `max_batch`, or until a
    /// control message). While records keep arriving, yields the CPU and looks again,
    /// for at most `linger`: on a loaded gateway with few cores the request threads
    /// then queue many records per wake-up instead of one.
    fn gather(&self, rx: &Receiver<Msg>, batch: &mut Vec<(Entry, Ack)>, control: &mut Option<Msg>) {
        let drain = |batch: &mut Vec<(Entry, Ack)>, control: &mut Option<Msg>| {
            let before = batch.len();
            while control.is_none() && batch.len() < self.cfg.max_batch {
                match rx.try_recv() {
                    Ok(Msg::Record(e, a)) => batch.push((e, a)),
                    Ok(other) => *control = Some(other),
                    Err(_) => break,
                }
            }
            batch.len() > before
        };
        drain(batch, control);
        if batch.is_empty() || self.cfg.linger.is_zero() {
            return;
        }
        let start = Instant::now();
        while control.is_none()
            && batch.len() < self.cfg.max_batch
            && start.elapsed() < self.cfg.linger
        {
            std::thread::yield_now();
            if !drain(batch, control) {
                break;
            }
        }
    }

    /// Stops the sync thread (after the writer's own last sync).
    fn stop_sync(&mut self) {
        self.durable.lock().stop = true;
        self.durable.wake.notify_all();
        if let Some(j) = self.sync_join.take() {
            let _ = j.join();
        }
    }

    /// fdatasyncs the current segment on this thread unless the sync thread already
    /// covered every record written (all earlier segments were synced at rotation).
    fn sync_now(&mut self) -> std::io::Result<()> {
        if self.durable.lock().durable >= self.next_seq {
            return Ok(());
        }
        sync_file(&self.file, self.cfg.fault.as_ref())?;
        let mut s = self.durable.lock();
        s.durable = s.durable.max(self.next_seq);
        self.durable.progress.notify_all();
        Ok(())
    }

    /// Waits until writing `n` more records leaves at most `max_unsynced` written
    /// records not yet durable (a batch larger than that waits until everything before
    /// it is durable); when syncs are failing by then, the batch is refused (it could
    /// not be made durable).
    fn wait_for_sync_room(&self, n: u64) -> std::io::Result<()> {
        let mut s = self.durable.lock();
        while self.next_seq > s.durable
            && (self.next_seq + n).saturating_sub(s.durable) > self.cfg.max_unsynced
        {
            if let Some(e) = &s.error {
                return Err(std::io::Error::other(e.clone()));
            }
            s.progress_waiters += 1;
            // The sync thread may be waiting out `sync_interval`: no longer.
            self.durable.wake.notify_one();
            s = self
                .durable
                .progress
                .wait_timeout(s, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            s.progress_waiters = s.progress_waiters.saturating_sub(1);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Option<Checkpoint>, String> {
        // A shutdown checkpoint is written even when nothing changed since the last
        // one, so a verifier can tell a clean stop from a dropped tail.
        self.write_checkpoint("shutdown")
    }

    fn checkpoint(&mut self, why: &str) -> Result<Option<Checkpoint>, String> {
        if self.tree.size() == self.last_cp_size && why != "manual" {
            return Ok(None);
        }
        self.write_checkpoint(why)
    }

    fn write_checkpoint(&mut self, why: &str) -> Result<Option<Checkpoint>, String> {
        // The records it covers must be on disk first (no second sync when the sync
        // thread already covered them).
        self.sync_now().map_err(|e| format!("fdatasync: {e}"))?;
        let cp = Checkpoint {
            origin: self.cfg.origin.clone(),
            size: self.tree.size(),
            root: self.tree.root(),
            extensions: Vec::new(),
        };
        let active = self.keyring.active();
        let text = note::sign(&cp.body(), active.public(), |m| self.keyring.sign(m));
        let entry = CheckpointEntry {
            size: cp.size,
            ts: now_rfc3339(),
            key_id: active.key_id().to_owned(),
            fingerprint: active.public().fingerprint().to_owned(),
            why: why.to_owned(),
            note: text.clone(),
        };
        append_json_line(&self.cfg.dir.join(segment::CHECKPOINTS), &entry)
            .map_err(|e| e.to_string())?;
        if let Some(pg) = &mut self.pg
            && let Err(e) = pg.insert_checkpoint(&entry)
        {
            // The records are committed; the checkpoint is in the files. The next one
            // covers these records in the database too.
            tracing::error!(error = %e, size = entry.size, "audit: checkpoint not stored in PostgreSQL");
        }
        self.last_cp_ts = Some(entry.ts.clone());
        write_atomic(&self.cfg.dir.join(segment::LATEST), text.as_bytes())
            .map_err(|e| e.to_string())?;
        self.last_cp_size = cp.size;
        self.last_cp_at = Instant::now();
        self.metrics
            .audit
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        Ok(Some(cp))
    }

    fn maybe_rotate(&mut self) -> std::io::Result<()> {
        if self.next_seq == self.seg_first
            || (self.seg_len < self.cfg.segment_max_bytes
                && self.seg_opened.elapsed() < self.cfg.segment_max_age)
        {
            return Ok(());
        }
        sync_file(&self.file, self.cfg.fault.as_ref())?;
        let f = Arc::new(open_segment(&self.cfg.dir, self.next_seq)?);
        {
            let mut s = self.durable.lock();
            s.durable = s.durable.max(self.next_seq);
            s.file = Arc::clone(&f);
            self.durable.progress.notify_all();
        }
        self.file = f;
        self.seg_first = self.next_seq;
        self.seg_len = 0;
        self.seg_opened = Instant::now();
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<(Entry, Ack)>) -> Result<(), String> {
        let n = batch.len() as u64;
        let result = self.write_batch_inner(batch);
        match &result {
            Ok(first) => {
                let acks: AckBatch = batch
                    .drain(..)
                    .enumerate()
                    .map(|(i, (_, ack))| (ack, Ok(first + i as u64)))
                    .collect();
                self.acker.deliver(acks);
                self.metrics.audit.written.fetch_add(n, Ordering::Relaxed);
                // Durable against power loss by the sync thread's next fdatasync.
                let idle = {
                    let mut s = self.durable.lock();
                    s.written = self.next_seq;
                    s.sync_idle
                };
                if idle {
                    self.durable.wake.notify_one();
                }
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, records = n, "audit: write failed; records refused");
                let acks: AckBatch = batch
                    .drain(..)
                    .map(|(_, ack)| (ack, Err(AppendError::Io(msg.clone()))))
                    .collect();
                self.acker.deliver(acks);
                self.metrics.audit.failed.fetch_add(n, Ordering::Relaxed);
                Err(msg)
            }
        }
    }

    /// Returns the seq of the batch's first record.
    fn write_batch_inner(&mut self, batch: &[(Entry, Ack)]) -> std::io::Result<u64> {
        if self.dirty {
            self.file.set_len(self.seg_len)?;
            self.dirty = false;
        }
        self.wait_for_sync_room(batch.len() as u64)?;
        self.maybe_rotate()?;
        self.buf.clear();
        let first = self.next_seq;
        let mut prev = self.prev;
        let mut seq = first;
        let mut leaves = std::mem::take(&mut self.leaves);
        leaves.clear();
        let mut rows = Vec::with_capacity(if self.pg.is_some() { batch.len() } else { 0 });
        // One `ts` for the batch: its records go to the file in one write, at this time.
        self.ts.clear();
        rampart_http::push_rfc3339(&mut self.ts, SystemTime::now());
        for (e, _) in batch {
            let before = prev;
            let start = self.buf.len();
            let leaf;
            (prev, leaf) = self.encoder.encode(&mut self.buf, seq, &self.ts, e, &prev);
            leaves.push(leaf);
            if self.pg.is_some() {
                rows.push(crate::pg::Row {
                    seq,
                    ts: self.ts.clone(),
                    line: String::from_utf8_lossy(
                        self.buf
                            .get(start..self.buf.len().saturating_sub(1))
                            .unwrap_or(&[]),
                    )
                    .into_owned(),
                    prev: record::hex(&before),
                    hash: record::hex(&prev),
                });
            }
            seq += 1;
        }
        if let Err(e) = self.write_all() {
            self.dirty = true;
            return Err(e);
        }
        if let Some(pg) = &mut self.pg
            && let Err(e) = pg.insert(rows)
            && !committed_anyway(pg, seq, &prev)
        {
            // Not committed: the batch is refused as a whole and cut from the file now,
            // so no record exists for a request that was refused.
            match self.file.set_len(self.seg_len) {
                Ok(()) => {}
                Err(_) => self.dirty = true,
            }
            return Err(std::io::Error::other(e.to_string()));
        }
        self.seg_len += self.buf.len() as u64;
        self.prev = prev;
        self.next_seq = seq;
        for l in &leaves {
            self.tree.push(*l);
        }
        self.leaves = leaves;
        Ok(first)
    }

    fn write_all(&mut self) -> std::io::Result<()> {
        if let Some(f) = &self.cfg.fault {
            let room = f.fail_after_bytes.saturating_sub(self.fault_bytes);
            if (self.buf.len() as u64) > room {
                // Like a full disk: part of the batch lands, then ENOSPC.
                let part = usize::try_from(room).unwrap_or(0);
                (&*self.file).write_all(self.buf.get(..part).unwrap_or(&[]))?;
                self.fault_bytes += room;
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.fault_bytes += self.buf.len() as u64;
        }
        (&*self.file).write_all(&self.buf)
    }
}

/// Whether a batch whose commit reported an error is in the database after all (the
/// commit's answer was lost): its last record is the node's last row, same hash. Without
/// this the next batch would reuse those seqs and fail on every commit.
fn committed_anyway(pg: &mut crate::pg::PgSink, next: u64, last: &Hash) -> bool {
    match pg.head() {
        Ok((n, Some(h))) if n == next && h == record::hex(last) => {
            tracing::warn!("audit: a PostgreSQL commit reported an error but the batch is stored");
            true
        }
        _ => false,
    }
}

/// Start-up against the PostgreSQL sink: the database's chain for this node must be a
/// prefix of the files' (same hash where it ends); records the files hold beyond it
/// (written before a crash, never acknowledged) are inserted.
struct PgCatchUp {
    sink: crate::pg::PgSink,
    /// Next seq the database expects.
    db_next: u64,
    db_hash: Option<String>,
    checked: bool,
    pending: Vec<crate::pg::Row>,
    inserted: u64,
}

const CATCH_UP_BATCH: usize = 4096;

impl PgCatchUp {
    fn start(
        cfg: &crate::pg::PgSinkConfig,
        first_retained: u64,
        prev_of_first: &Hash,
    ) -> Result<Self, AuditError> {
        let pg_err = |e: crate::pg::PgError| AuditError::Config(e.to_string());
        let mut sink = crate::pg::PgSink::connect(cfg).map_err(pg_err)?;
        let (db_next, db_hash) = sink.head().map_err(pg_err)?;
        let broken = |what: String| AuditError::Broken { seq: db_next, what };
        let mut checked = db_next == 0;
        if db_next < first_retained {
            return Err(broken(format!(
                "the PostgreSQL sink holds node `{}` up to seq {db_next} but the files were pruned below seq {first_retained}: the missing records cannot be inserted",
                cfg.node
            )));
        }
        if db_next == first_retained && db_next > 0 {
            // The database ends exactly where the pruned part of the files ended.
            if db_hash.as_deref() != Some(record::hex(prev_of_first).as_str()) {
                return Err(broken(format!(
                    "the PostgreSQL chain of node `{}` does not continue into the files",
                    cfg.node
                )));
            }
            checked = true;
        }
        Ok(Self {
            sink,
            db_next,
            db_hash,
            checked,
            pending: Vec::new(),
            inserted: 0,
        })
    }

    fn replayed(&mut self, r: &record::Record, line: &[u8]) -> Result<(), AuditError> {
        if r.seq + 1 == self.db_next {
            if self.db_hash.as_deref() != Some(r.hash.as_str()) {
                return Err(AuditError::Broken {
                    seq: r.seq,
                    what: format!(
                        "the PostgreSQL sink holds a different record at seq {} for node `{}`",
                        r.seq,
                        self.sink.node()
                    ),
                });
            }
            self.checked = true;
        }
        if r.seq >= self.db_next {
            self.pending.push(crate::pg::Row {
                seq: r.seq,
                ts: r.ts.clone(),
                line: String::from_utf8_lossy(line).into_owned(),
                prev: r.prev.clone(),
                hash: r.hash.clone(),
            });
            if self.pending.len() >= CATCH_UP_BATCH {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AuditError> {
        let rows = std::mem::take(&mut self.pending);
        let n = rows.len() as u64;
        self.sink
            .insert(rows)
            .map_err(|e| AuditError::Config(e.to_string()))?;
        self.inserted += n;
        Ok(())
    }

    fn finish(mut self, next_seq: u64) -> Result<crate::pg::PgSink, AuditError> {
        if self.db_next > next_seq {
            return Err(AuditError::Broken {
                seq: next_seq,
                what: format!(
                    "the PostgreSQL sink holds {} records for node `{}` but the files only {next_seq} (another gateway with this node_id, or lost files)",
                    self.db_next,
                    self.sink.node()
                ),
            });
        }
        if !self.checked {
            return Err(AuditError::Broken {
                seq: self.db_next.saturating_sub(1),
                what: "the PostgreSQL chain could not be matched to the files".into(),
            });
        }
        self.flush()?;
        if self.inserted > 0 {
            tracing::warn!(
                node = %self.sink.node(),
                records = self.inserted,
                "audit: inserted records into PostgreSQL that were written to the files before a crash"
            );
        }
        Ok(self.sink)
    }
}

pub(crate) fn now_rfc3339() -> String {
    let mut s = String::with_capacity(32);
    rampart_http::push_rfc3339(&mut s, SystemTime::now());
    s
}

pub(crate) fn append_json_line<T: serde::Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    let len = f.metadata()?.len();
    if let Err(e) = f.write_all(&line) {
        // A partial line (disk full) would break every later one: cut it.
        let _ = f.set_len(len);
        return Err(e);
    }
    f.sync_data()
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        sync_dir(d);
    }
    Ok(())
}
