//! The one source of truth for where the service is in its life.
//!
//! Owns: the [`State`] machine `Starting -> Ready <-> Unhealthy -> Draining ->
//! Stopping -> Exited`, published through a `tokio::sync::watch` so that the
//! supervisor, the shutdown timeline, the health answer and the proxy all
//! read the same value and can wait for changes. Each change is logged once,
//! here. Must not: decide anything; callers say what happened, and the
//! machine refuses changes that would go backwards (a late "ready" probe can
//! never undo a drain).

use std::time::Instant;

use tokio::sync::watch;

/// Where the service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// The child (or model) is starting; it has never been ready.
    Starting,
    /// Ready to serve: `/health` answers 200.
    Ready,
    /// Was ready, now failing its probes.
    Unhealthy,
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
            State::Draining => "draining",
            State::Stopping => "stopping",
            State::Exited => "exited",
        }
    }

    /// True once shutdown has begun (draining or later).
    pub fn is_shutting_down(self) -> bool {
        self >= State::Draining
    }
}

/// The shared lifecycle; cheap to clone (it is a watch sender).
#[derive(Clone, Debug)]
pub struct Lifecycle {
    tx: watch::Sender<State>,
    started: Instant,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        Lifecycle {
            tx: watch::Sender::new(State::Starting),
            started: Instant::now(),
        }
    }

    /// The current state.
    pub fn get(&self) -> State {
        *self.tx.borrow()
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.tx.subscribe()
    }

    /// When modelarts-init started, for uptimes and elapsed times.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The readiness probe's verdict. Only moves between Starting, Ready
    /// and Unhealthy; ignored once shutdown has begun.
    pub fn set_ready(&self, ready: bool) {
        self.transition(|s| match (s, ready) {
            (State::Starting | State::Unhealthy, true) => Some(State::Ready),
            (State::Ready, false) => Some(State::Unhealthy),
            _ => None,
        });
    }

    /// SIGTERM arrived. Returns the state before, so the caller can tell
    /// whether the service was ever ready.
    pub fn begin_drain(&self) -> State {
        let before = self.get();
        self.transition(|s| (s < State::Draining).then_some(State::Draining));
        before
    }

    /// The child got its stop signal (or, without a child, the listener
    /// stops accepting).
    pub fn begin_stop(&self) {
        self.transition(|s| (s < State::Stopping).then_some(State::Stopping));
    }

    /// The child has exited.
    pub fn exited(&self) {
        self.transition(|s| (s < State::Exited).then_some(State::Exited));
    }

    fn transition(&self, next: impl Fn(State) -> Option<State>) {
        self.tx.send_if_modified(|state| match next(*state) {
            Some(new) if new != *state => {
                tracing::info!(
                    from = state.as_str(),
                    to = new.as_str(),
                    elapsed_ms = self.started.elapsed().as_millis() as u64,
                    "lifecycle"
                );
                *state = new;
                true
            }
            _ => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards() {
        let l = Lifecycle::new();
        l.set_ready(false);
        assert_eq!(l.get(), State::Starting);
        l.set_ready(true);
        assert_eq!(l.get(), State::Ready);
        l.set_ready(false);
        assert_eq!(l.get(), State::Unhealthy);
        assert_eq!(l.begin_drain(), State::Unhealthy);
        l.set_ready(true);
        assert_eq!(l.get(), State::Draining);
        l.begin_stop();
        l.begin_drain();
        assert_eq!(l.get(), State::Stopping);
        l.exited();
        assert_eq!(l.get(), State::Exited);
    }
}
