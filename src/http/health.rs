//! Readiness: the probe of the upstream, and the `/health` answer (R3).
//!
//! Owns: deciding when the upstream is ready. Before it was ever ready, one
//! successful probe makes it ready (and probes run every 100 ms, so that
//! `/health` turns 200 promptly); after that, only `--unhealthy-after`
//! failures in a row make it unhealthy, so one slow answer does not take
//! the instance out of the balancer. Each change is logged once, by
//! `lifecycle`, never per probe. Must not: answer anything but `/health`.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;
use tokio::net::TcpStream;

use super::{client, json, Body};
use crate::lifecycle::{Lifecycle, State};

/// Probe period until the upstream is first ready.
const STARTUP_PERIOD: Duration = Duration::from_millis(100);

/// `/health`: 200 `{"health": "true"}` only while ready.
pub fn answer(state: State) -> hyper::Response<Body> {
    match state {
        State::Ready => json(StatusCode::OK, &serde_json::json!({"health": "true"})),
        other => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"health": "false", "reason": other.as_str()}),
        ),
    }
}

/// How to probe the upstream.
#[derive(Debug, Clone)]
pub struct Probe {
    pub upstream: SocketAddr,
    /// GET this path and want 2xx/3xx; `None`: a TCP connect is enough.
    pub path: Option<String>,
    pub interval: Duration,
    pub unhealthy_after: u32,
    /// Warn if not ready by then (config.json's patience).
    pub patience: Option<Duration>,
}

impl Probe {
    /// Probes until shutdown begins, feeding the verdicts to `lifecycle`.
    pub async fn run(self, lifecycle: Lifecycle) {
        let mut failures = 0u32;
        let mut warned = false;
        loop {
            if lifecycle.get().is_shutting_down() {
                return;
            }
            let ok = self.check().await;
            failures = if ok { 0 } else { failures + 1 };
            match lifecycle.get() {
                State::Starting | State::Unhealthy if ok => lifecycle.report_ready(true),
                State::Ready if failures >= self.unhealthy_after => lifecycle.report_ready(false),
                _ => {}
            }
            if let Some(patience) = self.patience {
                if !warned
                    && lifecycle.get() == State::Starting
                    && lifecycle.started().elapsed() > patience
                {
                    warned = true;
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

    /// One probe, bounded by the probe interval (at least 1 s).
    async fn check(&self) -> bool {
        let limit = self.interval.max(Duration::from_secs(1));
        let Some(path) = &self.path else {
            let connect = TcpStream::connect(self.upstream);
            return matches!(tokio::time::timeout(limit, connect).await, Ok(Ok(_)));
        };
        let host = self.upstream.to_string();
        match client::get(self.upstream, &host, path, limit).await {
            Ok(status) => status.is_success() || status.is_redirection(),
            Err(_) => false,
        }
    }
}
