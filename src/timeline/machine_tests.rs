//! Unit tests of the machine on made-up times: every rule of the timeline,
//! with no process and no clock.

use std::time::Duration;

use libc::{SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM};
use tokio::time::Instant;

use super::*;
use crate::timeline::restart::{Policy, When};

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// R8's defaults: 60 s of drain, 25 s of stop timeout, no leftover grace,
/// no restarts.
pub(super) fn r8() -> Settings {
    Settings {
        drain_delay: s(60),
        stop_timeout: s(25),
        stop_signal: SIGTERM,
        leftover_grace: Duration::ZERO,
        restart: Policy::NEVER,
        quiet: None,
    }
}

fn restarting(when: When) -> Settings {
    Settings {
        leftover_grace: s(2),
        restart: Policy {
            when,
            backoff_min: s(1),
            backoff_max: s(30),
            max_restarts: 5,
            window: s(600),
        },
        ..r8()
    }
}

/// A machine on a clock of its own: `at` is milliseconds since it started.
pub(super) struct Run {
    pub(super) m: Machine,
    pub(super) t0: Instant,
}

impl Run {
    pub(super) fn new(settings: Settings, child: bool, front: bool) -> Run {
        Run {
            m: Machine::new(settings, child.then_some(100), front),
            t0: Instant::now(),
        }
    }

    /// With a child and a front, ready at 0.
    pub(super) fn ready(settings: Settings) -> Run {
        let mut r = Run::new(settings, true, true);
        assert_eq!(r.on(0, Input::Verdict(true)), []);
        assert_eq!(r.state(), State::Ready);
        r
    }

    pub(super) fn on(&mut self, at: u64, input: Input) -> Vec<Effect> {
        self.m.on(self.t0 + ms(at), input)
    }

    pub(super) fn state(&self) -> State {
        self.m.snapshot().state
    }

    /// Milliseconds from the start to the deadline.
    pub(super) fn deadline(&self) -> Option<u64> {
        self.m
            .deadline()
            .map(|d| d.duration_since(self.t0).as_millis() as u64)
    }

    /// Fires the timer at its deadline; returns when and the effects.
    pub(super) fn fire(&mut self) -> (u64, Vec<Effect>) {
        let at = self.deadline().expect("a deadline");
        (at, self.on(at, Input::Timer))
    }

    /// The child exits at `at`; with nothing left below us, the driver
    /// reports that next. Returns the effects of both.
    fn child_exits_alone(&mut self, at: u64, status: ExitStatus) -> Vec<Effect> {
        let mut fx = self.on(at, Input::ChildExited(status));
        fx.extend(self.on(at, Input::AllReaped));
        fx
    }
}

#[test]
fn r8_drain_then_stop_signal_then_exit_once_the_front_has_drained() {
    let mut r = Run::ready(r8());
    assert_eq!(r.deadline(), None, "nothing is due while running");
    assert_eq!(r.on(1_000, Input::Signal(SIGTERM)), []);
    assert_eq!(r.state(), State::Draining);
    // The child hears nothing for the 60 s of the drain.
    assert_eq!(r.fire(), (61_000, vec![Effect::StopChild(SIGTERM)]));
    assert_eq!(r.state(), State::Stopping);
    assert_eq!(
        r.deadline(),
        Some(86_000),
        "SIGKILL 25 s after the stop signal"
    );
    // The child stops in 2 s; nothing is left, but the front still sends
    // its last answers.
    assert_eq!(
        r.child_exits_alone(63_000, ExitStatus::Signal(SIGTERM)),
        [Effect::KillAll]
    );
    assert_eq!(r.state(), State::Exited);
    assert_eq!(
        r.deadline(),
        Some(86_000),
        "the front gets until the stop deadline"
    );
    assert!(!r.m.is_done());
    assert_eq!(r.on(63_100, Input::FrontDrained), []);
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 143);
}

#[test]
fn the_front_draining_first_ends_with_the_child() {
    let mut r = Run::ready(r8());
    r.on(0, Input::Signal(SIGTERM));
    r.fire();
    assert_eq!(r.on(60_500, Input::FrontDrained), []);
    assert!(!r.m.is_done(), "the child still runs");
    r.child_exits_alone(61_000, ExitStatus::Code(0));
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 0);
}

#[test]
fn the_stop_timeout_kills_everything_within_90_s() {
    let mut r = Run::ready(r8());
    r.on(0, Input::Signal(SIGTERM));
    assert_eq!(r.fire(), (60_000, vec![Effect::StopChild(SIGTERM)]));
    // The child ignores its SIGTERM.
    assert_eq!(r.fire(), (85_000, vec![Effect::KillAll]));
    assert_eq!(r.state(), State::Exited);
    // Swept again every 20 ms until reaped.
    assert_eq!(r.fire(), (85_020, vec![Effect::KillAll]));
    assert_eq!(
        r.on(85_030, Input::ChildExited(ExitStatus::Signal(SIGKILL))),
        []
    );
    assert_eq!(r.on(85_030, Input::AllReaped), []);
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 137);
}

#[test]
fn processes_stuck_after_sigkill_are_given_up_on() {
    let mut r = Run::ready(r8());
    r.on(0, Input::Signal(SIGTERM));
    r.fire();
    r.fire();
    let mut last = 0;
    while !r.m.is_done() {
        let (at, _) = r.fire();
        last = at;
    }
    assert_eq!(
        last, 87_000,
        "given up 2 s after the SIGKILL: still inside 90 s"
    );
    assert_eq!(
        r.m.exit_code(),
        137,
        "a child never collected counts as killed"
    );
}

#[test]
fn sigterm_before_ever_ready_skips_the_drain() {
    let mut r = Run::new(r8(), true, true);
    assert_eq!(r.state(), State::Starting);
    assert_eq!(
        r.on(500, Input::Signal(SIGTERM)),
        [Effect::StopChild(SIGTERM)]
    );
    assert_eq!(r.state(), State::Stopping);
    assert_eq!(r.deadline(), Some(25_500));
}

#[test]
fn sigint_is_a_fast_stop_in_every_phase_with_the_child() {
    // Running: the child gets INT at once.
    let mut r = Run::ready(r8());
    assert_eq!(r.on(10, Input::Signal(SIGINT)), [Effect::StopChild(SIGINT)]);
    assert_eq!(r.state(), State::Stopping);
    assert_eq!(r.deadline(), Some(25_010), "the stop timeout still applies");
    // Stopping: once more.
    assert_eq!(r.on(20, Input::Signal(SIGINT)), [Effect::StopChild(SIGINT)]);
    assert_eq!(r.deadline(), Some(25_010), "the deadline does not move");

    // Draining: the rest of the delay is skipped.
    let mut r = Run::ready(r8());
    r.on(0, Input::Signal(SIGTERM));
    assert_eq!(
        r.on(5_000, Input::Signal(SIGINT)),
        [Effect::StopChild(SIGINT)]
    );
    assert_eq!(r.deadline(), Some(30_000));
}

#[test]
fn a_second_sigterm_skips_the_rest_of_the_drain() {
    let mut r = Run::ready(r8());
    r.on(0, Input::Signal(SIGTERM));
    assert_eq!(
        r.on(3_000, Input::Signal(SIGTERM)),
        [Effect::StopChild(SIGTERM)]
    );
    assert_eq!(r.state(), State::Stopping);
    // A third one repeats the stop signal.
    assert_eq!(
        r.on(4_000, Input::Signal(SIGTERM)),
        [Effect::StopChild(SIGTERM)]
    );
}

#[test]
fn the_stop_signal_is_configurable_and_int_stays_int() {
    let quit = Settings {
        stop_signal: SIGQUIT,
        ..r8()
    };
    let mut r = Run::ready(quit);
    r.on(0, Input::Signal(SIGTERM));
    assert_eq!(r.fire(), (60_000, vec![Effect::StopChild(SIGQUIT)]));
    let mut r = Run::ready(quit);
    r.on(0, Input::Signal(SIGTERM));
    assert_eq!(
        r.on(1, Input::Signal(SIGTERM)),
        [Effect::StopChild(SIGQUIT)]
    );
    let mut r = Run::ready(quit);
    assert_eq!(r.on(1, Input::Signal(SIGINT)), [Effect::StopChild(SIGINT)]);
}

#[test]
fn the_child_exiting_on_its_own_ends_every_phase() {
    // Running (never restarted by default): exit with its status.
    let mut r = Run::ready(r8());
    assert_eq!(
        r.child_exits_alone(5_000, ExitStatus::Code(3)),
        [Effect::KillAll]
    );
    assert!(r.m.is_done(), "no stop began: the front is not waited for");
    assert_eq!(r.m.exit_code(), 3);
    // Starting.
    let mut r = Run::new(r8(), true, true);
    r.child_exits_alone(5, ExitStatus::Code(4));
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 4);
    // Draining: no stop signal, no waiting for the rest of the delay.
    let mut r = Run::ready(r8());
    r.on(0, Input::Signal(SIGTERM));
    assert_eq!(
        r.child_exits_alone(10_000, ExitStatus::Code(5)),
        [Effect::KillAll]
    );
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 5);
}

#[test]
fn the_front_gets_no_longer_than_the_stop_deadline() {
    let mut r = Run::ready(r8());
    r.on(0, Input::Signal(SIGTERM));
    r.fire();
    r.child_exits_alone(61_000, ExitStatus::Code(0));
    assert_eq!(r.state(), State::Exited);
    assert_eq!(r.fire(), (85_000, vec![]));
    assert!(r.m.is_done());
}

#[test]
fn leftovers_get_sigterm_then_sigkill_after_the_grace() {
    let grace = Settings {
        leftover_grace: s(2),
        ..r8()
    };
    let mut r = Run::ready(grace);
    assert_eq!(
        r.on(1_000, Input::ChildExited(ExitStatus::Code(0))),
        [Effect::TermLeftovers]
    );
    assert_eq!(r.state(), State::Exited);
    assert_eq!(r.fire(), (3_000, vec![Effect::KillAll]));
    r.on(3_010, Input::AllReaped);
    assert!(r.m.is_done());

    // Leftovers that go on their SIGTERM end it early.
    let mut r = Run::ready(grace);
    r.on(1_000, Input::ChildExited(ExitStatus::Code(0)));
    assert_eq!(r.on(1_200, Input::AllReaped), []);
    assert!(r.m.is_done());
}

#[test]
fn the_leftover_grace_never_passes_the_stop_deadline() {
    let grace = Settings {
        leftover_grace: s(10),
        ..r8()
    };
    let mut r = Run::ready(grace);
    r.on(0, Input::Signal(SIGTERM));
    r.fire();
    // The child exits 1 s before the stop deadline: its leftovers get that
    // 1 s, not 10.
    assert_eq!(
        r.on(84_000, Input::ChildExited(ExitStatus::Code(0))),
        [Effect::TermLeftovers]
    );
    assert_eq!(r.fire(), (85_000, vec![Effect::KillAll]));
    // Exiting during the drain: the deadline is the drain's end plus the
    // stop timeout.
    let mut r = Run::ready(grace);
    r.on(0, Input::Signal(SIGTERM));
    r.on(84_000, Input::ChildExited(ExitStatus::Code(0)));
    assert_eq!(r.deadline(), Some(85_000));
}

#[test]
fn restart_on_failure_backs_off_and_probes_from_scratch() {
    let mut r = Run::ready(restarting(When::OnFailure));
    assert_eq!(
        r.on(1_000, Input::ChildExited(ExitStatus::Code(1))),
        [Effect::TermLeftovers]
    );
    assert_eq!(r.state(), State::Restarting);
    assert_eq!(r.m.snapshot().child_pid, None);
    assert_eq!(r.m.snapshot().last_exit, Some(ExitStatus::Code(1)));
    assert_eq!(r.on(1_100, Input::AllReaped), []);
    assert_eq!(r.state(), State::Restarting);
    assert_eq!(r.fire(), (2_000, vec![Effect::Spawn]), "1 s of backoff");
    r.on(2_000, Input::Spawned(200));
    assert_eq!(
        r.state(),
        State::Starting,
        "readiness is probed from scratch"
    );
    assert_eq!(r.m.snapshot().child_pid, Some(200));
    assert_eq!(r.m.snapshot().restarts, 1);
    r.on(2_500, Input::Verdict(true));
    assert_eq!(r.state(), State::Ready);
    // The next failure waits twice as long.
    r.child_exits_alone(3_000, ExitStatus::Signal(9));
    assert_eq!(r.fire(), (5_000, vec![Effect::Spawn]));
    r.on(5_000, Input::Spawned(300));
    // A clean exit is not a failure: exit 0.
    r.child_exits_alone(6_000, ExitStatus::Code(0));
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 0);
}

#[test]
fn the_backoff_resets_once_the_child_was_ready_for_60_s() {
    let mut r = Run::ready(restarting(When::Always));
    let mut t = 0;
    let mut delays = Vec::new();
    for ready_for in [1_000, 1_000, 1_000, 60_000, 1_000] {
        r.on(t, Input::Verdict(true));
        t += ready_for;
        r.child_exits_alone(t, ExitStatus::Code(1));
        let (at, fx) = r.fire();
        assert_eq!(fx, [Effect::Spawn]);
        delays.push(at - t);
        t = at;
        r.on(t, Input::Spawned(1));
    }
    assert_eq!(delays, [1_000, 2_000, 4_000, 1_000, 2_000]);
}

#[test]
fn sigterm_during_a_backoff_stops_at_once() {
    let mut r = Run::ready(restarting(When::Always));
    r.child_exits_alone(1_000, ExitStatus::Code(2));
    assert_eq!(r.state(), State::Restarting);
    assert_eq!(r.on(1_500, Input::Signal(SIGTERM)), []);
    assert!(r.m.is_done(), "nothing to drain into");
    assert_eq!(r.m.exit_code(), 2);
    // While the leftovers are still being ended: no restart after them.
    let mut r = Run::ready(restarting(When::Always));
    r.on(1_000, Input::ChildExited(ExitStatus::Code(2)));
    r.on(1_100, Input::Signal(SIGINT));
    assert_eq!(r.state(), State::Exited);
    assert_eq!(r.on(1_200, Input::AllReaped), []);
    assert!(r.m.is_done());
}

#[test]
fn no_restart_once_a_stop_has_begun() {
    let mut r = Run::ready(restarting(When::Always));
    r.on(0, Input::Signal(SIGTERM));
    r.on(1_000, Input::ChildExited(ExitStatus::Code(1)));
    assert_eq!(r.state(), State::Exited);
    r.on(1_000, Input::AllReaped);
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 1);
}

#[test]
fn max_restarts_then_exit_with_the_childs_status() {
    let mut settings = restarting(When::OnFailure);
    settings.restart.max_restarts = 2;
    let mut r = Run::ready(settings);
    let mut t = 0;
    for _ in 0..2 {
        r.child_exits_alone(t, ExitStatus::Code(9));
        let (at, fx) = r.fire();
        assert_eq!(fx, [Effect::Spawn]);
        t = at;
        r.on(t, Input::Spawned(1));
    }
    r.child_exits_alone(t + 10, ExitStatus::Code(9));
    assert!(
        r.m.is_done(),
        "the third failure within the window is final"
    );
    assert_eq!(r.m.exit_code(), 9);
    assert_eq!(r.m.snapshot().restarts, 2);
}

#[test]
fn a_failed_restart_exits_with_its_code() {
    let mut r = Run::ready(restarting(When::Always));
    r.child_exits_alone(0, ExitStatus::Code(1));
    r.fire();
    r.on(1_000, Input::SpawnFailed(127));
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 127);
}

#[test]
fn signals_are_forwarded_only_to_a_running_child() {
    let mut r = Run::ready(restarting(When::Always));
    assert_eq!(r.on(0, Input::Signal(SIGHUP)), [Effect::Forward(SIGHUP)]);
    assert_eq!(
        r.on(0, Input::Signal(libc::SIGTSTP)),
        [Effect::Forward(libc::SIGTSTP), Effect::SuspendSelf]
    );
    r.child_exits_alone(1, ExitStatus::Code(1));
    assert_eq!(r.on(2, Input::Signal(SIGHUP)), [], "no child to forward to");
}

#[test]
fn readiness_moves_only_while_running() {
    let mut r = Run::new(r8(), true, true);
    r.on(0, Input::Verdict(false));
    assert_eq!(r.state(), State::Starting);
    r.on(1, Input::Verdict(true));
    assert_eq!(r.state(), State::Ready);
    r.on(2, Input::Verdict(false));
    assert_eq!(r.state(), State::Unhealthy);
    r.on(3, Input::Signal(SIGTERM));
    assert_eq!(
        r.state(),
        State::Draining,
        "unhealthy was ready once: drain"
    );
    r.on(4, Input::Verdict(true));
    assert_eq!(
        r.state(),
        State::Draining,
        "a late probe never undoes a drain"
    );
}

#[test]
fn without_a_child_the_front_decides_the_end() {
    let mut r = Run::new(r8(), false, true);
    r.on(0, Input::Verdict(true));
    r.on(1_000, Input::Signal(SIGTERM));
    assert_eq!(r.fire(), (61_000, vec![]), "no child to signal");
    assert_eq!(r.state(), State::Stopping);
    r.on(61_100, Input::FrontDrained);
    assert!(r.m.is_done());
    assert_eq!(r.m.exit_code(), 0);
    // A front that never drains is cut at the stop timeout.
    let mut r = Run::new(r8(), false, true);
    r.on(0, Input::Signal(SIGINT));
    assert_eq!(r.fire(), (25_000, vec![]));
    assert!(r.m.is_done());
}
