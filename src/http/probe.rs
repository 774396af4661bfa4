//! Readiness: probing the upstream until a worker answers, and watching it
//! after that.
//!
//! Owns: the verdicts sent to the timeline. A TCP connect only proves that
//! a socket is bound (gunicorn's master binds before its workers have
//! imported the app), so by default, until first ready, the probe is HTTP:
//! the app's own health path (config.json's `health.url`, else `/health`)
//! counts when it answers 2xx/3xx; if it answers 404 (or another 4xx: a
//! WebSocket-only server answers 426 to a plain GET), `GET /` instead,
//! where any answer below 500 counts (a 404 or 405 proves that a worker
//! runs the app; a 503 while the model loads does not). Once ready, the
//! app's access log is spared: a TCP connect per `--probe-interval`, and
//! the HTTP probe only when no proxied request has had a non-5xx answer for
//! [`QUIET`]. `--upstream-health PATH` probes PATH (2xx/3xx) every
//! interval; `--upstream-health tcp` only connects.
//!
//! Before first ready, probes run every 100 ms, so that `/health` turns 200
//! promptly; after that, only `--unhealthy-after` failures in a row make it
//! unhealthy, so one slow answer does not take the instance out of the
//! balancer. While not ready, a warning every [`WARN_EVERY`] says what the
//! probe saw and what to check. Must not: change the lifecycle itself (the
//! timeline weighs the verdicts) or answer requests.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use super::client::{self, ClientError};
use crate::lifecycle::{Lifecycle, State};

/// Probe period until the upstream is first ready.
const STARTUP_PERIOD: Duration = Duration::from_millis(100);

/// Once ready, the HTTP probe runs only when no proxied request has had a
/// non-5xx answer for this long.
pub const QUIET: Duration = Duration::from_secs(30);

/// How often the probe says why the upstream is not ready.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// What proves readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The default: HTTP on the app's health path (then `/`) until first
    /// ready, then TCP while proxied requests succeed.
    Auto { health_path: String },
    /// `--upstream-health PATH`: GET PATH answers 2xx/3xx, every interval.
    Path(String),
    /// `--upstream-health tcp`: a TCP connection is accepted.
    Tcp,
}

/// How to probe the upstream.
#[derive(Debug, Clone)]
pub struct Probe {
    pub upstream: SocketAddr,
    pub readiness: Readiness,
    pub interval: Duration,
    pub unhealthy_after: u32,
    /// Warn if not ready by then (config.json's patience).
    pub patience: Option<Duration>,
}

/// Whether a proxied request had a non-5xx answer since the probe last
/// looked: set by every front thread, cleared by the probe. A flag, not a
/// time: the hot path pays a relaxed load (a store only the first time
/// after the probe cleared it), and no clock read.
#[derive(Debug, Default)]
pub struct Answered {
    since_last_look: AtomicBool,
}

impl Answered {
    /// A proxied request was answered below 500.
    pub fn mark(&self) {
        if !self.since_last_look.load(Relaxed) {
            self.since_last_look.store(true, Relaxed);
        }
    }

    /// Whether one was since the last call.
    fn take(&self) -> bool {
        self.since_last_look.swap(false, Relaxed)
    }
}

/// What one probe saw.
#[derive(Debug)]
enum Outcome {
    Ready,
    /// The app answered `status` on `path`.
    Status {
        path: String,
        status: StatusCode,
    },
    /// No connection, no answer, or a broken one.
    Failed(ClientError),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ready => write!(f, "ready"),
            Outcome::Status { path, status } => write!(f, "GET {path} answered {status}"),
            Outcome::Failed(e) => write!(f, "{}", crate::error::Chain(e)),
        }
    }
}

impl Outcome {
    /// What to check, in the user's terms.
    fn hint(&self, upstream: SocketAddr) -> String {
        let port = upstream.port();
        match self {
            Outcome::Failed(ClientError::Connect { .. }) => format!(
                "is the server listening on $PORT={port} ({upstream}, --upstream)?"
            ),
            Outcome::Failed(ClientError::TimedOut { .. }) => format!(
                "something accepts connections on {upstream} but does not answer: are the server's workers still loading the app?"
            ),
            Outcome::Status { .. } => {
                "the app answers, but not as ready: a 5xx while the model loads, or a health path that fails (--upstream-health)".to_owned()
            }
            Outcome::Failed(_) => format!("is the server on {upstream} speaking HTTP/1.1?"),
            Outcome::Ready => String::new(),
        }
    }
}

impl Probe {
    /// Probes until shutdown begins, reporting verdicts to `lifecycle`.
    pub async fn run(self, lifecycle: Lifecycle, answered: std::sync::Arc<Answered>) {
        let mut failures = 0u32;
        let mut patience_warned = false;
        // The app's health path answered 404: try `/` straight away.
        let mut root = false;
        let mut not_ready_since = Instant::now();
        let mut warned_at: Option<Instant> = None;
        // When a proxied request was last seen answered.
        let mut answered_at: Option<Instant> = None;
        loop {
            let state = lifecycle.get();
            if state.is_shutting_down() {
                return;
            }
            if state == State::Restarting {
                // No child to probe; the next one is probed from scratch.
                failures = 0;
                not_ready_since = Instant::now();
                tokio::time::sleep(STARTUP_PERIOD).await;
                continue;
            }
            let first = state == State::Starting;
            if answered.take() {
                answered_at = Some(Instant::now());
            }
            let serving = answered_at.is_some_and(|at| at.elapsed() < QUIET);
            let outcome = self.check(first, serving, &mut root).await;
            let ok = matches!(outcome, Outcome::Ready);
            failures = if ok { 0 } else { failures + 1 };
            match lifecycle.get() {
                State::Starting | State::Unhealthy if ok => lifecycle.report_ready(true),
                State::Ready if failures >= self.unhealthy_after => {
                    tracing::warn!(upstream = %self.upstream, probe = %outcome, failures,
                        "readiness lost: /health now fails");
                    lifecycle.report_ready(false);
                    not_ready_since = Instant::now();
                    warned_at = None;
                }
                _ => {}
            }
            let now = Instant::now();
            if matches!(lifecycle.get(), State::Starting | State::Unhealthy) && !ok {
                let due = warned_at
                    .map_or(now.duration_since(not_ready_since) >= WARN_EVERY, |w| {
                        now.duration_since(w) >= WARN_EVERY
                    });
                if due {
                    warned_at = Some(now);
                    tracing::warn!(upstream = %self.upstream, probe = %outcome,
                        not_ready_s = now.duration_since(not_ready_since).as_secs(),
                        "upstream not ready: {}", outcome.hint(self.upstream));
                }
            } else if ok {
                not_ready_since = now;
                warned_at = None;
            }
            if let Some(patience) = self.patience {
                if !patience_warned
                    && lifecycle.get() == State::Starting
                    && lifecycle.started().elapsed() > patience
                {
                    patience_warned = true;
                    tracing::warn!(upstream = %self.upstream, patience_s = patience.as_secs(),
                        "upstream not ready within config.json's health patience (initial_delay_seconds + failure_threshold x period_seconds): ModelArts will count this instance as failed");
                }
            }
            let period = if lifecycle.get() == State::Starting {
                STARTUP_PERIOD.min(self.interval)
            } else {
                self.interval
            };
            tokio::time::sleep(period).await;
        }
    }

    /// One probe, bounded by the probe interval (at least 1 s); `first`
    /// until the upstream was first ready; `serving` while proxied requests
    /// get answers.
    async fn check(&self, first: bool, serving: bool, root: &mut bool) -> Outcome {
        let limit = self.interval.max(Duration::from_secs(1));
        match &self.readiness {
            Readiness::Tcp => self.connect(limit).await,
            Readiness::Path(path) => {
                self.get(path, limit, |s| s.is_success() || s.is_redirection())
                    .await
            }
            Readiness::Auto { .. } if !first && serving => self.connect(limit).await,
            Readiness::Auto { health_path } => {
                if !*root {
                    let outcome = self
                        .get(health_path, limit, |s| s.is_success() || s.is_redirection())
                        .await;
                    match outcome {
                        // No such path (404), or one the app refuses to
                        // a plain GET (a WebSocket-only server's 426):
                        // `/` then, where any answer below 500 counts.
                        Outcome::Status { status, .. } if status.is_client_error() => {
                            *root = true;
                        }
                        other => return other,
                    }
                }
                self.get("/", limit, |s| s.as_u16() < 500).await
            }
        }
    }

    async fn connect(&self, limit: Duration) -> Outcome {
        match client::tcp(self.upstream, limit).await {
            Ok(_) => Outcome::Ready,
            Err(e) => Outcome::Failed(e),
        }
    }

    async fn get(&self, path: &str, limit: Duration, ready: fn(StatusCode) -> bool) -> Outcome {
        let host = self.upstream.to_string();
        match client::get(self.upstream, &host, path, limit).await {
            Ok(status) if ready(status) => Outcome::Ready,
            Ok(status) => Outcome::Status {
                path: path.to_owned(),
                status,
            },
            Err(e) => Outcome::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_is_seen_once_per_look() {
        let a = Answered::default();
        assert!(!a.take(), "never answered");
        a.mark();
        a.mark();
        assert!(a.take());
        assert!(!a.take(), "cleared by the look");
    }
}
