//! The shutdown timeline of rule R8, and everything that ends the process.
//!
//! Owns: the order and timing of the stop. With the defaults:
//!
//! ```text
//! t=0    SIGTERM: lifecycle -> Draining, /health says 503, traffic is still
//!        served (the balancer keeps routing here for a while)
//! t=60s  --drain-delay: the child gets SIGTERM; lifecycle -> Stopping, the
//!        HTTP front stops accepting and lets in-flight requests finish
//! t=85s  --stop-timeout: SIGKILL to the child's group and every other
//!        descendant; reap; exit with the child's status, inside 90 s
//! ```
//!
//! The delay comes *before* the child's SIGTERM because a server stops
//! accepting as soon as it is told to stop, while the balancer is still
//! sending it requests; the platform's 60 s are for the balancer to notice.
//! Shortcuts: SIGINT or a second SIGTERM skip the rest of the delay (fast
//! stop); a SIGTERM that comes before the service was ever ready skips it
//! too (no balancer can have routed traffic here); a child that exits on
//! its own ends everything at once, whatever the phase.
//!
//! Must not: touch the OS itself; `supervisor` spawns, signals and reaps.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use nix::sys::signal::Signal;
use signal_hook_tokio::Signals;
use tokio::time::Instant;

use crate::lifecycle::{Lifecycle, State};
use crate::supervisor::signals::{self, Action};
use crate::supervisor::{self, reaper, Child, ExitStatus};

/// How long to keep killing and reaping after the SIGKILL before giving up
/// on processes stuck in the kernel.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The two waits of rule R8.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// From our SIGTERM to the child's.
    pub drain_delay: Duration,
    /// From the child's SIGTERM to SIGKILL.
    pub stop_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// SIGTERM came; the child gets its own at `until`.
    Draining {
        until: Instant,
    },
    /// The child got its stop signal; SIGKILL at `kill_at`.
    Stopping {
        kill_at: Instant,
    },
}

/// Runs until the process should exit, and returns the child's status
/// (`None` without a child, or if it could not be collected).
///
/// `front_drained` resolves once the HTTP front has finished its in-flight
/// requests after the stop began (pass `std::future::ready(())` without a
/// front); in the Stopping phase the process ends when both the child is
/// gone and the front has drained, or at the stop timeout.
pub async fn run(
    child: Option<Child>,
    mut signals: Signals,
    lifecycle: &Lifecycle,
    timeline: Timeline,
    front_drained: impl Future<Output = ()>,
) -> Option<ExitStatus> {
    tokio::pin!(front_drained);
    let child_pid = child.map(|c| c.pid);
    let mut phase = Phase::Running;
    let mut front_done = false;
    let mut status: Option<ExitStatus> = None;
    // When SIGTERM (or SIGINT) arrived; every later step logs time since.
    let mut t0: Option<Instant> = None;
    let elapsed_ms = |t0: Option<Instant>| t0.map_or(0, |t| t.elapsed().as_millis() as u64);

    // Stops the child with `sig` now and starts the stop timeout.
    let stop = |sig: Signal, t0: Option<Instant>| {
        lifecycle.begin_stop();
        if let Some(c) = child {
            tracing::info!(child.pid = c.pid.as_raw(), signal = %sig, elapsed_ms = elapsed_ms(t0), "stop signal to child");
            c.signal(sig);
        }
        Phase::Stopping {
            kill_at: Instant::now() + timeline.stop_timeout,
        }
    };

    let timed_out = loop {
        let child_gone = child.is_none() || status.is_some();
        match phase {
            // The child ended on its own: nothing left to serve or drain.
            Phase::Running | Phase::Draining { .. } if child.is_some() && status.is_some() => {
                break false
            }
            Phase::Stopping { .. } if child_gone && front_done => break false,
            _ => {}
        }
        let deadline = match phase {
            Phase::Running => None,
            Phase::Draining { until } => Some(until),
            Phase::Stopping { kill_at } => Some(kill_at),
        };
        tokio::select! {
            signal = signals.next() => {
                let Some(signal) = signal else { break false };
                match signals::decide(signal, phase != Phase::Running) {
                    Some(Action::Reap) => {
                        if let Some(st) = reaper::reap_all(child_pid).child {
                            tracing::info!(child.pid = child_pid.map(|p| p.as_raw()), status = %st, elapsed_ms = elapsed_ms(t0), "child exited");
                            status = Some(st);
                        }
                    }
                    Some(Action::Drain) => {
                        t0 = Some(Instant::now());
                        let before = lifecycle.begin_drain();
                        if before == State::Starting {
                            tracing::info!(signal = "SIGTERM", "never ready, so no traffic to drain: skipping the drain delay");
                            phase = stop(Signal::SIGTERM, t0);
                        } else {
                            tracing::info!(signal = "SIGTERM", drain_delay_ms = timeline.drain_delay.as_millis() as u64, "draining: /health now fails, traffic still served");
                            phase = Phase::Draining { until: Instant::now() + timeline.drain_delay };
                        }
                    }
                    Some(Action::FastStop(sig)) => {
                        t0.get_or_insert_with(Instant::now);
                        lifecycle.begin_drain();
                        if let Phase::Stopping { .. } = phase {
                            if let Some(c) = child { c.signal(sig) }
                        } else {
                            tracing::info!(signal = %sig, elapsed_ms = elapsed_ms(t0), "fast stop: skipping the rest of the drain delay");
                            phase = stop(sig, t0);
                        }
                    }
                    Some(Action::Forward(sig)) => {
                        if let Some(c) = child {
                            if status.is_none() { c.forward(sig) }
                        }
                    }
                    None => {}
                }
            }
            _ = sleep_until_opt(deadline) => match phase {
                Phase::Draining { .. } => phase = stop(Signal::SIGTERM, t0),
                _ => break true,
            },
            _ = &mut front_drained, if !front_done && matches!(phase, Phase::Stopping { .. }) => {
                front_done = true;
            }
        }
    };

    if timed_out {
        tracing::warn!(
            child.pid = child_pid.map(|p| p.as_raw()),
            elapsed_ms = elapsed_ms(t0),
            "stop timeout: SIGKILL to the child's process group and every descendant"
        );
    }
    lifecycle.exited();
    let awaiting = if status.is_none() { child_pid } else { None };
    let late = supervisor::kill_everything(child, awaiting, KILL_GRACE).await;
    if let (Some(st), None) = (late, status) {
        tracing::info!(child.pid = child_pid.map(|p| p.as_raw()), status = %st, elapsed_ms = elapsed_ms(t0), "child exited");
    }
    status.or(late)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
