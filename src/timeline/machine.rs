//! The stop timeline as a pure state machine: an input and the time in,
//! effects out.
//!
//! Owns: every decision of the timeline (when the drain starts and ends,
//! who gets which signal when, when leftovers are killed, whether the
//! child is restarted, when we exit, and with which code), and the
//! [`Snapshot`] that everybody else reads as the lifecycle. Must not: touch
//! the OS or read a clock (`now` comes with each input, so unit tests run it
//! on made-up times); the driver carries out the effects.
//!
//! The phases, each carrying what it waits for (watchexec's job states):
//!
//! ```text
//! Running(health) --TERM, was ready--> Draining{until} --until / quiet--> Stopping{kill_at}
//!        |  \--TERM, never ready / INT / 2nd TERM---------------------^  |
//!        | child exits                                 child exits |     | kill_at
//!        v                                                         v     v
//!     Ending{kill_at, then} --leftovers reaped--> then   <---  Killing{give_up, then}
//!        \--kill_at (leftover grace or stop deadline)-->--------------^
//!   then = Exit: Finishing{until} (the front's last answers) --> Done
//!   then = Restart{at}: Backoff{until} --until--> Running(Starting)
//! ```
//!
//! With `--drain-quiet-period` ([`super::Quiet`]) the drain also ends at
//! the first moment at least `min` after the SIGTERM and `period` after
//! the last request that arrived ([`Input::LastRequest`], which the driver
//! reads from the front before each input: no message per request).

use std::time::Duration;

use tokio::time::Instant;

use super::restart::{Decision, Restarts, STABLE_AFTER};
use super::{Quiet, Settings};
use crate::lifecycle::{Snapshot, State};
use crate::supervisor::signals::{self, Action};
use crate::supervisor::ExitStatus;

/// How long processes get to disappear after their SIGKILL before we give
/// up on them (stuck in the kernel) and exit anyway.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Time between SIGKILL sweeps of the process tree while something is left
/// (a process may fork between a scan and its kill).
pub const SWEEP: Duration = Duration::from_millis(20);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A caught signal (SIGCHLD is the driver's: it reaps and reports the
    /// results as the inputs below).
    Signal(i32),
    /// The child exited.
    ChildExited(ExitStatus),
    /// Nothing is left below us: every descendant has been reaped.
    AllReaped,
    /// The child was started (again), with this pid.
    Spawned(i32),
    /// Starting the child again failed; exit with this code.
    SpawnFailed(u8),
    /// The readiness probe's verdict.
    Verdict(bool),
    /// The front has stopped and closed every connection.
    FrontDrained,
    /// The last request the front let through arrived at this moment.
    LastRequest(Instant),
    /// The [`Machine::deadline`] has passed.
    Timer,
}

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Send this stop signal to the child alone.
    StopChild(i32),
    /// Pass this signal on to the child (or its group).
    Forward(i32),
    /// Stop ourselves (after a forwarded TSTP).
    SuspendSelf,
    /// SIGTERM to what is left of the child's group and every descendant.
    TermLeftovers,
    /// SIGKILL to the child's group and every descendant, and reap.
    KillAll,
    /// Start the child again.
    Spawn,
    /// Stop waiting for what survived the SIGKILL (stuck in the kernel).
    Abandon,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Starting,
    Ready { since: Instant },
    Unhealthy,
}

/// What follows once the tree below us is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Exit; first let the front finish until `front_until`, if given.
    Exit { front_until: Option<Instant> },
    /// Start the child again at `at`.
    Restart { at: Instant },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The child runs (or, without a child, the app serves).
    Running(Health),
    /// SIGTERM came: traffic is still served; the stop signal at `until`.
    Draining { until: Instant },
    /// The child got its stop signal; SIGKILL at `kill_at`.
    Stopping { kill_at: Instant },
    /// The child is gone; what it left got SIGTERM and gets SIGKILL at
    /// `kill_at`.
    Ending { kill_at: Instant, then: Then },
    /// Everything left got SIGKILL; swept again at `next_sweep` until it is
    /// reaped, given up on at `give_up`.
    Killing {
        next_sweep: Instant,
        give_up: Instant,
        then: Then,
    },
    /// The child is down; it starts again at `until`.
    Backoff { until: Instant },
    /// Everything is reaped; the front sends its last answers until `until`.
    Finishing { until: Instant },
    /// Exit now.
    Done,
}

/// The timeline.
#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    phase: Phase,
    /// Whether there is a child at all (mnist mode has none).
    has_child: bool,
    child_pid: Option<i32>,
    last_exit: Option<ExitStatus>,
    /// Set when restarting failed: the code to exit with.
    exit_code: Option<u8>,
    /// When the stop began (SIGTERM or SIGINT): what `elapsed_ms` counts from.
    stop_began: Option<Instant>,
    ever_ready: bool,
    /// Without a front, this is true from the start.
    front_drained: bool,
    restarts: Restarts,
    /// When the last request arrived, as far as the driver has told.
    last_request: Option<Instant>,
}

impl Machine {
    /// A machine for a child already started as `child` (`None`: no child),
    /// with a front to wait for if `front`.
    pub fn new(settings: Settings, child: Option<i32>, front: bool) -> Machine {
        Machine {
            restarts: Restarts::new(settings.restart),
            settings,
            phase: Phase::Running(Health::Starting),
            has_child: child.is_some(),
            child_pid: child,
            last_exit: None,
            exit_code: None,
            stop_began: None,
            ever_ready: false,
            front_drained: !front,
            last_request: None,
        }
    }

    /// When the machine wants a [`Input::Timer`], if ever.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running(_) | Phase::Done => None,
            Phase::Draining { until } => Some(self.quiet_end().map_or(until, |q| q.min(until))),
            Phase::Stopping { kill_at } | Phase::Ending { kill_at, .. } => Some(kill_at),
            Phase::Killing {
                next_sweep,
                give_up,
                ..
            } => Some(next_sweep.min(give_up)),
            Phase::Backoff { until } | Phase::Finishing { until } => Some(until),
        }
    }

    /// Whether the process should exit now.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The exit code: the child's status (128+N for signal N; SIGKILL if it
    /// could not even be collected), 0 without a child.
    pub fn exit_code(&self) -> u8 {
        if let Some(code) = self.exit_code {
            return code;
        }
        match (self.has_child, self.last_exit) {
            (false, _) => 0,
            (true, status) => status
                .unwrap_or(ExitStatus::Signal(libc::SIGKILL))
                .exit_code(),
        }
    }

    /// Whether the drain may end once quiet (`--drain-quiet-period`): the
    /// driver then tells it when the last request arrived.
    pub fn quiet_drain(&self) -> bool {
        self.settings.quiet.is_some()
    }

    /// The pid of the running child, if one runs.
    pub fn child_pid(&self) -> Option<i32> {
        self.child_pid
    }

    /// What everybody else reads: the lifecycle state and the child's.
    pub fn snapshot(&self) -> Snapshot {
        let state = match self.phase {
            Phase::Running(Health::Starting) => State::Starting,
            Phase::Running(Health::Ready { .. }) => State::Ready,
            Phase::Running(Health::Unhealthy) => State::Unhealthy,
            Phase::Draining { .. } => State::Draining,
            Phase::Stopping { .. } => State::Stopping,
            Phase::Backoff { .. }
            | Phase::Ending {
                then: Then::Restart { .. },
                ..
            }
            | Phase::Killing {
                then: Then::Restart { .. },
                ..
            } => State::Restarting,
            Phase::Ending { .. }
            | Phase::Killing { .. }
            | Phase::Finishing { .. }
            | Phase::Done => State::Exited,
        };
        Snapshot {
            state,
            child_pid: self.child_pid,
            restarts: self.restarts.total(),
            last_exit: self.last_exit,
        }
    }

    /// Milliseconds since the stop began (0 before), for the log.
    fn elapsed_ms(&self, now: Instant) -> u64 {
        self.stop_began
            .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64)
    }

    /// Takes one input at `now` and returns what to do.
    pub fn on(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Signal(sig) => self.on_signal(now, sig, &mut fx),
            Input::ChildExited(status) => self.on_child_exit(now, status, &mut fx),
            Input::AllReaped => {
                if let Phase::Ending { then, .. } | Phase::Killing { then, .. } = self.phase {
                    self.after_leftovers(now, then, &mut fx);
                }
            }
            Input::Spawned(pid) => {
                self.child_pid = Some(pid);
                if let Phase::Backoff { .. } = self.phase {
                    self.phase = Phase::Running(Health::Starting);
                }
            }
            Input::SpawnFailed(code) => {
                self.exit_code = Some(code);
                self.phase = Phase::Done;
            }
            Input::Verdict(ready) => self.on_verdict(now, ready),
            Input::FrontDrained => {
                self.front_drained = true;
                match self.phase {
                    Phase::Finishing { .. } => self.phase = Phase::Done,
                    Phase::Stopping { .. } if !self.has_child => self.phase = Phase::Done,
                    _ => {}
                }
            }
            Input::LastRequest(at) => {
                self.last_request = Some(self.last_request.map_or(at, |l| l.max(at)));
            }
            Input::Timer => self.on_timer(now, &mut fx),
        }
        fx
    }

    /// With `--drain-quiet-period`, during the drain: the first moment at
    /// least `min` after the SIGTERM and `period` after the last request.
    fn quiet_end(&self) -> Option<Instant> {
        let quiet = self.settings.quiet?;
        let began = self.stop_began?;
        let after_min = began + quiet.min;
        Some(match self.last_request {
            Some(last) => after_min.max(last + quiet.period),
            None => after_min,
        })
    }

    fn on_signal(&mut self, now: Instant, sig: i32, fx: &mut Vec<Effect>) {
        let alive = self.child_pid.is_some();
        match signals::decide(sig, self.stop_began.is_some()) {
            Some(Action::Drain) => self.drain(now, fx),
            Some(Action::FastStop(sig)) => {
                let sig = if sig == libc::SIGTERM {
                    self.settings.stop_signal
                } else {
                    sig
                };
                if let Phase::Running(_) | Phase::Draining { .. } = self.phase {
                    tracing::info!(
                        signal = %signals::name(sig),
                        elapsed_ms = self.elapsed_ms(now),
                        "fast stop: skipping the rest of the drain delay"
                    );
                }
                self.stop(now, sig, fx);
            }
            Some(Action::Forward(sig)) if alive => fx.push(Effect::Forward(sig)),
            Some(Action::ForwardThenSuspend(sig)) if alive => {
                fx.push(Effect::Forward(sig));
                fx.push(Effect::SuspendSelf);
            }
            _ => {}
        }
    }

    /// The first SIGTERM.
    fn drain(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.stop_began.get_or_insert(now);
        match self.phase {
            Phase::Running(_) if self.ever_ready => {
                tracing::info!(
                    signal = "SIGTERM",
                    drain_delay_ms = self.settings.drain_delay.as_millis() as u64,
                    drain_quiet_period_ms =
                        self.settings.quiet.map(|q| q.period.as_millis() as u64),
                    drain_min_ms = self.settings.quiet.map(|q| q.min.as_millis() as u64),
                    "draining: /health now fails, traffic still served"
                );
                self.phase = Phase::Draining {
                    until: now + self.settings.drain_delay,
                };
            }
            Phase::Running(_) => {
                tracing::info!(
                    signal = "SIGTERM",
                    "never ready, so no traffic to drain: skipping the drain delay"
                );
                self.stop(now, self.settings.stop_signal, fx);
            }
            _ => self.stop(now, self.settings.stop_signal, fx),
        }
    }

    /// Stop now: the child gets `sig` (again, if it already got one).
    fn stop(&mut self, now: Instant, sig: i32, fx: &mut Vec<Effect>) {
        self.stop_began.get_or_insert(now);
        match self.phase {
            Phase::Running(_) | Phase::Draining { .. } => {
                self.stop_child(now, sig, fx);
                self.phase = Phase::Stopping {
                    kill_at: now + self.settings.stop_timeout,
                };
            }
            Phase::Stopping { .. } => self.stop_child(now, sig, fx),
            // Down between two runs: nothing to drain into.
            Phase::Ending {
                kill_at,
                then: Then::Restart { .. },
            } => {
                self.phase = Phase::Ending {
                    kill_at,
                    then: Then::Exit { front_until: None },
                }
            }
            Phase::Killing {
                next_sweep,
                give_up,
                then: Then::Restart { .. },
            } => {
                self.phase = Phase::Killing {
                    next_sweep,
                    give_up,
                    then: Then::Exit { front_until: None },
                }
            }
            Phase::Backoff { .. } => {
                tracing::info!("stop during the restart backoff: exiting at once");
                self.phase = Phase::Done;
            }
            Phase::Ending { .. }
            | Phase::Killing { .. }
            | Phase::Finishing { .. }
            | Phase::Done => {}
        }
    }

    fn stop_child(&mut self, now: Instant, sig: i32, fx: &mut Vec<Effect>) {
        if let Some(pid) = self.child_pid {
            tracing::info!(
                child.pid = pid,
                signal = %signals::name(sig),
                elapsed_ms = self.elapsed_ms(now),
                "stop signal to child"
            );
            fx.push(Effect::StopChild(sig));
        }
    }

    fn on_child_exit(&mut self, now: Instant, status: ExitStatus, fx: &mut Vec<Effect>) {
        let pid = self.child_pid.take();
        self.last_exit = Some(status);
        tracing::info!(
            child.pid = pid,
            status = %status,
            elapsed_ms = self.elapsed_ms(now),
            "child exited"
        );
        let grace = now + self.settings.leftover_grace;
        match self.phase {
            Phase::Running(health) => {
                if let Health::Ready { since } = health {
                    self.note_stability(now, since);
                }
                let then = match self.restarts.decide(now, status) {
                    Decision::Exit => Then::Exit { front_until: None },
                    Decision::Restart(delay) => {
                        tracing::warn!(
                            status = %status,
                            delay_ms = delay.as_millis() as u64,
                            restarts = self.restarts.total(),
                            "child exited: restarting it after the delay"
                        );
                        Then::Restart { at: now + delay }
                    }
                    Decision::GiveUp { restarts, window } => {
                        tracing::error!(
                            status = %status,
                            restarts,
                            window_s = window.as_secs(),
                            "child exited again after --max-restarts restarts within --restart-window: giving up"
                        );
                        Then::Exit { front_until: None }
                    }
                };
                self.end(now, grace, then, fx);
            }
            // No restart once a stop has begun.
            Phase::Draining { until } => {
                let deadline = until + self.settings.stop_timeout;
                let then = Then::Exit { front_until: None };
                self.end(now, grace.min(deadline), then, fx);
            }
            Phase::Stopping { kill_at } => {
                let then = Then::Exit {
                    front_until: Some(kill_at),
                };
                self.end(now, grace.min(kill_at), then, fx);
            }
            _ => {}
        }
    }

    /// The child is gone: what it left gets SIGTERM, then SIGKILL at
    /// `kill_at` (at once without a grace).
    fn end(&mut self, now: Instant, kill_at: Instant, then: Then, fx: &mut Vec<Effect>) {
        if kill_at <= now {
            self.kill(now, then, fx);
        } else {
            fx.push(Effect::TermLeftovers);
            self.phase = Phase::Ending { kill_at, then };
        }
    }

    fn kill(&mut self, now: Instant, then: Then, fx: &mut Vec<Effect>) {
        fx.push(Effect::KillAll);
        self.phase = Phase::Killing {
            next_sweep: now + SWEEP,
            give_up: now + KILL_GRACE,
            then,
        };
    }

    /// Everything below us is gone (or given up on).
    fn after_leftovers(&mut self, now: Instant, then: Then, fx: &mut Vec<Effect>) {
        self.phase = match then {
            Then::Exit {
                front_until: Some(until),
            } if !self.front_drained && now < until => Phase::Finishing { until },
            Then::Exit { .. } => Phase::Done,
            Then::Restart { at } if now < at => Phase::Backoff { until: at },
            Then::Restart { .. } => {
                fx.push(Effect::Spawn);
                Phase::Backoff { until: now }
            }
        };
    }

    fn on_verdict(&mut self, now: Instant, ready: bool) {
        let Phase::Running(health) = self.phase else {
            return;
        };
        let next = match (health, ready) {
            (Health::Starting | Health::Unhealthy, true) => {
                self.ever_ready = true;
                Health::Ready { since: now }
            }
            (Health::Ready { since }, false) => {
                self.note_stability(now, since);
                Health::Unhealthy
            }
            (same, _) => same,
        };
        self.phase = Phase::Running(next);
    }

    /// Why the drain delay ends before its full length.
    fn log_quiet_end(&self, now: Instant, quiet: Quiet) {
        let ms = |d: Duration| d.as_millis() as u64;
        let since_last = self
            .last_request
            .map(|l| ms(now.saturating_duration_since(l)));
        tracing::info!(
            elapsed_ms = self.elapsed_ms(now),
            drain_delay_ms = ms(self.settings.drain_delay),
            since_last_request_ms = since_last,
            drain_quiet_period_ms = ms(quiet.period),
            drain_min_ms = ms(quiet.min),
            "drain delay ended early: no request for the quiet period (--drain-quiet-period) and --drain-min has passed"
        );
    }

    /// A child ready since `since` that stops being ready at `now`.
    fn note_stability(&mut self, now: Instant, since: Instant) {
        if now.saturating_duration_since(since) >= STABLE_AFTER {
            self.restarts.stable();
        }
    }

    fn on_timer(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        match self.phase {
            Phase::Draining { until } if now >= until => {
                self.stop(now, self.settings.stop_signal, fx);
            }
            Phase::Draining { .. } if self.quiet_end().is_some_and(|q| now >= q) => {
                if let Some(quiet) = self.settings.quiet {
                    self.log_quiet_end(now, quiet);
                }
                self.stop(now, self.settings.stop_signal, fx);
            }
            Phase::Stopping { kill_at } if now >= kill_at => {
                if self.has_child {
                    tracing::warn!(
                        child.pid = self.child_pid,
                        elapsed_ms = self.elapsed_ms(now),
                        "stop timeout: SIGKILL to the child's process group and every descendant"
                    );
                    self.kill(now, Then::Exit { front_until: None }, fx);
                } else {
                    tracing::warn!(
                        elapsed_ms = self.elapsed_ms(now),
                        "stop timeout: requests still open are answered 503"
                    );
                    self.phase = Phase::Done;
                }
            }
            Phase::Ending { kill_at, then } if now >= kill_at => self.kill(now, then, fx),
            Phase::Killing { give_up, then, .. } if now >= give_up => {
                fx.push(Effect::Abandon);
                self.after_leftovers(now, then, fx);
            }
            Phase::Killing {
                next_sweep,
                give_up,
                then,
            } if now >= next_sweep => {
                fx.push(Effect::KillAll);
                self.phase = Phase::Killing {
                    next_sweep: now + SWEEP,
                    give_up,
                    then,
                };
            }
            Phase::Backoff { until } if now >= until => fx.push(Effect::Spawn),
            Phase::Finishing { until } if now >= until => self.phase = Phase::Done,
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "machine_quiet_tests.rs"]
mod quiet_tests;
