//! The one `waitpid` loop of the process.
//!
//! Owns: collecting every exit status, of the child and of every orphan the
//! kernel hands us (as PID 1, or as a child subreaper otherwise). Must not
//! be bypassed: any other `wait` (such as `std::process::Child::wait` or
//! tokio's child handle) would race this loop and lose the main child's
//! status to it, or vice versa.
//!
//! SIGCHLD is a standard signal, so several exits that happen close
//! together arrive as one; the loop therefore reaps with `WNOHANG` until
//! nothing is left, not once per signal (tini's `reap_zombies`).

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit with this code.
    Code(i32),
    /// This signal killed it.
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128+N for signal N.
    pub fn exit_code(self) -> u8 {
        match self {
            ExitStatus::Code(code) => (code & 0xff) as u8,
            ExitStatus::Signal(sig) => 128u8.wrapping_add(sig as u8),
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(sig) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => write!(f, "killed by {s}"),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
        }
    }
}

/// As a child subreaper, orphans below us are re-parented to us instead of
/// to the real init, so we can reap them and find them at shutdown. PID 1
/// gets them anyway.
pub fn become_subreaper_unless_pid1() -> nix::Result<bool> {
    if nix::unistd::getpid().as_raw() == 1 {
        return Ok(false);
    }
    nix::sys::prctl::set_child_subreaper(true)?;
    Ok(true)
}

/// What one pass of the reaper found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// The watched child's status, if it was among the exits.
    pub child: Option<ExitStatus>,
    /// `waitpid` said ECHILD: we have no children at all any more. As PID 1
    /// or a subreaper that means no descendants either (a descendant's
    /// ancestors all lead back to one of our children, or it was re-parented
    /// to us), so nothing is left to kill.
    pub none_left: bool,
}

/// Reaps every exited process we are the parent of, noting the status of
/// `child` if it was among them.
pub fn reap_all(child: Option<Pid>) -> Reaped {
    let mut reaped = Reaped::default();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                if Some(pid) == child {
                    reaped.child = Some(ExitStatus::Code(code));
                }
            }
            Ok(WaitStatus::Signaled(pid, sig, _core)) => {
                if Some(pid) == child {
                    reaped.child = Some(ExitStatus::Signal(sig as i32));
                }
            }
            // Nothing more has exited right now.
            Ok(WaitStatus::StillAlive) => break,
            // Stopped/continued are only reported with WUNTRACED/WCONTINUED.
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                reaped.none_left = true;
                break;
            }
            Err(_) => break,
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(ExitStatus::Code(0).exit_code(), 0);
        assert_eq!(ExitStatus::Code(255).exit_code(), 255);
        assert_eq!(ExitStatus::Signal(9).exit_code(), 137);
        assert_eq!(ExitStatus::Signal(15).exit_code(), 143);
        assert_eq!(ExitStatus::Signal(9).to_string(), "killed by SIGKILL");
    }
}
