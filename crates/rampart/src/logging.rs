//! Structured JSON logs (tracing) on stderr, and the access log on stdout.
//!
//! The access log goes through a bounded in-memory batch written by its own thread: when
//! stdout cannot keep up, lines are dropped (and the count logged) rather than stalling
//! requests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rampart_http::AccessSink;
use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber. `RAMPART_LOG` sets the filter (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_env("RAMPART_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The access-log buffer shared by request tasks and the writer thread.
struct Batch {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// Lines are appended to an in-memory batch under a short lock (no syscall on the
/// request path); a writer thread writes the batch to stdout every 50 ms or as soon as
/// it passes 64 KiB. Past 8 MiB of unwritten lines (stdout stalled) new lines are dropped
/// and counted, so a slow log consumer never stalls or grows the gateway.
struct BatchSink(Arc<Batch>);

const FLUSH_AT: usize = 64 * 1024;
const MAX_PENDING: usize = 8 * 1024 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(50);

impl AccessSink for BatchSink {
    fn write_line(&self, line: &str) {
        let Ok(mut buf) = self.0.buf.lock() else {
            return;
        };
        if buf.len() + line.len() > MAX_PENDING {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        buf.extend_from_slice(line.as_bytes());
        if buf.len() >= FLUSH_AT {
            self.0.wake.notify_one();
        }
    }
}

/// Writes what is left when dropped (at exit).
pub struct AccessLogGuard {
    batch: Arc<Batch>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AccessLogGuard {
    fn drop(&mut self) {
        self.batch.stop.store(true, Ordering::Release);
        self.batch.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn drain(batch: &Batch, out: &mut dyn std::io::Write, spare: &mut Vec<u8>) {
    if let Ok(mut buf) = batch.buf.lock() {
        std::mem::swap(&mut *buf, spare);
    }
    if !spare.is_empty() {
        let _ = out.write_all(spare);
        let _ = out.flush();
        spare.clear();
    }
    let dropped = batch.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(dropped, "access log could not keep up; lines dropped");
    }
}

/// The access-log sink (stdout); keep the guard alive until exit so pending lines are
/// written.
pub fn access_sink() -> (Arc<dyn AccessSink>, AccessLogGuard) {
    let batch = Arc::new(Batch {
        buf: Mutex::new(Vec::with_capacity(FLUSH_AT * 2)),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let b = Arc::clone(&batch);
    let thread = std::thread::Builder::new()
        .name("rampart-access-log".into())
        .spawn(move || {
            let mut out = std::io::stdout();
            let mut spare = Vec::with_capacity(FLUSH_AT * 2);
            loop {
                if let Ok(buf) = b.buf.lock() {
                    let _ = b.wake.wait_timeout_while(buf, FLUSH_EVERY, |buf| {
                        buf.len() < FLUSH_AT && !b.stop.load(Ordering::Acquire)
                    });
                }
                drain(&b, &mut out, &mut spare);
                if b.stop.load(Ordering::Acquire) {
                    drain(&b, &mut out, &mut spare);
                    return;
                }
            }
        })
        .ok();
    (
        Arc::new(BatchSink(Arc::clone(&batch))),
        AccessLogGuard { batch, thread },
    )
}
