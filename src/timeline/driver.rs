//! The thin async loop that runs the machine against the world.
//!
//! Owns: waiting (for a signal, a readiness verdict, the front's drain or
//! the machine's deadline), telling the machine when the last request
//! arrived (read from the lifecycle before it decides), reaping on
//! SIGCHLD, carrying out effects
//! through [`Processes`], and publishing each new snapshot to the
//! lifecycle. Must not: decide anything; every decision is the machine's.
//! The OS is behind [`Processes`] and the signal source is any stream of
//! signal numbers, so unit tests run the loop with fakes on paused time.

use std::collections::VecDeque;
use std::future::Future;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::machine::{Effect, Input, Machine};
use crate::lifecycle::Feed;
use crate::supervisor::reaper::Reaped;
use crate::supervisor::signals;

/// The child and whatever it leaves behind, as the machine's effects need
/// them.
pub trait Processes {
    /// Starts the child again; its pid, or the exit code to end with.
    fn spawn(&mut self) -> Result<i32, u8>;
    /// Sends the stop signal to the child alone.
    fn stop(&mut self, pid: i32, signal: i32);
    /// Passes a signal on to the child (or its group).
    fn forward(&mut self, pid: i32, signal: i32);
    /// Stops this process until SIGCONT, where the kernel allows it.
    fn suspend_self(&mut self);
    /// One pass of the reaper; `child` is the pid whose status we want.
    fn reap(&mut self, child: Option<i32>) -> Reaped;
    /// Sends `signal` to the process group `group` and every descendant;
    /// returns how many descendants there were.
    fn signal_leftovers(&mut self, group: Option<i32>, signal: i32) -> usize;
}

/// Runs `machine` until it is done and returns the exit code.
///
/// `front_drained` resolves once the HTTP front has stopped and closed its
/// connections (pass `std::future::ready(())` without a front).
pub async fn run<P, S>(
    mut machine: Machine,
    mut procs: P,
    mut signals: S,
    mut feed: Feed,
    front_drained: impl Future<Output = ()>,
) -> u8
where
    P: Processes,
    S: Stream<Item = i32> + Unpin,
{
    tokio::pin!(front_drained);
    let mut inputs = VecDeque::new();
    let (mut signals_open, mut verdicts_open, mut front_open) = (true, true, true);
    // The group of the child last started: leftovers are looked for there.
    let mut group = machine.child_pid();
    // SIGKILL sweeps in a row, and how many processes the last one found.
    let (mut sweeps, mut left) = (0usize, 0usize);
    // The last request arrival the machine was told of.
    let mut told = None;
    if machine.quiet_drain() {
        feed.track_arrivals();
    }
    loop {
        // Before the machine decides: when the last request arrived.
        if let Some(at) = feed.last_request() {
            if told != Some(at) && !inputs.is_empty() {
                inputs.push_front(Input::LastRequest(at));
                told = Some(at);
            }
        }
        while let Some(input) = inputs.pop_front() {
            for effect in machine.on(Instant::now(), input) {
                let pid = machine.child_pid();
                match effect {
                    Effect::StopChild(sig) => pid.into_iter().for_each(|p| procs.stop(p, sig)),
                    Effect::Forward(sig) => pid.into_iter().for_each(|p| procs.forward(p, sig)),
                    Effect::SuspendSelf => procs.suspend_self(),
                    Effect::TermLeftovers | Effect::KillAll => {
                        let kill = effect == Effect::KillAll;
                        let reaped = reap(&mut procs, pid, &mut inputs);
                        if reaped.none_left {
                            continue;
                        }
                        let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
                        left = procs.signal_leftovers(group, sig);
                        sweeps = if kill { sweeps + 1 } else { 0 };
                        if sweeps <= 1 && left > 0 {
                            tracing::info!(
                                count = left,
                                signal = %signals::name(sig),
                                "signal to the processes left below us"
                            );
                        }
                    }
                    Effect::Abandon => tracing::warn!(
                        count = left,
                        "processes survive SIGKILL (stuck in the kernel?): exiting without them"
                    ),
                    Effect::Spawn => {
                        sweeps = 0;
                        inputs.push_back(match procs.spawn() {
                            Ok(pid) => {
                                group = Some(pid);
                                Input::Spawned(pid)
                            }
                            Err(code) => Input::SpawnFailed(code),
                        });
                    }
                }
            }
        }
        feed.publish(machine.snapshot());
        if machine.is_done() {
            return machine.exit_code();
        }
        let deadline = machine.deadline();
        tokio::select! {
            biased;
            signal = signals.next(), if signals_open => match signal {
                Some(libc::SIGCHLD) => {
                    reap(&mut procs, machine.child_pid(), &mut inputs);
                }
                Some(sig) => inputs.push_back(Input::Signal(sig)),
                None => signals_open = false,
            },
            _ = sleep_until(deadline) => inputs.push_back(Input::Timer),
            verdict = feed.verdict(), if verdicts_open => match verdict {
                Some(ready) => inputs.push_back(Input::Verdict(ready)),
                None => verdicts_open = false,
            },
            _ = &mut front_drained, if front_open => {
                front_open = false;
                inputs.push_back(Input::FrontDrained);
            }
        }
    }
}

/// One reaper pass, reported as inputs.
fn reap(procs: &mut impl Processes, child: Option<i32>, inputs: &mut VecDeque<Input>) -> Reaped {
    let reaped = procs.reap(child);
    if let Some(status) = reaped.child {
        inputs.push_back(Input::ChildExited(status));
    }
    if reaped.none_left {
        inputs.push_back(Input::AllReaped);
    }
    reaped
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
