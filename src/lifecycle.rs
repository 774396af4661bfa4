//! Where the service is in its life: the read-only view of the timeline
//! that the health answer, the proxy, the accept loop and the status page
//! watch.
//!
//! Owns: the [`Snapshot`] channel (a `tokio::sync::watch`, so that readers
//! can wait for changes) and what goes the other way, to the timeline: the
//! readiness verdicts, and when the last request arrived (for the quiet
//! drain only, which turns it on: one shared atomic the front writes at
//! most once a millisecond and the timeline reads when it decides, no
//! message per request). Each change of state is logged once, here. Must
//! not: decide anything. The one writer is the timeline's driver, which
//! publishes what its machine derives (`timeline::machine`); there is no
//! second copy of the phase anywhere but the atomic mirror of the
//! published state that [`Lifecycle::get`] reads (written only by
//! [`Feed::publish`], under the channel's lock): every request reads the
//! state, and the channel's read lock is a shared write that the serving
//! threads would otherwise bounce between their cores.

use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::supervisor::ExitStatus;

/// Where the service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// The child (or model) is starting; it has not been ready since it
    /// started.
    Starting,
    /// Ready to serve: `/health` answers 200.
    Ready,
    /// Was ready, now failing its probes.
    Unhealthy,
    /// The child exited and is being restarted (`--restart`).
    Restarting,
    /// SIGTERM arrived: `/health` answers 503, traffic is still served.
    Draining,
    /// The child got its stop signal; no new connections are accepted.
    Stopping,
    /// The child is gone; the process is about to exit.
    Exited,
}

impl State {
    /// A short lowercase name, for logs and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Unhealthy => "unhealthy",
            State::Restarting => "restarting",
            State::Draining => "draining",
            State::Stopping => "stopping",
            State::Exited => "exited",
        }
    }

    /// Every state, in order (`State::ALL[s as usize] == s`).
    pub(crate) const ALL: [State; 7] = [
        State::Starting,
        State::Ready,
        State::Unhealthy,
        State::Restarting,
        State::Draining,
        State::Stopping,
        State::Exited,
    ];

    /// True once shutdown has begun (draining or later).
    pub fn is_shutting_down(self) -> bool {
        self >= State::Draining
    }
}

/// The state and what the status page shows of the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub state: State,
    /// The running child, if one runs.
    pub child_pid: Option<i32>,
    /// Restarts so far (`--restart`).
    pub restarts: u32,
    /// How the child last exited.
    pub last_exit: Option<ExitStatus>,
}

impl Snapshot {
    const START: Snapshot = Snapshot {
        state: State::Starting,
        child_pid: None,
        restarts: 0,
        last_exit: None,
    };
}

/// The view everybody reads; cheap to clone.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    tx: Arc<watch::Sender<Snapshot>>,
    /// The published state, as `State as u8`.
    state: Arc<AtomicU8>,
    verdicts: mpsc::UnboundedSender<bool>,
    started: Instant,
    arrivals: Arc<Arrivals>,
}

/// The timeline's side: publishes snapshots, receives verdicts.
#[derive(Debug)]
pub struct Feed {
    tx: Arc<watch::Sender<Snapshot>>,
    state: Arc<AtomicU8>,
    verdicts: mpsc::UnboundedReceiver<bool>,
    started: Instant,
    arrivals: Arc<Arrivals>,
}

/// When the last request arrived: milliseconds after `base`, rounded up
/// (so that the quiet period is never cut short), 0 before the first. On
/// the timeline's clock (`tokio::time`), so that paused-time tests can
/// drive it.
#[derive(Debug)]
struct Arrivals {
    /// Whether anybody asks (`--drain-quiet-period`); until then an
    /// arrival costs one relaxed load, no clock read.
    tracked: AtomicBool,
    base: tokio::time::Instant,
    last_ms: AtomicU64,
}

/// A new lifecycle in state Starting, and the feed for its timeline.
pub fn channel() -> (Lifecycle, Feed) {
    let tx = Arc::new(watch::Sender::new(Snapshot::START));
    let state = Arc::new(AtomicU8::new(Snapshot::START.state as u8));
    let (vtx, vrx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let arrivals = Arc::new(Arrivals {
        tracked: AtomicBool::new(false),
        base: tokio::time::Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let view = Lifecycle {
        tx: tx.clone(),
        state: state.clone(),
        verdicts: vtx,
        started,
        arrivals: arrivals.clone(),
    };
    let feed = Feed {
        tx,
        state,
        verdicts: vrx,
        started,
        arrivals,
    };
    (view, feed)
}

impl Lifecycle {
    /// The current state.
    pub fn get(&self) -> State {
        State::ALL[self.state.load(Acquire) as usize]
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        *self.tx.borrow()
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    /// When modelarts-init started, for uptimes.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The readiness probe's verdict, for the timeline to weigh.
    pub fn report_ready(&self, ready: bool) {
        let _ = self.verdicts.send(ready);
    }

    /// A request arrived now (not a health probe or a metrics scrape):
    /// for the quiet drain, if on ([`Feed::track_arrivals`]). Then a clock
    /// read and, at most once a millisecond, an atomic write shared by the
    /// serving threads.
    pub fn request_arrived(&self) {
        let a = &self.arrivals;
        if !a.tracked.load(Relaxed) {
            return;
        }
        let ms = a.base.elapsed().as_millis() as u64 + 1;
        if a.last_ms.load(Relaxed) < ms {
            a.last_ms.fetch_max(ms, Relaxed);
        }
    }
}

impl Feed {
    /// Publishes `next`, logging a change of state.
    pub(crate) fn publish(&self, next: Snapshot) {
        self.tx.send_if_modified(|now| {
            if *now == next {
                return false;
            }
            if now.state != next.state {
                tracing::info!(
                    from = now.state.as_str(),
                    to = next.state.as_str(),
                    uptime_ms = self.started.elapsed().as_millis() as u64,
                    "lifecycle"
                );
            }
            *now = next;
            self.state.store(next.state as u8, Release);
            true
        });
    }

    /// From now on, the front notes when requests arrive (the quiet
    /// drain wants [`Feed::last_request`]).
    pub(crate) fn track_arrivals(&self) {
        self.arrivals.tracked.store(true, Relaxed);
    }

    /// When the last request arrived, if one did (never earlier than it
    /// did).
    pub(crate) fn last_request(&self) -> Option<tokio::time::Instant> {
        let ms = self.arrivals.last_ms.load(Relaxed);
        (ms > 0).then(|| self.arrivals.base + Duration::from_millis(ms))
    }

    /// The next verdict; `None` once no probe can send any more.
    pub(crate) async fn verdict(&mut self) -> Option<bool> {
        self.verdicts.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_follows_every_published_state() {
        let (view, feed) = channel();
        assert_eq!(view.get(), State::Starting);
        for state in State::ALL {
            assert_eq!(State::ALL[state as usize], state);
            feed.publish(Snapshot {
                state,
                ..Snapshot::START
            });
            assert_eq!(view.get(), state);
            assert_eq!(view.snapshot().state, state);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn arrivals_are_noted_only_once_the_quiet_drain_asks() {
        let (view, feed) = channel();
        view.request_arrived();
        assert_eq!(feed.last_request(), None, "off: nothing noted");
        feed.track_arrivals();
        tokio::time::advance(Duration::from_millis(40)).await;
        view.request_arrived();
        let at = feed.last_request().unwrap();
        // Rounded up to the next millisecond, never earlier.
        assert_eq!(
            at - feed.arrivals.base,
            Duration::from_millis(41),
            "noted at 40 ms"
        );
    }
}
