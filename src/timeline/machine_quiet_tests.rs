//! Unit tests of the adaptive drain (`--drain-quiet-period`,
//! `--drain-min`) on made-up times: when the delay ends early, when it
//! does not, and that the rest of the timeline is R8's.

use libc::SIGTERM;

use super::tests::{ms, r8, s, Run};
use super::*;
use crate::timeline::Quiet;

/// R8's defaults with a quiet period of 3 s and a minimum of 5 s.
fn quiet(period: u64, min: u64) -> Settings {
    Settings {
        quiet: Some(Quiet {
            period: s(period),
            min: s(min),
        }),
        ..r8()
    }
}

impl Run {
    /// The driver reports that the last request arrived at `at`.
    fn request(&mut self, at: u64) {
        let when = self.t0 + ms(at);
        assert_eq!(self.on(at, Input::LastRequest(when)), []);
    }
}

#[test]
fn no_request_since_long_before_the_sigterm_ends_at_drain_min() {
    let mut r = Run::ready(quiet(3, 5));
    r.request(2_000);
    assert_eq!(r.on(10_000, Input::Signal(SIGTERM)), []);
    assert_eq!(r.state(), State::Draining);
    assert_eq!(
        r.fire(),
        (15_000, vec![Effect::StopChild(SIGTERM)]),
        "5 s after the SIGTERM, not 60"
    );
    assert_eq!(r.state(), State::Stopping);
    assert_eq!(r.deadline(), Some(40_000), "the stop timeout as in R8");
}

#[test]
fn with_no_request_at_all_the_minimum_decides() {
    let mut r = Run::ready(quiet(3, 5));
    r.on(1_000, Input::Signal(SIGTERM));
    assert_eq!(r.fire(), (6_000, vec![Effect::StopChild(SIGTERM)]));
}

#[test]
fn the_quiet_period_counts_from_the_last_request() {
    let mut r = Run::ready(quiet(3, 5));
    r.on(0, Input::Signal(SIGTERM));
    r.request(1_000);
    r.request(4_000);
    assert_eq!(r.deadline(), Some(7_000), "3 s after the last request");
    // The driver reads the front before the timer: one more came.
    r.request(6_500);
    assert_eq!(r.deadline(), Some(9_500));
    assert_eq!(r.on(7_000, Input::Timer), [], "not quiet yet");
    assert_eq!(r.state(), State::Draining);
    assert_eq!(r.fire(), (9_500, vec![Effect::StopChild(SIGTERM)]));
}

#[test]
fn a_late_report_of_an_older_request_moves_nothing_back() {
    let mut r = Run::ready(quiet(3, 5));
    r.on(0, Input::Signal(SIGTERM));
    r.request(4_000);
    r.request(1_000);
    assert_eq!(r.deadline(), Some(7_000));
}

#[test]
fn a_client_that_keeps_sending_gets_the_full_delay() {
    let mut r = Run::ready(quiet(3, 5));
    r.on(1_000, Input::Signal(SIGTERM));
    // A request every second; before each timer the driver reports it.
    loop {
        let due = r.deadline().expect("a deadline");
        r.request(due - 500);
        if r.deadline() == Some(due) {
            break;
        }
        assert_eq!(r.on(due, Input::Timer), []);
    }
    assert_eq!(r.deadline(), Some(61_000));
    assert_eq!(r.fire(), (61_000, vec![Effect::StopChild(SIGTERM)]));
}

#[test]
fn drain_min_past_the_delay_leaves_the_full_delay() {
    let mut r = Run::ready(quiet(3, 90));
    r.on(0, Input::Signal(SIGTERM));
    assert_eq!(r.fire(), (60_000, vec![Effect::StopChild(SIGTERM)]));
}

#[test]
fn without_the_flag_requests_change_nothing() {
    let mut r = Run::ready(r8());
    r.request(500);
    r.on(1_000, Input::Signal(SIGTERM));
    r.request(1_500);
    assert_eq!(r.fire(), (61_000, vec![Effect::StopChild(SIGTERM)]));
}

#[test]
fn fast_stops_and_early_exits_are_as_before() {
    // A second SIGTERM still skips what is left.
    let mut r = Run::ready(quiet(3, 5));
    r.on(0, Input::Signal(SIGTERM));
    assert_eq!(
        r.on(1_000, Input::Signal(SIGTERM)),
        [Effect::StopChild(SIGTERM)]
    );
    // Never ready: no drain at all, quiet or not.
    let mut r = Run::new(quiet(3, 5), true, true);
    assert_eq!(
        r.on(0, Input::Signal(SIGTERM)),
        [Effect::StopChild(SIGTERM)]
    );
    // Requests reported after the drain change nothing.
    let mut r = Run::ready(quiet(3, 5));
    r.on(0, Input::Signal(SIGTERM));
    r.fire();
    r.request(5_500);
    assert_eq!(
        r.deadline(),
        Some(30_000),
        "SIGKILL 25 s after the stop signal"
    );
}
