//! Our own log lines: `tracing` events on stdout (rule R4), as text or JSON.
//!
//! Owns: the subscriber and tracing-appender's non-blocking writer, and
//! [`Throttle`] for the lines a client can cause on every request. The
//! writer's queue is kept small (its default of 128k lines costs megabytes
//! up front, which pure-init mode must not pay), and it blocks rather than
//! drops when full, so no line is lost. Must not: write to stderr, which
//! ModelArts does not show.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// Lines that may wait for the writer thread before a logging call blocks.
const QUEUE_LINES: usize = 256;

/// Installs the global subscriber, writing the lines `filter` lets through.
/// Keep the returned guard alive until the process exits: dropping it
/// flushes what is still queued.
pub fn init(format: LogFormat, filter: &Targets) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUE_LINES)
        .lossy(false)
        .thread_name("modelarts-init-log")
        .finish(std::io::stdout());
    // The filter's most verbose level, so that the builder does not drop
    // what the filter would let through.
    let max = filter
        .iter()
        .map(|(_, level)| level)
        .chain(filter.default_level())
        .max()
        .unwrap_or(LevelFilter::INFO);
    let builder = fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(max);
    // A second init (in tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder.finish().with(filter.clone()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish()
            .with(filter.clone())
            .try_init(),
    };
    guard
}

/// How often a throttled call site may write a line.
pub(crate) const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// `tracing::$level!(...)` at most once per [`LOG_EVERY`] from this call
/// site, for events that clients or a failing upstream cause once per
/// request; the line carries `suppressed`, how many were left out since
/// the one before.
macro_rules! throttled {
    ($level:ident, $($rest:tt)+) => {{
        static LOG: std::sync::LazyLock<$crate::logging::Throttle> =
            std::sync::LazyLock::new(|| $crate::logging::Throttle::new($crate::logging::LOG_EVERY));
        if let Some(suppressed) = LOG.allow() {
            tracing::$level!(suppressed, $($rest)+);
        }
    }};
}
pub(crate) use throttled;

/// At most one line per period for an event that clients can cause at
/// will (a refused request); the ones left out are counted and reported by
/// the next line that is written.
#[derive(Debug)]
pub(crate) struct Throttle {
    base: Instant,
    every_ms: u64,
    /// Milliseconds since `base` before which no line is written.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Throttle {
        Throttle {
            base: Instant::now(),
            every_ms: every.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one)` if a line may be written
    /// now; `None` (and one more left out) otherwise.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = self.base.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + self.every_ms, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_left_out() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        // A new period: the next line says how many were left out.
        t.next_ms.store(0, Relaxed);
        assert_eq!(t.allow(), Some(2));
    }
}
