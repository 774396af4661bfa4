//! The child process: spawn it, signal it, reap it, kill what is left.
//!
//! Owns: the child's pid and process group and every signal we send.
//! Submodules: `spawn` (fork/exec), `reaper` (the only waitpid loop),
//! `signals` (what each incoming signal means), `tree` (descendants in
//! /proc). Must not: decide *when* to stop; `shutdown` runs the timeline.

pub mod reaper;
pub mod signals;
pub mod spawn;
pub mod tree;

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

pub use reaper::ExitStatus;
pub use spawn::{ChildSpec, Credentials};

/// The running child.
#[derive(Debug, Clone, Copy)]
pub struct Child {
    /// Its pid, which is also its process group id.
    pub pid: Pid,
    /// Forward signals to the whole group rather than the child alone.
    pub signal_group: bool,
}

impl Child {
    /// Starts the child described by `spec`.
    pub fn spawn(spec: &ChildSpec, signal_group: bool) -> Result<Child, crate::Error> {
        let pid = spawn::spawn(spec)?;
        tracing::info!(child.pid = pid.as_raw(), command = ?spec.command, "child started");
        Ok(Child { pid, signal_group })
    }

    /// Passes `signal` on, to the child or (with `--signal-group`) to its
    /// process group. A child that is already gone is not an error.
    pub fn forward(&self, signal: Signal) {
        let result = if self.signal_group {
            killpg(self.pid, signal)
        } else {
            kill(self.pid, signal)
        };
        match result {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(child.pid = self.pid.as_raw(), signal = %signal, error = %e, "cannot forward signal")
            }
        }
    }

    /// Sends `signal` to the child alone (the R8 stop signal).
    pub fn signal(&self, signal: Signal) {
        let _ = kill(self.pid, signal);
    }

    /// SIGKILLs what is left of the child's process group.
    pub fn kill_group(&self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
    }
}

/// SIGKILLs the child's process group and then every live descendant of
/// ours (as PID 1: everything in the container), rescanning until none is
/// left or `limit` passes, and reaps them. `awaiting` is the child whose
/// status is still unknown: the loop also waits for it, and returns it.
pub async fn kill_everything(
    group: Option<Child>,
    awaiting: Option<Pid>,
    limit: Duration,
) -> Option<ExitStatus> {
    if let Some(c) = group {
        c.kill_group();
    }
    let me = nix::unistd::getpid();
    let deadline = tokio::time::Instant::now() + limit;
    let mut status = None;
    loop {
        let reaped = reaper::reap_all(awaiting);
        status = status.or(reaped.child);
        if reaped.none_left {
            // No children means no descendants: skip the /proc scan, which
            // costs milliseconds on a busy host.
            return status;
        }
        let tree = tree::Tree::below(me, false);
        let done = tree.is_empty() && (awaiting.is_none() || status.is_some());
        if done || tokio::time::Instant::now() >= deadline {
            if !tree.is_empty() {
                tracing::warn!(
                    left = tree.len(),
                    "processes survive SIGKILL (stuck in the kernel?)"
                );
            }
            return status;
        }
        if !tree.is_empty() {
            tracing::info!(count = tree.len(), "SIGKILL to remaining descendants");
        }
        for pid in tree.pids() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
