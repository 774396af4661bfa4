//! Every decision about a signal that reaches modelarts-init, in one table.
//!
//! Owns: which signals we catch and what each one means. Must not: act on
//! them; `shutdown` carries out the decision.
//!
//! | signal                   | before shutdown            | once shutting down   |
//! |--------------------------|----------------------------|----------------------|
//! | SIGCHLD                  | reap                       | reap                 |
//! | SIGTERM                  | start the R8 drain          | fast stop            |
//! | SIGINT                   | fast stop                  | fast stop            |
//! | HUP QUIT USR1 USR2 WINCH | forward to the child       | forward to the child |
//! | TTIN TTOU CONT ALRM      | forward to the child       | forward to the child |
//!
//! Why:
//! - SIGTERM is how the platform (and `docker stop`, and Kubernetes) asks a
//!   container to stop. Rule R8 wants service to go on for 60 s first,
//!   because the load balancer keeps routing here for a while; so SIGTERM is
//!   NOT forwarded at once, it starts the drain.
//! - SIGINT is a person at a terminal (Ctrl-C), and a second SIGTERM is an
//!   operator who means it: both skip what remains of the drain, and the
//!   child gets that very signal at once (the stop timeout still applies).
//! - HUP, USR1, USR2, TTIN, TTOU, QUIT, WINCH are gunicorn's control
//!   signals (reload, reopen logs, add or remove a worker, ...); CONT and
//!   ALRM are forwarded so that job control and timers behave as without
//!   us. They go to the child alone, or to its whole process group with
//!   `--signal-group`.
//! - Catching a signal also matters for PID 1: the kernel drops signals that
//!   PID 1 has left at their default action, so without a handler SIGTERM
//!   would do nothing at all.
//! - SIGKILL and SIGSTOP cannot be caught; SIGPIPE is ignored (Rust's
//!   default), so a closed stdout cannot kill the init. Everything else
//!   keeps its default action.

use nix::sys::signal::Signal;
use signal_hook::consts::signal::*;
use signal_hook_tokio::Signals;

use crate::error::Error;

/// Signals passed on to the child as they come.
pub const FORWARDED: [i32; 9] = [
    SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGTTIN, SIGTTOU, SIGCONT, SIGALRM,
];

/// What to do about one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Collect exit statuses.
    Reap,
    /// Start the R8 drain.
    Drain,
    /// Skip the rest of the drain and send this signal to the child now.
    FastStop(Signal),
    /// Pass this signal on to the child (or its group).
    Forward(Signal),
}

/// The table above.
pub fn decide(signal: i32, shutting_down: bool) -> Option<Action> {
    match signal {
        SIGCHLD => Some(Action::Reap),
        SIGTERM if !shutting_down => Some(Action::Drain),
        SIGTERM => Some(Action::FastStop(Signal::SIGTERM)),
        SIGINT => Some(Action::FastStop(Signal::SIGINT)),
        s if FORWARDED.contains(&s) => Signal::try_from(s).ok().map(Action::Forward),
        _ => None,
    }
}

/// Starts catching every signal in the table. Call this before the child
/// is spawned, so that no SIGCHLD or SIGTERM can slip in between.
pub fn listen() -> Result<Signals, Error> {
    let mut all = vec![SIGCHLD, SIGTERM, SIGINT];
    all.extend_from_slice(&FORWARDED);
    Signals::new(&all).map_err(|source| Error::Os {
        what: "cannot install signal handlers",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(decide(SIGTERM, false), Some(Action::Drain));
        assert_eq!(
            decide(SIGTERM, true),
            Some(Action::FastStop(Signal::SIGTERM))
        );
        assert_eq!(
            decide(SIGINT, false),
            Some(Action::FastStop(Signal::SIGINT))
        );
        assert_eq!(decide(SIGHUP, true), Some(Action::Forward(Signal::SIGHUP)));
        assert_eq!(decide(SIGCHLD, false), Some(Action::Reap));
        assert_eq!(decide(SIGPIPE, false), None);
        for s in FORWARDED {
            assert!(matches!(decide(s, false), Some(Action::Forward(_))));
        }
    }
}
