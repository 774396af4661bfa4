//! The driver with fake processes on paused time: whole timelines, with
//! the exact virtual moment of each signal, and no process or wall clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libc::{SIGCHLD, SIGKILL, SIGTERM};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::lifecycle::{self, Lifecycle, State};
use crate::supervisor::ExitStatus;
use crate::timeline::restart::{Policy, When};
use crate::timeline::{Machine, Settings};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How a fake child behaves.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Exits on its own this long after it starts.
    exits: Option<(u64, ExitStatus)>,
    /// Exits this long after its stop signal; `None`: ignores it.
    on_stop: Option<(u64, ExitStatus)>,
    /// Processes it leaves behind when it exits.
    leftovers: usize,
    /// Whether those ignore SIGTERM.
    stubborn: bool,
}

const SERVES: Plan = Plan {
    exits: None,
    on_stop: Some((500, ExitStatus::Signal(SIGTERM))),
    leftovers: 0,
    stubborn: false,
};

/// The fake OS: one child at a time, its leftovers, and a log of every
/// signal sent, in milliseconds of virtual time.
struct World {
    t0: Instant,
    log: Vec<(u64, String)>,
    sigchld: mpsc::UnboundedSender<i32>,
    plans: VecDeque<Plan>,
    child: Option<(i32, Plan)>,
    exited: Option<(i32, ExitStatus)>,
    leftovers: usize,
    stubborn: bool,
    next_pid: i32,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<World>>);

impl Fake {
    fn note(&self, what: String) {
        let mut w = self.0.lock().unwrap();
        let at = w.t0.elapsed().as_millis() as u64;
        w.log.push((at, what));
    }

    /// The child `pid` exits with `status` after `after` ms.
    fn exit_later(&self, pid: i32, after: u64, status: ExitStatus) {
        let world = self.0.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(after)).await;
            let mut w = world.lock().unwrap();
            if let Some((p, plan)) = w.child {
                if p == pid {
                    w.child = None;
                    w.exited = Some((pid, status));
                    w.leftovers += plan.leftovers;
                    w.stubborn = plan.stubborn;
                    let _ = w.sigchld.send(SIGCHLD);
                }
            }
        });
    }

    fn start_next(&self) -> i32 {
        let (pid, plan) = {
            let mut w = self.0.lock().unwrap();
            let plan = w.plans.pop_front().unwrap_or(SERVES);
            let pid = w.next_pid;
            w.next_pid += 1;
            w.child = Some((pid, plan));
            (pid, plan)
        };
        if let Some((after, status)) = plan.exits {
            self.exit_later(pid, after, status);
        }
        pid
    }
}

impl Processes for Fake {
    fn spawn(&mut self) -> Result<i32, u8> {
        self.note("spawn".into());
        Ok(self.start_next())
    }

    fn stop(&mut self, pid: i32, signal: i32) {
        self.note(format!("stop {}", signals::name(signal)));
        let plan = self.0.lock().unwrap().child.map(|(_, p)| p);
        if let Some((after, status)) = plan.and_then(|p| p.on_stop) {
            self.exit_later(pid, after, status);
        }
    }

    fn forward(&mut self, _pid: i32, signal: i32) {
        self.note(format!("forward {}", signals::name(signal)));
    }

    fn suspend_self(&mut self) {
        self.note("suspend".into());
    }

    fn reap(&mut self, child: Option<i32>) -> Reaped {
        let mut w = self.0.lock().unwrap();
        let status = match w.exited {
            Some((pid, status)) if Some(pid) == child || child.is_none() => {
                w.exited = None;
                Some(status)
            }
            _ => None,
        };
        Reaped {
            child: status.filter(|_| child.is_some()),
            none_left: w.child.is_none() && w.exited.is_none() && w.leftovers == 0,
        }
    }

    fn signal_leftovers(&mut self, _group: Option<i32>, signal: i32) -> usize {
        let count = {
            let w = self.0.lock().unwrap();
            w.leftovers + usize::from(w.child.is_some())
        };
        self.note(format!("{} {count}", signals::name(signal)));
        let world = self.0.clone();
        let mut w = self.0.lock().unwrap();
        if signal == SIGKILL {
            if let Some((pid, _)) = w.child.take() {
                w.exited = Some((pid, ExitStatus::Signal(SIGKILL)));
            }
            w.leftovers = 0;
            let _ = w.sigchld.send(SIGCHLD);
        } else if !w.stubborn {
            tokio::spawn(async move {
                tokio::time::sleep(ms(50)).await;
                let mut w = world.lock().unwrap();
                w.leftovers = 0;
                let _ = w.sigchld.send(SIGCHLD);
            });
        }
        count
    }
}

/// A run of the driver: the fake world, a way to send signals, the
/// lifecycle and its recorded states.
struct Sim {
    fake: Fake,
    signals: mpsc::UnboundedSender<i32>,
    lifecycle: Lifecycle,
    states: Arc<Mutex<Vec<(u64, State)>>>,
    t0: Instant,
}

impl Sim {
    /// Starts the driver with a child following `plans` (the first for the
    /// child already started, then one per restart), a probe that reports
    /// ready 100 ms after each start, and a front that drains 100 ms after
    /// the stop.
    fn start(settings: Settings, plans: &[Plan]) -> (Sim, tokio::task::JoinHandle<u8>) {
        let t0 = Instant::now();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fake = Fake(Arc::new(Mutex::new(World {
            t0,
            log: Vec::new(),
            sigchld: tx.clone(),
            plans: plans.iter().copied().collect(),
            child: None,
            exited: None,
            leftovers: 0,
            stubborn: false,
            next_pid: 100,
        })));
        let pid = fake.start_next();
        let (lifecycle, feed) = lifecycle::channel();
        let states = Arc::new(Mutex::new(vec![(0, State::Starting)]));
        let mut watch = lifecycle.subscribe();
        let (recorded, probe) = (states.clone(), lifecycle.clone());
        tokio::spawn(async move {
            while watch.changed().await.is_ok() {
                let state = watch.borrow_and_update().state;
                let mut s = recorded.lock().unwrap();
                if s.last().map(|l| l.1) != Some(state) {
                    s.push((t0.elapsed().as_millis() as u64, state));
                }
                if state == State::Starting {
                    let probe = probe.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(ms(100)).await;
                        probe.report_ready(true);
                    });
                }
            }
        });
        // The first Starting is the initial state: no change to wake on.
        let first = lifecycle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(100)).await;
            first.report_ready(true);
        });
        let mut stop = lifecycle.subscribe();
        let drained = async move {
            let _ = stop.wait_for(|s| s.state >= State::Stopping).await;
            tokio::time::sleep(ms(100)).await;
        };
        let signals = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let machine = Machine::new(settings, Some(pid), true);
        let run = tokio::spawn(run(machine, fake.clone(), signals, feed, drained));
        let sim = Sim {
            fake,
            signals: tx,
            lifecycle,
            states,
            t0,
        };
        (sim, run)
    }

    async fn signal_at(&self, at: u64, signal: i32) {
        tokio::time::sleep_until(self.t0 + ms(at)).await;
        self.signals.send(signal).unwrap();
    }

    fn log(&self) -> Vec<(u64, String)> {
        self.fake.0.lock().unwrap().log.clone()
    }

    fn states(&self) -> Vec<(u64, State)> {
        self.states.lock().unwrap().clone()
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }
}

fn r8() -> Settings {
    Settings {
        drain_delay: Duration::from_secs(60),
        stop_timeout: Duration::from_secs(25),
        stop_signal: SIGTERM,
        leftover_grace: Duration::from_secs(2),
        restart: Policy::NEVER,
        quiet: None,
    }
}

fn log(entries: &[(u64, &str)]) -> Vec<(u64, String)> {
    entries.iter().map(|(t, s)| (*t, s.to_string())).collect()
}

#[tokio::test(start_paused = true)]
async fn r8_in_virtual_time() {
    let (sim, run) = Sim::start(r8(), &[SERVES]);
    sim.signal_at(1_000, SIGTERM).await;
    assert_eq!(run.await.unwrap(), 143);
    assert_eq!(sim.log(), log(&[(61_000, "stop SIGTERM")]));
    assert_eq!(
        sim.states(),
        [
            (0, State::Starting),
            (100, State::Ready),
            (1_000, State::Draining),
            (61_000, State::Stopping),
            (61_500, State::Exited),
        ]
    );
    assert_eq!(
        sim.now(),
        61_500,
        "exits once the child and the front are done"
    );
}

#[tokio::test(start_paused = true)]
async fn a_child_ignoring_its_stop_signal_is_killed_inside_90_s() {
    let stubborn = Plan {
        on_stop: None,
        ..SERVES
    };
    let (sim, run) = Sim::start(r8(), &[stubborn]);
    sim.signal_at(1_000, SIGTERM).await;
    assert_eq!(run.await.unwrap(), 137);
    assert_eq!(
        sim.log(),
        log(&[(61_000, "stop SIGTERM"), (86_000, "SIGKILL 1")])
    );
    assert_eq!(sim.now(), 86_000, "85 s after SIGTERM: inside R8's 90 s");
}

#[tokio::test(start_paused = true)]
async fn fast_stop_during_the_drain() {
    let (sim, run) = Sim::start(r8(), &[SERVES]);
    sim.signal_at(1_000, SIGTERM).await;
    sim.signal_at(5_000, libc::SIGINT).await;
    assert_eq!(run.await.unwrap(), 143);
    assert_eq!(sim.log(), log(&[(5_000, "stop SIGINT")]));
}

#[tokio::test(start_paused = true)]
async fn leftovers_get_sigterm_then_sigkill_after_the_grace() {
    let leaves = Plan {
        exits: Some((500, ExitStatus::Code(0))),
        leftovers: 2,
        stubborn: true,
        ..SERVES
    };
    let (sim, run) = Sim::start(r8(), &[leaves]);
    assert_eq!(run.await.unwrap(), 0);
    assert_eq!(sim.log(), log(&[(500, "SIGTERM 2"), (2_500, "SIGKILL 2")]));
    assert_eq!(sim.now(), 2_500);
    // Leftovers that go on SIGTERM end it at once.
    let polite = Plan {
        stubborn: false,
        ..leaves
    };
    let (sim, run) = Sim::start(r8(), &[polite]);
    assert_eq!(run.await.unwrap(), 0);
    assert_eq!(sim.log(), log(&[(500, "SIGTERM 2")]));
    assert_eq!(sim.now(), 550);
}

#[tokio::test(start_paused = true)]
async fn restarts_back_off_then_serve_and_stop_as_usual() {
    let on_failure = Settings {
        drain_delay: Duration::from_secs(1),
        restart: Policy {
            when: When::OnFailure,
            ..Policy::NEVER
        },
        ..r8()
    };
    let fails = Plan {
        exits: Some((200, ExitStatus::Code(1))),
        ..SERVES
    };
    let (sim, run) = Sim::start(on_failure, &[fails, fails, SERVES]);
    tokio::time::sleep_until(sim.t0 + ms(4_000)).await;
    let now = sim.lifecycle.snapshot();
    assert_eq!(now.state, State::Ready);
    assert_eq!(now.restarts, 2);
    assert_eq!(now.last_exit, Some(ExitStatus::Code(1)));
    sim.signal_at(5_000, SIGTERM).await;
    assert_eq!(run.await.unwrap(), 143);
    // Restarted 1 s after the first failure, 2 s after the second.
    assert_eq!(
        sim.log(),
        log(&[(1_200, "spawn"), (3_400, "spawn"), (6_000, "stop SIGTERM")])
    );
    assert_eq!(
        sim.states(),
        [
            (0, State::Starting),
            (100, State::Ready),
            (200, State::Restarting),
            (1_200, State::Starting),
            (1_300, State::Ready),
            (1_400, State::Restarting),
            (3_400, State::Starting),
            (3_500, State::Ready),
            (5_000, State::Draining),
            (6_000, State::Stopping),
            (6_500, State::Exited),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn sigterm_during_a_backoff_stops_at_once() {
    let always = Settings {
        restart: Policy {
            when: When::Always,
            ..Policy::NEVER
        },
        ..r8()
    };
    let exits = Plan {
        exits: Some((100, ExitStatus::Code(3))),
        ..SERVES
    };
    let (sim, run) = Sim::start(always, &[exits]);
    sim.signal_at(500, SIGTERM).await;
    assert_eq!(run.await.unwrap(), 3);
    assert_eq!(sim.log(), [], "never restarted");
    assert_eq!(sim.now(), 500);
}

/// The quiet drain in virtual time: the front's arrivals go through the
/// lifecycle, and the driver tells the machine before it decides.
#[tokio::test(start_paused = true)]
async fn the_quiet_drain_reads_the_fronts_last_request() {
    let quiet = Settings {
        quiet: Some(crate::timeline::Quiet {
            period: ms(3_000),
            min: ms(5_000),
        }),
        ..r8()
    };
    let (sim, run) = Sim::start(quiet, &[SERVES]);
    for (at, what) in [
        (500, None),
        (1_000, Some(SIGTERM)),
        (1_500, None),
        (4_000, None),
    ] {
        tokio::time::sleep_until(sim.t0 + ms(at)).await;
        match what {
            Some(sig) => sim.signals.send(sig).unwrap(),
            None => sim.lifecycle.request_arrived(),
        }
    }
    assert_eq!(run.await.unwrap(), 143);
    // 3 s after the last request (rounded up to the next millisecond),
    // which is later than 5 s after the SIGTERM.
    assert_eq!(sim.log(), log(&[(7_001, "stop SIGTERM")]));
}
