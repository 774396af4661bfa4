//! The stop timeline of rule R8, and everything that ends the process or
//! starts the child again.
//!
//! With the defaults:
//!
//! ```text
//! t=0    SIGTERM: lifecycle -> Draining, /health says 503, traffic is still
//!        served (the balancer keeps routing here for a while)
//! t=60s  --drain-delay: the child gets --stop-signal; lifecycle -> Stopping,
//!        the HTTP front stops accepting and lets in-flight requests finish
//! t=85s  --stop-timeout: SIGKILL to the child's group and every other
//!        descendant; reap; exit with the child's status, inside 90 s
//! ```
//!
//! The delay comes *before* the child's stop signal because a server stops
//! accepting as soon as it is told to stop, while the balancer is still
//! sending it requests; the platform's 60 s are for the balancer to notice.
//! Shortcuts: SIGINT or a second SIGTERM skip the rest of the delay (fast
//! stop); a SIGTERM that comes before the service was ever ready skips it
//! too (no balancer can have routed traffic here); a child that exits on
//! its own ends the service at once, whatever the phase. With
//! `--drain-quiet-period` the delay also ends once the balancer has
//! visibly let go: no request for that long, and `--drain-min` after the
//! SIGTERM (the time the platform needs to see `/health` fail).
//!
//! Owns: the settings of the timeline and starting it. Submodules:
//! `machine` (the pure state machine: every decision), `driver` (the async
//! loop that feeds it and carries out its effects), `restart` (the restart
//! policy). Must not: touch the OS outside `Processes` implementations.

pub(crate) mod driver;
pub(crate) mod machine;
pub mod restart;

use std::future::Future;
use std::time::Duration;

use futures_util::Stream;

use crate::lifecycle::Feed;
pub use driver::Processes;
pub use machine::Machine;

/// The timeline's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// From our SIGTERM to the child's stop signal.
    pub drain_delay: Duration,
    /// From the child's stop signal to SIGKILL.
    pub stop_timeout: Duration,
    /// What the child gets at the end of the drain (`--stop-signal`).
    pub stop_signal: i32,
    /// From the child's exit to the SIGKILL of what it left behind (which
    /// gets SIGTERM at once).
    pub leftover_grace: Duration,
    /// Whether and when the child is started again.
    pub restart: restart::Policy,
    /// `--drain-quiet-period`: end the drain delay early once quiet.
    pub quiet: Option<Quiet>,
}

/// The adaptive drain (`--drain-quiet-period`, `--drain-min`): the delay
/// ends at the first moment at least `min` after the SIGTERM and at least
/// `period` after the last request that arrived (the front reports
/// arrivals; health probes and metrics scrapes are not requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    pub period: Duration,
    pub min: Duration,
}

/// Runs the timeline of a service with the child `child` (already started
/// by `procs`, or `None`: the app serves in this process) and, if `front`,
/// an HTTP front that resolves `front_drained` once closed. Returns the
/// exit code.
pub async fn run(
    settings: Settings,
    child: Option<i32>,
    procs: impl Processes,
    signals: impl Stream<Item = i32> + Unpin,
    feed: Feed,
    front: Option<impl Future<Output = ()>>,
) -> u8 {
    let machine = Machine::new(settings, child, front.is_some());
    match front {
        Some(drained) => driver::run(machine, procs, signals, feed, drained).await,
        None => driver::run(machine, procs, signals, feed, std::future::pending()).await,
    }
}
