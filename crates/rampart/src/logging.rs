//! Structured JSON logs (tracing) on stderr, and the access log on stdout.
//!
//! The access log goes through a bounded, non-blocking writer: when stdout cannot keep
//! up, lines are dropped (and counted by tracing-appender) rather than stalling requests.

use std::io::Write as _;
use std::sync::Arc;

use rampart_http::AccessSink;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
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

struct StdoutSink(NonBlocking);

impl AccessSink for StdoutSink {
    fn write_line(&self, line: &str) {
        let mut w = self.0.clone();
        let _ = w.write_all(line.as_bytes());
    }
}

/// The access-log sink; keep the guard alive until exit so queued lines are flushed.
pub fn access_sink() -> (Arc<dyn AccessSink>, WorkerGuard) {
    let (nb, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(65_536)
        .thread_name("rampart-access-log")
        .finish(std::io::stdout());
    (Arc::new(StdoutSink(nb)), guard)
}
