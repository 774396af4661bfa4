//! The child process: spawn it, signal it, reap it, sweep what it leaves.
//!
//! Owns: the child's pid and process group and every signal we send, as
//! the timeline's [`Processes`]. Submodules: `spawn` (fork/exec), `reaper`
//! (the only waitpid loop), `signals` (what each incoming signal means),
//! `tree` (descendants in /proc). Must not: decide *when* to stop or
//! restart; the timeline does.

pub(crate) mod reaper;
pub mod signals;
pub(crate) mod spawn;
pub(crate) mod tree;

use nix::errno::Errno;
use nix::unistd::Pid;

pub use reaper::ExitStatus;
pub use spawn::{ChildSpec, Credentials};

use crate::timeline::Processes;
use reaper::Reaped;

/// The real child and process tree, for the timeline's driver.
#[derive(Debug)]
pub struct Supervised {
    /// What to start again on a restart; `None` without a child.
    spec: Option<ChildSpec>,
    /// Forward signals to the whole process group rather than the child.
    signal_group: bool,
    /// PID 1 of a namespace cannot stop itself.
    pid1: bool,
}

impl Supervised {
    /// Starts the child described by `spec`; returns it and its pid.
    pub(crate) fn start(
        spec: ChildSpec,
        signal_group: bool,
    ) -> Result<(Supervised, i32), crate::Error> {
        let pid = start(&spec)?;
        let me = Supervised {
            spec: Some(spec),
            signal_group,
            pid1: nix::unistd::getpid().as_raw() == 1,
        };
        Ok((me, pid))
    }

    /// No child: the app serves in this process (mnist mode).
    pub fn none() -> Supervised {
        Supervised {
            spec: None,
            signal_group: false,
            pid1: nix::unistd::getpid().as_raw() == 1,
        }
    }
}

fn start(spec: &ChildSpec) -> Result<i32, crate::Error> {
    let pid = spawn::spawn(spec)?.as_raw();
    tracing::info!(child.pid = pid, command = ?spec.command, "child started");
    Ok(pid)
}

impl Processes for Supervised {
    fn spawn(&mut self) -> Result<i32, u8> {
        let Some(spec) = &self.spec else {
            return Err(1);
        };
        start(spec).map_err(|e| {
            tracing::error!(error = %e, "cannot start the child again");
            e.exit_code()
        })
    }

    fn stop(&mut self, pid: i32, signal: i32) {
        // SAFETY: kill(2) with plain integers.
        unsafe { libc::kill(pid, signal) };
    }

    fn forward(&mut self, pid: i32, signal: i32) {
        // SAFETY: kill(2) and killpg(3) with plain integers.
        let result = unsafe {
            if self.signal_group {
                libc::killpg(pid, signal)
            } else {
                libc::kill(pid, signal)
            }
        };
        if result != 0 {
            let e = Errno::last();
            if e != Errno::ESRCH {
                tracing::warn!(child.pid = pid, signal = %signals::name(signal), error = %e, "cannot forward signal");
            }
        }
    }

    fn suspend_self(&mut self) {
        if self.pid1 {
            tracing::info!("forwarded SIGTSTP; as PID 1 of the namespace we cannot stop ourselves");
            return;
        }
        tracing::info!("forwarded SIGTSTP; stopping until SIGCONT");
        // SAFETY: kill(2) on our own pid.
        unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    }

    fn reap(&mut self, child: Option<i32>) -> Reaped {
        reaper::reap_all(child.map(Pid::from_raw))
    }

    fn signal_leftovers(&mut self, group: Option<i32>, signal: i32) -> usize {
        // Scanned first, so that the count is of the live processes the
        // signal is for (once signalled, a killed one is a zombie).
        let tree = tree::Tree::below(nix::unistd::getpid(), false);
        if let Some(g) = group {
            // SAFETY: killpg(3) with plain integers.
            unsafe { libc::killpg(g, signal) };
        }
        for pid in tree.pids() {
            // SAFETY: kill(2) with plain integers.
            unsafe { libc::kill(pid.as_raw(), signal) };
        }
        tree.len()
    }
}
