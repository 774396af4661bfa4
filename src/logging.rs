//! Our own log lines: `tracing` events on stdout (rule R4), as text or JSON.
//!
//! Owns: the subscriber and tracing-appender's non-blocking writer. The
//! writer's queue is kept small (its default of 128k lines costs megabytes
//! up front, which pure-init mode must not pay), and it blocks rather than
//! drops when full, so no line is lost. Must not: write to stderr, which
//! ModelArts does not show.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt;

use crate::cli::LogFormat;

/// Lines that may wait for the writer thread before a logging call blocks.
const QUEUE_LINES: usize = 256;

/// Installs the global subscriber. Keep the returned guard alive until the
/// process exits: dropping it flushes what is still queued.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUE_LINES)
        .lossy(false)
        .thread_name("modelarts-init-log")
        .finish(std::io::stdout());
    let builder = fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO);
    // A second init (in tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    guard
}
